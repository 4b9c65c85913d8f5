"""The single pass: streams the data through the model once and accumulates the Evidence.

Every accumulator is mergeable (count/mean/M2, min/max, counts), so shards could be combined.
Intermediate activations are reduced per sample inside the model graph (max or mean/M2 over
spatial axes), so a conv feature map never leaves the model at full size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasdoctor.load import LoadedModel
from kerasdoctor.model_facts import ModelFacts
from kerasdoctor.predictor_graph import tensors_on_path

# Default batch: as many samples as fit ~32 MB of input, within [32, 1024].
BATCH_BYTES = 32 * 2**20
MAX_DEFAULT_BATCH = 1024
MIN_DEFAULT_BATCH = 32
# The bounded, class-stratified sample kept for checks that re-run the model on it.
SAMPLE_MAX = 2048
SAMPLE_BYTES = 64 * 2**20


# ------------------------------------------------------------------ accumulators


@dataclass
class Moments:
    """Per-feature streaming moments (Chan et al.), min/max and non-finite counts."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n_nan: np.ndarray
    n_inf: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> Moments:
        z = np.zeros(n_features)
        return cls(
            count=np.zeros(n_features, np.int64),
            mean=z.copy(),
            m2=z.copy(),
            min=np.full(n_features, np.inf),
            max=np.full(n_features, -np.inf),
            n_nan=np.zeros(n_features, np.int64),
            n_inf=np.zeros(n_features, np.int64),
        )

    @property
    def n_features(self) -> int:
        return int(self.count.shape[0])

    @property
    def var(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def update(self, x: np.ndarray) -> None:
        """Add a (n, F) block of values."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return
        finite = np.isfinite(x)
        if finite.all():
            n_b = np.full(x.shape[1], x.shape[0], np.int64)
            mean_b = x.mean(axis=0)
            m2_b = ((x - mean_b) ** 2).sum(axis=0)
            mn, mx = x.min(axis=0), x.max(axis=0)
        else:
            self.n_nan += np.isnan(x).sum(axis=0)
            self.n_inf += np.isinf(x).sum(axis=0)
            n_b = finite.sum(axis=0).astype(np.int64)
            xf = np.where(finite, x, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(n_b > 0, xf.sum(axis=0) / np.maximum(n_b, 1), 0.0)
            m2_b = (np.where(finite, x - mean_b, 0.0) ** 2).sum(axis=0)
            mn = np.where(finite, x, np.inf).min(axis=0)
            mx = np.where(finite, x, -np.inf).max(axis=0)
        self._combine(n_b, mean_b, m2_b)
        self.min = np.minimum(self.min, mn)
        self.max = np.maximum(self.max, mx)

    def update_batch(self, x: np.ndarray) -> None:
        """Add a batch (B, ..., F): moments per feature (last axis) over every other axis.

        Same figures as update(x.reshape(-1, F)), computed on the (B, positions x F) view:
        reducing down the batch axis of that wide array is contiguous and vectorised, where
        reducing a tall (B x positions, F) array with few features (RGB: 3) walks it with a
        stride of F and costs ~10x more per value.
        """
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        b, f = int(x.shape[0]), int(x.shape[-1])
        if b == 0 or f == 0:
            return
        wide = x.reshape(b, -1)
        if wide.dtype.kind not in "iuf" or (wide.dtype.kind == "f" and not np.isfinite(wide).all()):
            self.update(x.reshape(-1, f))  # bool, or non-finite values to count: general path
            return
        positions = wide.shape[1] // f
        n_b = b * positions
        mean_b = wide.sum(axis=0, dtype=np.float64).reshape(positions, f).sum(axis=0) / n_b
        dev = wide - np.tile(mean_b, positions)  # float64 (B, positions x F)
        m2_b = np.einsum("ij,ij->j", dev, dev).reshape(positions, f).sum(axis=0)
        mn = wide.min(axis=0).reshape(positions, f).min(axis=0).astype(np.float64)
        mx = wide.max(axis=0).reshape(positions, f).max(axis=0).astype(np.float64)
        self._combine(np.full(f, n_b, np.int64), mean_b, m2_b)
        self.min = np.minimum(self.min, mn)
        self.max = np.maximum(self.max, mx)

    def update_moments(self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Add pre-reduced groups: per-group counts, means and M2 of shape (G, F)."""
        for i in range(mean_b.shape[0]):
            self._combine(n_b[i], mean_b[i], m2_b[i])

    def _combine(self, n_b: Any, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - self.mean
            frac = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            self.mean = self.mean + delta * frac
            self.m2 = self.m2 + m2_b + delta**2 * n_a * frac
        self.count = n

    def merge(self, other: Moments) -> None:
        """Fold another accumulator of the same features into this one (exact)."""
        self._combine(other.count, other.mean, other.m2)
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.n_nan = self.n_nan + other.n_nan
        self.n_inf = self.n_inf + other.n_inf

    def pooled(self) -> tuple[float, float, float, float]:
        """(mean, std, min, max) of all features pooled together."""
        n = self.count.sum()
        if n == 0:
            return (float("nan"),) * 4
        mean = float((self.count * self.mean).sum() / n)
        m2 = float((self.m2 + self.count * (self.mean - mean) ** 2).sum())
        return mean, float(np.sqrt(m2 / n)), float(self.min.min()), float(self.max.max())

    def rms(self) -> float:
        """Root mean square of all values: the input's typical magnitude."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        return float(np.sqrt((self.m2 + self.count * self.mean**2).sum() / n))


# Token ids that carry no word in Keras's conventions: 0 is padding (the mask token of
# TextVectorization / StringLookup, pad_sequences' default value), 1 is the out-of-vocabulary
# id ("[UNK]", TextVectorization's single default OOV index; Tokenizer(oov_token=...)'s id).
RESERVED_TOKEN_IDS = 2  # ids below this are reserved: a row of only these holds no word
TOKEN_ID_CAP = 2**20  # distinct ids are tracked below this (a bitmap of at most 1 MB)


@dataclass
class TokenStats:
    """An input read as token ids (it feeds an Embedding): rows that hold no word, ids seen.

    Exact and mergeable: counts add, the bitmap of ids seen is OR-ed.
    """

    rows: int = 0
    blank_rows: int = 0  # rows whose every id is reserved (padding/OOV): no word at all
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # id -> seen
    out_of_range: int = 0  # values below 0 or at/above TOKEN_ID_CAP (not in the bitmap)

    def update(self, x: np.ndarray) -> None:
        """Add a batch (B, ...) of ids (floats are truncated, as an Embedding casts them)."""
        b = int(x.shape[0])
        if b == 0 or x.dtype.kind not in "iuf":
            return
        wide = x.reshape(b, -1)
        self.rows += b
        if wide.shape[1]:
            # NaN compares False: a row holding one is not counted as blank
            self.blank_rows += int((wide.max(axis=1) < RESERVED_TOKEN_IDS).sum())
        if wide.dtype.kind == "f":  # NaN/Inf and huge values land out of range, not in int64
            wide = np.clip(np.where(np.isfinite(wide), wide, -1), -1, TOKEN_ID_CAP)
        ids = wide.astype(np.int64, copy=False).reshape(-1)
        ok = (ids >= 0) & (ids < TOKEN_ID_CAP)
        self.out_of_range += int(ids.size - ok.sum())
        self._mark(np.bincount(ids[ok]) > 0 if ok.any() else np.zeros(0, bool))

    def _mark(self, seen: np.ndarray) -> None:
        if seen.size > self.seen.size:
            self.seen = np.concatenate([self.seen, np.zeros(seen.size - self.seen.size, bool)])
        self.seen[: seen.size] |= seen

    def merge(self, other: TokenStats) -> None:
        self.rows += other.rows
        self.blank_rows += other.blank_rows
        self.out_of_range += other.out_of_range
        self._mark(other.seen)

    @property
    def n_distinct(self) -> int:
        """Distinct ids seen (below TOKEN_ID_CAP)."""
        return int(self.seen.sum())

    @property
    def max_id(self) -> int:
        """The largest id seen below TOKEN_ID_CAP, -1 if none."""
        nz = np.flatnonzero(self.seen)
        return int(nz[-1]) if nz.size else -1


@dataclass
class InputStats:
    """Statistics of one model input, per feature (the last axis: channels or columns)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    moments: Moments
    integral: bool = True  # every finite value is a whole number (e.g. raw 0-255 pixels)
    tokens: TokenStats | None = None  # inputs read as token ids (they feed an Embedding)

    @property
    def n_nonfinite(self) -> int:
        return int(self.moments.n_nan.sum() + self.moments.n_inf.sum())


@dataclass
class ActivationStats:
    """A ReLU-family layer: per unit, in how many samples it was ever positive."""

    layer: str
    activation: str
    active_count: np.ndarray  # (units,) samples in which the unit fired somewhere
    max: np.ndarray  # (units,) largest value seen
    n_samples: int = 0

    @property
    def dead(self) -> np.ndarray:
        return self.active_count == 0

    @property
    def dead_fraction(self) -> float:
        return float(self.dead.mean()) if self.active_count.size else 0.0


@dataclass
class BatchNormInputStats:
    """Moments, per channel, of what a BatchNormalization layer actually receives."""

    layer: str
    moments: Moments


@dataclass
class OutputStats:
    """The diagnosed output: raw values and probabilities per unit."""

    head_used: str  # how raw outputs were turned into probabilities
    raw: Moments
    probs: Moments
    nonfinite_rows: int = 0


@dataclass
class Evidence:
    """All that the single pass measured; checks read only this (and the model facts)."""

    n_samples: int
    n_classes: int
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray  # (K, K): rows are labels, columns predictions
    output: OutputStats
    inputs: list[InputStats]
    activations: list[ActivationStats] = field(default_factory=list)
    bn_inputs: list[BatchNormInputStats] = field(default_factory=list)
    scores: np.ndarray | None = None  # binary models (1 or 2 units): P(class 1) per sample
    sample_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_probs: np.ndarray | None = None  # (S, K) probabilities of the bounded sample
    sample_inputs: list[np.ndarray] = field(default_factory=list)  # its inputs, per model input
    batch_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def label_counts(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def predicted_counts(self) -> np.ndarray:
        return self.confusion.sum(axis=0)


# ------------------------------------------------------------------ the predictor


def probability_fn(head: str, k: int) -> Callable[[np.ndarray], np.ndarray]:
    if head in ("softmax", "sigmoid"):
        return lambda r: r
    if k == 1:
        return lambda r: 1.0 / (1.0 + np.exp(-np.clip(r, -80, 80)))

    def softmax(r: np.ndarray) -> np.ndarray:
        z = r - np.nanmax(r, axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    return softmax


def looks_like_probabilities(raw: np.ndarray) -> str | None:
    """For a model whose head is unknown (SavedModel): do its outputs look like probabilities?"""
    finite = raw[np.isfinite(raw).all(axis=1)]
    if finite.size == 0 or finite.min() < 0 or finite.max() > 1:
        return None
    if raw.shape[1] == 1:
        return "sigmoid"
    return "softmax" if np.allclose(finite.sum(axis=1), 1.0, atol=1e-3) else "sigmoid"


class Predictor:
    """Runs a model (Keras or SavedModel) on batches, with the probe taps attached."""

    def __init__(self, lm: LoadedModel, facts: ModelFacts, *, taps: bool = True) -> None:
        self.lm = lm
        self.facts = facts
        self.relu_layers: list[tuple[str, str]] = []
        self.bn_layers: list[str] = []
        self._fn: Callable[[list[np.ndarray]], list[np.ndarray]]
        self.notes: list[str] = []
        self._spatial: dict[str, int] = {}
        self.probe_model: Any = None
        if lm.keras_model is not None:
            self._fn = self._keras_fn(taps)
        else:
            self._fn = self._savedmodel_fn()

    # -- building

    def _keras_fn(self, taps: bool) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        model = self.lm.keras_model
        out = model.outputs[self.lm.output_index]
        outputs = [out]
        if taps:
            outputs += self._taps(model)
        from kerasdoctor._keras import keras

        k = keras()
        try:
            probe = k.Model(model.inputs, outputs) if len(outputs) > 1 else None
        except Exception as exc:  # a graph we cannot tap: predictions only
            self.notes.append(f"layer activations not probed ({type(exc).__name__})")
            self.relu_layers, self.bn_layers = [], []
            probe = None
        self.probe_model = probe  # the tapped model (None: predictions only)
        if probe is None:
            self.relu_layers, self.bn_layers = [], []
            target = model
            index = self.lm.output_index if len(model.outputs) > 1 else None

            def run_plain(xs: list[np.ndarray]) -> list[np.ndarray]:
                res = target.predict_on_batch(xs if len(xs) > 1 else xs[0])
                if index is not None:
                    res = res[index]
                return [np.asarray(res)]

            return run_plain

        def run(xs: list[np.ndarray]) -> list[np.ndarray]:
            res = probe.predict_on_batch(xs if len(xs) > 1 else xs[0])
            return [np.asarray(r) for r in res]

        return run

    def _taps(self, model: Any) -> list[Any]:
        """Per-sample reductions of ReLU outputs and BatchNorm inputs, as extra outputs.

        All ReLU taps come first, then the BatchNorm pairs: run_probe reads them in that order.
        """
        layer_types = _reduction_layers()
        relu_taps: list[Any] = []
        bn_taps: list[Any] = []
        relu = set(self.facts.relu_layers)
        on_path = tensors_on_path(model)
        for layer in model.layers:
            try:
                if layer.name in relu:
                    t = on_path[layer.name][1] if layer.name in on_path else layer.output
                    relu_taps.append(layer_types["max"](name=f"kd_max_{layer.name}")(t))
                    act = next(i.activation for i in self.facts.layers if i.name == layer.name)
                    self.relu_layers.append((layer.name, act or "relu"))
                elif type(layer).__name__ == "BatchNormalization" and any(
                    b.name == layer.name for b in self.facts.batchnorms
                ):
                    t = on_path[layer.name][0] if layer.name in on_path else layer.input
                    mean = layer_types["mean"](name=f"kd_mean_{layer.name}")(t)
                    m2 = layer_types["m2"](name=f"kd_m2_{layer.name}")(t)
                    bn_taps += [mean, m2]
                    self.bn_layers.append(layer.name)
            except (AttributeError, ValueError):  # a shared layer with several nodes: skip
                continue
        return relu_taps + bn_taps

    def _savedmodel_fn(self) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        import tensorflow as tf

        fn = self.lm.signature
        keys = self.lm.signature_keys
        name = self.lm.output_name
        assert fn is not None

        def run(xs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {k: tf.constant(x) for k, x in zip(keys, xs)}
            return [np.asarray(fn(**feed)[name])]

        return run

    def spatial_size(self, layer_name: str) -> int:
        """Values per channel per sample at a layer's input (1 for dense inputs)."""
        if layer_name not in self._spatial:
            shape = self.lm.keras_model.get_layer(layer_name).input.shape
            self._spatial[layer_name] = int(np.prod(shape[1:-1], dtype=np.int64)) or 1
        return self._spatial[layer_name]

    # -- running

    def cast(self, xs: Sequence[Any]) -> list[np.ndarray]:
        out = []
        for x, spec in zip(xs, self.lm.inputs):
            a = np.asarray(x)
            want = np.dtype(spec.dtype) if _is_numpy_dtype(spec.dtype) else np.float32
            out.append(a.astype(want, copy=False))
        return out

    def run_batch(self, xs: Sequence[Any]) -> list[np.ndarray]:
        """Raw outputs: [head output, taps...] for one batch."""
        return self._fn(self.cast(xs))

    def predict(
        self, xs: Sequence[np.ndarray], head: str, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, predicted classes) for small in-memory arrays (bounded re-runs)."""
        n = len(xs[0])
        probs, preds = [], []
        for s in range(0, n, batch_size):
            raw = self.run_batch([x[s : s + batch_size] for x in xs])[0]
            raw = raw.reshape(raw.shape[0], -1).astype(np.float64)
            p = probability_fn(head, raw.shape[1])(raw)
            probs.append(p)
            preds.append(predicted_classes(raw, p))
        return np.concatenate(probs), np.concatenate(preds)


def _is_numpy_dtype(name: str) -> bool:
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


def predicted_classes(raw: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One unit: class 1 when P > 0.5; several: the argmax."""
    if raw.shape[1] == 1:
        return (probs[:, 0] > 0.5).astype(np.int64)
    return np.argmax(raw, axis=1).astype(np.int64)


_REDUCTION_LAYERS: dict[str, Any] = {}


def _reduction_layers() -> dict[str, Any]:
    """Keras layers reducing (batch, ..., C) to (batch, C), defined once keras is imported."""
    if _REDUCTION_LAYERS:
        return _REDUCTION_LAYERS
    from kerasdoctor._keras import keras

    k = keras()
    ops = k.ops

    class _Reduce(k.layers.Layer):  # type: ignore[name-defined]
        mode = "max"

        def call(self, t: Any) -> Any:
            axes = tuple(range(1, len(t.shape) - 1))
            t = ops.cast(t, "float32")
            if self.mode == "max":
                return ops.max(t, axis=axes) if axes else t
            mean = ops.mean(t, axis=axes) if axes else t
            if self.mode == "mean":
                return mean
            if not axes:
                return ops.zeros_like(t)
            return ops.sum(ops.square(t - ops.mean(t, axis=axes, keepdims=True)), axis=axes)

    for mode in ("max", "mean", "m2"):
        _REDUCTION_LAYERS[mode] = type(f"KDReduce_{mode}", (_Reduce,), {"mode": mode})
    return _REDUCTION_LAYERS


# ------------------------------------------------------------------ the pass


def default_batch_size(arrays: Sequence[Any]) -> int:
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
        z = row_ids.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * np.uint64(
            0x9E3779B97F4A7C15
        )
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
            token_inputs=[s.name for s in predictor.lm.inputs
                          if "Embedding" in predictor.facts.input_consumers.get(s.name, ())],
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

    def update(self, xs: Sequence[Any], y: np.ndarray, outs: Sequence[np.ndarray],
               row_ids: np.ndarray) -> None:
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
                name=name, shape=tuple(int(d) for d in x.shape[1:]), dtype=str(x.dtype),
                moments=Moments.empty(1 if x.ndim == 1 else int(x.shape[-1])),
            )  # `integral` starts True and is refined per batch (floats may hold whole numbers)
            for name, x in zip(self.layout.input_names, xs)
        ]
        for st in self.inputs:
            if st.name in self.layout.token_inputs:
                st.tokens = TokenStats()
        row_bytes = sum(int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize
                        for x in xs)
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

    def _keep(self, xs: list[np.ndarray], y: np.ndarray, rows: np.ndarray,
              probs: np.ndarray) -> None:
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

    def _admit(self, c: int, keys: np.ndarray, rows: np.ndarray, probs: np.ndarray,
               fetch: Callable[[np.ndarray], list[np.ndarray]], per_class: int) -> None:
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
            self.buffers = [np.concatenate([b, np.zeros((grow, *b.shape[1:]), b.dtype)])
                            for b in self.buffers]
            self.free = list(range(start + grow - 1, start - 1, -1))
        return self.free.pop()

    def _trim(self, per_class: int) -> None:
        """New classes shrink every class's share: drop the largest keys beyond it."""
        for c, kept in list(self.kept.items()):
            if kept.keys.size > per_class:
                order = np.argsort(kept.keys, kind="stable")
                stay, leave = order[:per_class], order[per_class:]
                self.free.extend(kept.slots[leave].tolist())
                self.kept[c] = _Kept(kept.keys[stay], kept.rows[stay], kept.slots[stay],
                                     kept.probs[stay])

    # -- merging and finishing

    def merge(self, other: ProbeState) -> ProbeState:
        """Fold in a state built on other rows (another shard); exact for every figure."""
        if other.n == 0:
            return self
        if self.n == 0 and not self.inputs:
            self.inputs = [InputStats(st.name, st.shape, st.dtype, Moments.empty(
                st.moments.n_features)) for st in other.inputs]
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
            scores = (np.concatenate([c[3] for c in self.chunks if c[3] is not None])[order]
                      if has_scores else None)
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
            output=OutputStats(self.head_used or "linear", self.raw, self.probs,
                               self.nonfinite_rows),
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


def array_batches(arrays: Sequence[Any], y: np.ndarray, batch_size: int,
                  indices: np.ndarray | None = None) -> Iterator[Batch]:
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
