"""The single pass: streams the data through the model once and accumulates the Evidence.

Every accumulator is mergeable (count/mean/M2, min/max, counts), so shards could be combined.
Intermediate activations are reduced per sample inside the model graph (max or mean/M2 over
spatial axes), so a conv feature map never leaves the model at full size.

The pass's parts live in their own modules: the Evidence and its accumulators in
kerasdoctor.evidence, the Predictor with its graph taps in kerasdoctor.predictor (and
kerasdoctor.predictor_graph). Their names are re-exported here, so
`from kerasdoctor.probe import Evidence, Predictor` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasdoctor.evidence import (
    RESERVED_TOKEN_IDS,
    TOKEN_ID_CAP,
    ActivationStats,
    BatchNormInputStats,
    Evidence,
    InputStats,
    Moments,
    OutputStats,
    TokenStats,
)
from kerasdoctor.predictor import (
    Predictor,
    looks_like_probabilities,
    predicted_classes,
    probability_fn,
)

__all__ = [
    # the pass (this module)
    "BATCH_BYTES",
    "MAX_DEFAULT_BATCH",
    "MIN_DEFAULT_BATCH",
    "SAMPLE_BYTES",
    "SAMPLE_MAX",
    "Batch",
    "ProbeLayout",
    "ProbeState",
    "array_batches",
    "default_batch_size",
    "run_probe",
    "sample_keys",
    "sample_limit_for",
    "stratified_sample",
    # re-exported from kerasdoctor.evidence
    "RESERVED_TOKEN_IDS",
    "TOKEN_ID_CAP",
    "ActivationStats",
    "BatchNormInputStats",
    "Evidence",
    "InputStats",
    "Moments",
    "OutputStats",
    "TokenStats",
    # re-exported from kerasdoctor.predictor
    "Predictor",
    "looks_like_probabilities",
    "predicted_classes",
    "probability_fn",
]

# Default batch: as many samples as fit ~32 MB of input, within [32, 1024].
BATCH_BYTES = 32 * 2**20
MAX_DEFAULT_BATCH = 1024
MIN_DEFAULT_BATCH = 32
# The bounded, class-stratified sample kept for checks that re-run the model on it.
SAMPLE_MAX = 2048
SAMPLE_BYTES = 64 * 2**20


def default_batch_size(arrays: Sequence[Any]) -> int:
    """A power of two of samples filling about BATCH_BYTES of input, within the bounds."""
    per_sample = sum(
        int(np.prod(a.shape[1:], dtype=np.int64)) * max(np.dtype(a.dtype).itemsize, 4)
        for a in arrays
    )
    n = BATCH_BYTES // max(per_sample, 1)
    size = 2 ** int(np.floor(np.log2(max(n, 1))))
    return int(min(MAX_DEFAULT_BATCH, max(MIN_DEFAULT_BATCH, size)))


def stratified_sample(
    y: np.ndarray, arrays: Sequence[Any], seed: int, limit: int = SAMPLE_MAX
) -> np.ndarray:
    """Up to `limit` indices (bounded in bytes too), as even across classes as possible."""
    per_sample = sum(
        int(np.prod(a.shape[1:], dtype=np.int64)) * np.dtype(a.dtype).itemsize for a in arrays
    )
    limit = int(min(limit, max(64, SAMPLE_BYTES // max(per_sample, 1)), y.shape[0]))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = max(1, limit // max(len(classes), 1))
    chosen = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        take = min(per_class, idx.size)
        chosen.append(rng.choice(idx, size=take, replace=False))
    out = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    if out.size < limit:  # fill up with other samples when some classes are small
        rest = np.setdiff1d(np.arange(y.shape[0]), out)
        extra = rng.choice(rest, size=min(limit - out.size, rest.size), replace=False)
        out = np.sort(np.concatenate([out, extra]))
    return out.astype(np.int64)


def sample_keys(row_ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform key in [0, 1) per row, a pure function of (seed, row id) (splitmix64).

    The bounded sample is "the rows with the smallest keys per class": the same rows whether
    the data is streamed in one process or in shards whose partial states are merged.
    """
    with np.errstate(over="ignore"):
        z = row_ids.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def sample_limit_for(row_bytes: int, limit: int = SAMPLE_MAX) -> int:
    """Rows in the bounded sample: SAMPLE_MAX, fewer for wide rows (at most SAMPLE_BYTES)."""
    return int(min(limit, max(64, SAMPLE_BYTES // max(row_bytes, 1))))


@dataclass
class ProbeLayout:
    """What the predictor's outputs hold, in order: the head, then the taps (picklable)."""

    input_names: list[str]
    k_units: int
    head: str
    relu_layers: list[tuple[str, str]]
    bn_layers: list[tuple[str, int]]  # (layer, values per channel per sample)
    notes: list[str] = field(default_factory=list)
    token_inputs: list[str] = field(default_factory=list)  # inputs read as ids (an Embedding)

    @classmethod
    def of(cls, predictor: Predictor) -> ProbeLayout:
        return cls(
            input_names=[s.name for s in predictor.lm.inputs],
            k_units=int(predictor.lm.output_shape[-1] or 1),
            head=predictor.facts.head,
            relu_layers=list(predictor.relu_layers),
            bn_layers=[(b, predictor.spatial_size(b)) for b in predictor.bn_layers],
            notes=list(predictor.notes),
            token_inputs=[
                s.name
                for s in predictor.lm.inputs
                if "Embedding" in predictor.facts.input_consumers.get(s.name, ())
            ],
        )


@dataclass
class _Kept:
    """The sample rows kept for one class: keys, row ids, slots in the buffer, probabilities."""

    keys: np.ndarray
    rows: np.ndarray
    slots: np.ndarray
    probs: np.ndarray


class ProbeState:
    """The mergeable accumulator of the single pass.

    update() folds in one batch (its inputs, labels, the predictor's outputs and the rows'
    global ids); merge() folds in another state built on other rows; finish() makes the
    Evidence. Per-sample arrays (labels, predictions, binary scores) are kept with their row
    ids; the bounded sample is the rows with the smallest sample_keys per class.
    """

    def __init__(self, layout: ProbeLayout, seed: int = 0, sample_max: int = SAMPLE_MAX) -> None:
        self.layout = layout
        self.seed = int(seed)
        self.sample_max = sample_max
        self.n = 0
        self.head_used: str | None = None if layout.head == "unknown" else layout.head
        self.inputs: list[InputStats] = []
        k = layout.k_units
        self.raw = Moments.empty(k)
        self.probs = Moments.empty(k)
        self.nonfinite_rows = 0
        self.acts = [
            ActivationStats(name, act, np.zeros(0, np.int64), np.zeros(0))
            for name, act in layout.relu_layers
        ]
        self.bns = [BatchNormInputStats(name, Moments.empty(0)) for name, _ in layout.bn_layers]
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.kept: dict[int, _Kept] = {}
        self.limit: int | None = None  # sample rows, fixed by the first batch's row size
        self.buffers: list[np.ndarray] = []
        self.free: list[int] = []

    # -- one batch

    def update(
        self, xs: Sequence[Any], y: np.ndarray, outs: Sequence[np.ndarray], row_ids: np.ndarray
    ) -> None:
        xs = [np.asarray(x) for x in xs]
        n_b = int(y.shape[0])
        if not self.inputs:
            self._init_inputs(xs)
        for st, x in zip(self.inputs, xs):
            st.moments.update_batch(x)
            if st.integral and x.dtype.kind == "f":
                finite = np.isfinite(x)
                fin = x if finite.all() else x[finite]
                st.integral = bool(np.array_equal(fin, np.rint(fin)))
            if st.tokens is not None:
                st.tokens.update(x)
        raw = np.asarray(outs[0]).reshape(n_b, -1).astype(np.float64)
        if self.head_used is None:
            self.head_used = looks_like_probabilities(raw) or "linear"
        with np.errstate(all="ignore"):
            probs = probability_fn(self.head_used, raw.shape[1])(raw)
        self.nonfinite_rows += int((~np.isfinite(raw).all(axis=1)).sum())
        self.raw.update(raw)
        self.probs.update(probs)
        y_pred = predicted_classes(raw, probs)
        # binary models, one unit or two: P(class 1) per sample (rank-based checks need all)
        score = probs[:, -1].astype(np.float32) if raw.shape[1] in (1, 2) else None
        self.chunks.append((np.asarray(row_ids, np.int64), np.asarray(y, np.int64), y_pred, score))
        self._taps(outs, n_b)
        self._keep(xs, np.asarray(y, np.int64), np.asarray(row_ids, np.int64), probs)
        self.n += n_b

    def _init_inputs(self, xs: list[np.ndarray]) -> None:
        self.inputs = [
            InputStats(
                name=name,
                shape=tuple(int(d) for d in x.shape[1:]),
                dtype=str(x.dtype),
                moments=Moments.empty(1 if x.ndim == 1 else int(x.shape[-1])),
            )  # `integral` starts True and is refined per batch (floats may hold whole numbers)
            for name, x in zip(self.layout.input_names, xs)
        ]
        for st in self.inputs:
            if st.name in self.layout.token_inputs:
                st.tokens = TokenStats()
        row_bytes = sum(int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize for x in xs)
        self.limit = sample_limit_for(row_bytes, self.sample_max)
        self.buffers = [np.zeros((self.limit, *x.shape[1:]), x.dtype) for x in xs]
        self.free = list(range(self.limit))[::-1]

    def _taps(self, outs: Sequence[np.ndarray], n_b: int) -> None:
        j = 1
        for st_a in self.acts:
            m = np.asarray(outs[j], dtype=np.float64).reshape(n_b, -1)
            j += 1
            if st_a.active_count.size == 0:
                st_a.active_count = np.zeros(m.shape[1], np.int64)
                st_a.max = np.full(m.shape[1], -np.inf)
            st_a.active_count += (m > 0).sum(axis=0)
            st_a.max = np.maximum(st_a.max, np.nanmax(m, axis=0))
            st_a.n_samples += m.shape[0]
        for st_b, (_, spatial) in zip(self.bns, self.layout.bn_layers):
            mean = np.asarray(outs[j], dtype=np.float64).reshape(n_b, -1)
            m2 = np.asarray(outs[j + 1], dtype=np.float64).reshape(n_b, -1)
            j += 2
            if st_b.moments.n_features == 0:
                st_b.moments = Moments.empty(mean.shape[1])
            # per-sample groups of `spatial` values each; combine in one Chan step per batch
            b_mean = mean.mean(axis=0)
            b_m2 = (m2 + spatial * (mean - b_mean) ** 2).sum(axis=0)
            st_b.moments.update_moments(
                np.full((1, mean.shape[1]), n_b * spatial), b_mean[None], b_m2[None]
            )

    # -- the bounded sample

    def _per_class(self, n_classes: int) -> int:
        assert self.limit is not None
        return max(1, self.limit // max(n_classes, 1))

    def _keep(
        self, xs: list[np.ndarray], y: np.ndarray, rows: np.ndarray, probs: np.ndarray
    ) -> None:
        keys = sample_keys(rows, self.seed)
        classes = np.unique(y)
        n_classes = len(set(self.kept) | set(classes.tolist()))
        per_class = self._per_class(n_classes)
        # Once a class's share is full only keys below its current worst can enter (what
        # _admit checks): drop the other rows here in one vectorised step, so a batch costs a
        # few array operations instead of one Python round per class.
        worst = np.full(int(classes[-1]) + 1 if classes.size else 0, np.inf)
        for c, kept in self.kept.items():
            if c < worst.size and kept.keys.size >= per_class:
                worst[c] = kept.keys.max()
        candidates = keys < worst[y]
        for c in np.unique(y[candidates]).tolist():
            idx = np.flatnonzero((y == c) & candidates)

            def fetch(i: np.ndarray, local: np.ndarray = idx) -> list[np.ndarray]:
                return [x[local[i]] for x in xs]

            self._admit(int(c), keys[idx], rows[idx], probs[idx], fetch, per_class)
        self._trim(per_class)

    def _admit(
        self,
        c: int,
        keys: np.ndarray,
        rows: np.ndarray,
        probs: np.ndarray,
        fetch: Callable[[np.ndarray], list[np.ndarray]],
        per_class: int,
    ) -> None:
        """Keep the per_class smallest keys of class c among what it had and the candidates."""
        kept = self.kept.get(c)
        old_keys = kept.keys if kept is not None else np.zeros(0)
        if old_keys.size >= per_class:  # full: only keys below the current worst can enter
            worst = old_keys.max()
            mask = keys < worst
            keys, rows, probs = keys[mask], rows[mask], probs[mask]
            fetch_idx = np.flatnonzero(mask)
        else:
            fetch_idx = np.arange(keys.size)
        if keys.size == 0:
            return
        all_keys = np.concatenate([old_keys, keys])
        order = np.argsort(all_keys, kind="stable")[:per_class]
        n_old = old_keys.size
        stay = order[order < n_old]
        enter = order[order >= n_old] - n_old
        if kept is not None:
            leaving = np.setdiff1d(np.arange(n_old), stay)
            self.free.extend(kept.slots[leaving].tolist())
        slots = np.array([self._slot() for _ in range(enter.size)], np.int64)
        if enter.size:
            rows_data = fetch(fetch_idx[enter])
            for buf, data in zip(self.buffers, rows_data):
                buf[slots] = data
        k_probs = probs[enter]
        if kept is None:
            self.kept[c] = _Kept(keys[enter], rows[enter], slots, k_probs)
        else:
            self.kept[c] = _Kept(
                np.concatenate([kept.keys[stay], keys[enter]]),
                np.concatenate([kept.rows[stay], rows[enter]]),
                np.concatenate([kept.slots[stay], slots]),
                np.concatenate([kept.probs[stay], k_probs]),
            )

    def _slot(self) -> int:
        if not self.free:  # more classes than sample rows: grow (one row per class)
            grow = max(1, len(self.buffers[0]) // 2)
            start = len(self.buffers[0])
            self.buffers = [
                np.concatenate([b, np.zeros((grow, *b.shape[1:]), b.dtype)]) for b in self.buffers
            ]
            self.free = list(range(start + grow - 1, start - 1, -1))
        return self.free.pop()

    def _trim(self, per_class: int) -> None:
        """New classes shrink every class's share: drop the largest keys beyond it."""
        for c, kept in list(self.kept.items()):
            if kept.keys.size > per_class:
                order = np.argsort(kept.keys, kind="stable")
                stay, leave = order[:per_class], order[per_class:]
                self.free.extend(kept.slots[leave].tolist())
                self.kept[c] = _Kept(
                    kept.keys[stay], kept.rows[stay], kept.slots[stay], kept.probs[stay]
                )

    # -- merging and finishing

    def merge(self, other: ProbeState) -> ProbeState:
        """Fold in a state built on other rows (another shard); exact for every figure."""
        if other.n == 0:
            return self
        if self.n == 0 and not self.inputs:
            self.inputs = [
                InputStats(st.name, st.shape, st.dtype, Moments.empty(st.moments.n_features))
                for st in other.inputs
            ]
            self.limit = other.limit
            self.buffers = [np.zeros_like(b[: other.limit]) for b in other.buffers]
            self.free = list(range(other.limit or 0))[::-1]
            self.head_used = self.head_used or other.head_used
        for mine, theirs in zip(self.inputs, other.inputs):
            mine.moments.merge(theirs.moments)
            mine.integral = mine.integral and theirs.integral
            if theirs.tokens is not None:
                if mine.tokens is None:
                    mine.tokens = TokenStats()
                mine.tokens.merge(theirs.tokens)
        self.raw.merge(other.raw)
        self.probs.merge(other.probs)
        self.nonfinite_rows += other.nonfinite_rows
        for a, b in zip(self.acts, other.acts):
            if b.active_count.size:
                if a.active_count.size == 0:
                    a.active_count = np.zeros_like(b.active_count)
                    a.max = np.full(b.max.shape, -np.inf)
                a.active_count = a.active_count + b.active_count
                a.max = np.maximum(a.max, b.max)
                a.n_samples += b.n_samples
        for a2, b2 in zip(self.bns, other.bns):
            if b2.moments.n_features:
                if a2.moments.n_features == 0:
                    a2.moments = Moments.empty(b2.moments.n_features)
                a2.moments.merge(b2.moments)
        self.chunks.extend(other.chunks)
        n_classes = len(set(self.kept) | set(other.kept))
        per_class = self._per_class(n_classes)
        for c, kept in other.kept.items():

            def fetch(i: np.ndarray, k: _Kept = kept) -> list[np.ndarray]:
                return [b[k.slots[i]] for b in other.buffers]

            self._admit(c, kept.keys, kept.rows, kept.probs, fetch, per_class)
        self._trim(per_class)
        self.n += other.n
        return self

    def finish(self, n_classes_hint: int = 0, batch_size: int = 0) -> Evidence:
        """The Evidence of everything folded in (rows ordered by their ids)."""
        k_units = self.layout.k_units
        if self.chunks:
            rows = np.concatenate([c[0] for c in self.chunks])
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            y = np.concatenate([c[1] for c in self.chunks])[order]
            y_pred = np.concatenate([c[2] for c in self.chunks])[order]
            has_scores = all(c[3] is not None for c in self.chunks)
            scores = (
                np.concatenate([c[3] for c in self.chunks if c[3] is not None])[order]
                if has_scores
                else None
            )
        else:
            rows = y = y_pred = np.zeros(0, np.int64)
            scores = None
        k = max(n_classes_hint, 2 if k_units == 1 else k_units, int(y.max(initial=0)) + 1)
        conf = np.zeros((k, k), np.int64)
        np.add.at(conf, (y, np.clip(y_pred, 0, k - 1)), 1)
        per_class = self._per_class(k) if self.limit is not None else 0
        picked = []
        for c in sorted(self.kept):
            kept = self.kept[c]
            order_c = np.argsort(kept.keys, kind="stable")[:per_class]
            picked.append((kept.rows[order_c], kept.slots[order_c], kept.probs[order_c]))
        if picked:
            s_rows = np.concatenate([p[0] for p in picked])
            s_slots = np.concatenate([p[1] for p in picked])
            s_probs = np.concatenate([p[2] for p in picked])
            by_row = np.argsort(s_rows, kind="stable")
            s_rows, s_slots, s_probs = s_rows[by_row], s_slots[by_row], s_probs[by_row]
        else:
            s_rows = s_slots = np.zeros(0, np.int64)
            s_probs = np.zeros((0, k_units))
        return Evidence(
            n_samples=self.n,
            n_classes=k,
            y_true=y,
            y_pred=y_pred,
            confusion=conf,
            output=OutputStats(
                self.head_used or "linear", self.raw, self.probs, self.nonfinite_rows
            ),
            inputs=self.inputs,
            activations=self.acts,
            bn_inputs=self.bns,
            scores=scores,
            sample_index=np.searchsorted(rows, s_rows).astype(np.int64),
            sample_probs=s_probs,
            sample_inputs=[b[s_slots] for b in self.buffers],
            batch_size=batch_size,
            notes=list(self.layout.notes),
        )


Batch = tuple[list[Any], np.ndarray, np.ndarray]  # (inputs, labels, row ids)


def array_batches(
    arrays: Sequence[Any], y: np.ndarray, batch_size: int, indices: np.ndarray | None = None
) -> Iterator[Batch]:
    """Batches of in-memory (or memory-mapped / lazily loaded) arrays, optionally a subset."""
    n = int(y.shape[0]) if indices is None else int(indices.shape[0])
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        if indices is None:
            xs = [a[start:stop] for a in arrays]
            yield xs, y[start:stop], np.arange(start, stop, dtype=np.int64)
        else:
            sel = indices[start:stop]
            yield [a[sel] for a in arrays], y[sel], np.arange(start, stop, dtype=np.int64)


def run_probe(
    predictor: Predictor,
    batches: Iterable[Batch],
    *,
    n_total: int | None = None,
    n_classes: int = 0,
    seed: int = 0,
    batch_size: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Evidence:
    """Stream the batches through the model once and return the Evidence.

    Row ids are positions in the streamed order (0, 1, ...), so Evidence.sample_index
    indexes y_true / y_pred directly.
    """
    state = ProbeState(ProbeLayout.of(predictor), seed=seed)
    for xs, y, rows in batches:
        state.update(xs, y, predictor.run_batch(xs), rows)
        if progress is not None:
            progress(state.n, n_total or state.n)
    return state.finish(n_classes, batch_size)
