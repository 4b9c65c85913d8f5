"""Dense and multi-label models on sharded data (issue 16, item 5).

    dense:       Create(shards) | labels per batch  | sum          -> the position prior
                 Create(shards) | read + predict + dense._Acc per batch | merge -> dense._Acc
    multi-label: Create(shards) | read + predict + rows per batch   | merge -> (N, K) outputs

The workers fill the same accumulators as the single run (dense._Acc.add, the per-row outputs
of multilabel.predict_batch, rowstate.Moments), the combiner merges them (sums added,
per-row blocks joined in global row order), and the launcher builds the report through the
functions the single run ends in (dense.dense_report, multilabel.multilabel_report). The
experiments that re-run the model read the bounded sample (task_causes.sample_rows), whose
rows the workers keep by global row id. Shards are .npz (`kerasdoctor shard --format npz`).
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from kerasdoctor.beam.layout import NPZ, Shard, ShardSet, find_shards, open_file
from kerasdoctor.beam.pipeline import ModelSource, bind_batch, run_to_result
from kerasdoctor.beam.reader import ReadSpec, input_keys, read_batches
from kerasdoctor.errors import InputError
from kerasdoctor.metrics import names_for_classes
from kerasdoctor.sampling import sample_indices

DENSE, MULTILABEL = "dense", "multilabel"


def task_of(lm: Any, shards: ShardSet, opts: Any) -> str | None:
    """dense / multilabel when the shards hold such labels for this model; None otherwise."""
    from kerasdoctor.dense import is_dense_output, labels_fit
    from kerasdoctor.multilabel import is_multi_hot

    enc = shards.manifest.label_encoding if shards.manifest is not None else None
    if enc == "dense":
        return DENSE
    if enc == "multi-hot":
        return MULTILABEL
    if shards.format != NPZ or enc is not None and not opts.multi_label:
        return None
    first = next(s for s in shards.shards if s.rows > 0)
    with open_file(first.path) as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
        if opts.y_key not in npz.files:
            return None
        y = np.asarray(npz[opts.y_key])
    if not opts.multi_label and is_dense_output(lm) and labels_fit(y, tuple(lm.output_shape)):
        return DENSE
    if opts.multi_label or (opts.multi_label is None and is_multi_hot(y)):
        return MULTILABEL
    return None


@dataclass
class RawPlan:
    shards: ShardSet
    spec: ReadSpec
    names: list[str] | None
    has_mask: bool
    first_y: np.ndarray
    first_mask: np.ndarray | None
    n: int  # rows diagnosed (after --sample)


def plan_raw(lm: Any, shards: ShardSet, opts: Any) -> RawPlan:
    """The .npz shards' input keys, class names, mask, first rows; --sample's rows."""
    if shards.format != NPZ:
        raise InputError(
            f"DATA: {shards.pattern}: dense and multi-label labels are read from "
            ".npz shards (kerasdoctor shard DATA.npz OUTDIR --format npz)"
        )
    y_key = opts.y_key
    first = next(s for s in shards.shards if s.rows > 0)
    manifest = shards.manifest
    names = list(manifest.class_names) if manifest and manifest.class_names else None
    with open_file(first.path) as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as npz:
        available = [k for k in npz.files if k not in (y_key, "class_names", "mask")]
        if names is None and "class_names" in npz.files:
            names = [str(v) for v in npz["class_names"].tolist()]
        has_mask = "mask" in npz.files
        first_y = np.asarray(npz[y_key][:64]) if y_key in npz.files else None
        first_mask = np.asarray(npz["mask"][:64]) if has_mask else None
    if first_y is None:
        raise InputError(f"DATA: {first.path} has no '{y_key}' array for the labels")
    if opts.x_key is not None:
        if opts.x_key not in available:
            raise InputError(
                f"DATA: {first.path} has no '{opts.x_key}' array "
                f"(found: {', '.join(sorted(available))})"
            )
        available = [opts.x_key]
    keys = input_keys(available, lm.inputs, first.path)
    if opts.batch_size is not None and opts.batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {opts.batch_size}")
    n_total = shards.n_samples
    selected = sample_indices(n_total, opts.sample, opts.seed)  # the rows the .npz run reads
    spec = ReadSpec(
        NPZ,
        tuple(keys) + (("mask",) if has_mask else ()),
        y_key,
        64,
        (),
        tuple(names) if names else None,
        selected,
        raw_labels=True,
    )
    n = int(selected.size) if selected is not None else n_total
    return RawPlan(shards, spec, names, has_mask, first_y, first_mask, n)


# ------------------------------------------------------------------ running a combine


class _Merge(beam.CombineFn):
    """Merges accumulators with .merge(other) (dense._Acc, _Rows, _Sums)."""

    def __init__(self, empty: Callable[[], Any]) -> None:
        self.empty = empty

    def create_accumulator(self) -> Any:
        return self.empty()

    def add_input(self, acc: Any, element: Any) -> Any:
        return acc.merge(element)

    def merge_accumulators(self, accs: Any) -> Any:
        it = iter(accs)
        first = next(it)
        for other in it:
            first = first.merge(other)
        return first

    def extract_output(self, acc: Any) -> Any:
        return acc


def _write(state: Any, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def run_combine(
    shards: Sequence[Shard], fn: beam.DoFn, empty: Callable[[], Any], pipeline_args: Sequence[str]
) -> Any:
    """Create(shards) | ParDo(fn) | CombineGlobally(merge) -> the merged accumulator."""

    def build(p: Any, out_path: str) -> None:
        _ = (
            p
            | "Shards" >> beam.Create(list(shards))
            | "Read" >> beam.ParDo(fn)
            | "Merge" >> beam.CombineGlobally(_Merge(empty))
            | "Write" >> beam.Map(_write, out_path)
        )

    merged, _ = run_to_result(build, pipeline_args, "task")
    return merged


class _Model(beam.DoFn):
    """Reads shards in batches; loads the model once per worker when it needs one."""

    def __init__(self, model: ModelSource | None, spec: ReadSpec) -> None:
        self.model, self.spec = model, spec
        self.lm: Any = None
        self.facts: Any = None
        self.predictor: Any = None

    def setup(self) -> None:
        if self.model is None:
            return
        from kerasdoctor.model_facts import read_facts
        from kerasdoctor.predictor import Predictor

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.lm = self.model.load()
            self.facts = read_facts(self.lm)
            self.predictor = Predictor(self.lm, self.facts, taps=False)

    def batches(
        self, shard: Shard
    ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, np.ndarray]]:
        for arrays, y, rows in read_batches(shard, self.spec):
            mask = arrays.pop("mask", None)
            if rows.size and not np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size)):
                raise RuntimeError("a batch's rows are not contiguous")
            yield arrays, y, mask, rows


# ------------------------------------------------------------------ dense


@dataclass(frozen=True)
class DenseSpec:
    k_out: int
    onehot: bool
    tail: tuple[int, ...]  # a sample's positions (the labels' shape less N)
    ignore: int | None
    where: str


class _Sums:
    """The label pass: counted positions per class, of all rows and of the fit half."""

    def __init__(self, k: int) -> None:
        self.all, self.fit, self.any = np.zeros(k, np.int64), np.zeros(k, np.int64), False

    def merge(self, o: _Sums) -> _Sums:
        self.all += o.all
        self.fit += o.fit
        self.any = self.any or o.any
        return self


def _dense_rows(
    y: np.ndarray, mask: np.ndarray | None, d: DenseSpec, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    from kerasdoctor.dense import _label_indices, _Labels, _Shapes, check_label_values

    shapes = _Shapes(d.k_out, d.onehot)
    pos_shape = (int(y.shape[0]), *d.tail)
    labels = _Labels(
        _label_indices(y, shapes, pos_shape),
        None if mask is None else np.asarray(mask) != 0,
        d.ignore,
    )
    yi, cb = labels.rows(slice(None))
    check_label_values(yi, cb, shapes.k, d.where, int(rows[0]) if rows.size else 0, d.ignore)
    return yi, cb


class _DenseLabels(_Model):
    def __init__(self, spec: ReadSpec, d: DenseSpec, in_fit: np.ndarray) -> None:
        super().__init__(None, spec)
        self.d, self.in_fit = d, in_fit

    def process(self, shard: Shard) -> Iterator[_Sums]:
        from kerasdoctor.dense import label_counts

        k = 2 if self.d.k_out == 1 else self.d.k_out
        for _, y, mask, rows in self.batches(shard):
            yi, cb = _dense_rows(y, mask, self.d, rows)
            out = _Sums(k)
            out.all, out.fit = label_counts(yi, cb, self.in_fit[rows], k)
            out.any = bool(cb.any())
            yield out


class _DensePass(_Model):
    def __init__(
        self,
        model: ModelSource,
        spec: ReadSpec,
        d: DenseSpec,
        prior: np.ndarray,
        wanted: np.ndarray,
    ) -> None:
        super().__init__(model, spec)
        self.d, self.prior, self.wanted = d, prior, wanted

    def process(self, shard: Shard) -> Iterator[Any]:
        from kerasdoctor.dense import _Acc, _predict_probs, _Shapes
        from kerasdoctor.rowstate import moments_of

        shapes = _Shapes(self.d.k_out, self.d.onehot)
        log_prior = np.log(np.maximum(self.prior, 1e-12)).astype(np.float32)
        for arrays, y, mask, rows in self.batches(shard):
            b = int(rows.size)
            yi, cb = _dense_rows(y, mask, self.d, rows)
            xs = bind_batch(arrays, np.zeros(b, np.int64), self.lm)
            acc = _Acc(b, shapes.k, shapes.k_out == 1, start=int(rows[0]))
            acc.inputs = moments_of(xs)
            for m, a in zip(acc.inputs, xs):
                m.update(a)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = _predict_probs(
                    self.lm, self.predictor, self.facts.head, xs, (b, *self.d.tail), shapes
                )
            acc.add(p, yi.reshape(b, -1), cb.reshape(b, -1), log_prior, 0)
            keep = np.isin(rows, self.wanted)
            if keep.any():
                acc.kept.append((rows[keep], [np.asarray(a[keep]) for a in xs], yi[keep], cb[keep]))
            yield acc


def diagnose_dense(
    source: ModelSource,
    lm: Any,
    facts: Any,
    shards: ShardSet,
    opts: Any,
    pipeline_args: Sequence[str],
) -> Any:
    from kerasdoctor.dense import (
        _Acc,
        _Labels,
        check_labels,
        dense_report,
        pass_batch,
        position_prior,
        split_samples,
    )
    from kerasdoctor.rowstate import RowsAt
    from kerasdoctor.task_causes import sample_rows

    plan = plan_raw(lm, shards, opts)
    where = f"DATA: {shards.pattern}: '{opts.y_key}'"
    shapes = check_labels(plan.first_y, tuple(lm.output_shape), where)
    y0 = plan.first_y
    tail = tuple(
        int(d)
        for d in (
            y0.shape[1:-1]
            if shapes.onehot or (shapes.k_out == 1 and y0.ndim == len(lm.output_shape))
            else y0.shape[1:]
        )
    )
    if plan.first_mask is not None and tuple(plan.first_mask.shape[1:]) != tail:
        raise InputError(
            f"{where}: 'mask' has rows of shape {plan.first_mask.shape[1:]}; "
            f"expected {tail} (True = the position counts)"
        )
    k = shapes.k
    class_names = names_for_classes(plan.names, opts.class_names, k, where)
    ignore = getattr(opts, "ignore_label", None)
    d = DenseSpec(shapes.k_out, shapes.onehot, tail, None if ignore is None else int(ignore), where)
    n = plan.n
    fit, _ = split_samples(n, opts.seed)
    in_fit = np.zeros(n, bool)
    in_fit[fit] = True
    label_spec = replace(plan.spec, input_keys=("mask",) if plan.has_mask else (), batch_size=4096)
    sums = run_combine(
        plan.shards.shards, _DenseLabels(label_spec, d, in_fit), lambda: _Sums(k), pipeline_args
    )
    if not sums.any:
        raise InputError(f"{where}: no position counts (the mask / --ignore-label leave none)")
    prior = position_prior(sums.fit)
    per_row = int(np.prod(tail, dtype=np.int64)) * max(shapes.k_out, 2)
    wanted = sample_rows(n, per_row, opts.seed, dense=True)
    templates = [np.empty((0, *s.shape[1:]), np.float32) for s in lm.inputs]
    batch = pass_batch(templates, (n, *tail), shapes, opts.batch_size)
    spec = replace(plan.spec, batch_size=batch)
    one_unit = shapes.k_out == 1
    acc = run_combine(
        plan.shards.shards,
        _DensePass(source, spec, d, prior, wanted),
        lambda: _Acc(0, k, one_unit),
        pipeline_args,
    )
    acc.finish(n)
    kept = acc.kept or [
        (
            np.zeros(0, np.int64),
            [np.zeros((0, *s.shape[1:])) for s in lm.inputs],
            np.zeros((0, *tail), np.int64),
            np.zeros((0, *tail), bool),
        )
    ]
    ids = np.concatenate([r[0] for r in kept])
    xs = [RowsAt(ids, np.concatenate([r[1][i] for r in kept]), n) for i in range(len(kept[0][1]))]
    idx = RowsAt(ids, np.concatenate([r[2] for r in kept]), n)
    cnt = RowsAt(ids, np.concatenate([r[3] for r in kept]), n)
    labels = _Labels(idx, cnt, None)  # type: ignore[arg-type]
    drawn = (
        _sample_masks(lm, facts, kept, shapes, tail, prior, int(np.argmax(sums.all)), opts)
        if len(tail) == 2 and ids.size
        else ()
    )  # (N, H, W): images, not tokens
    return dense_report(
        lm,
        facts,
        shards.pattern,
        acc,
        xs,
        labels,
        np.arange(n),
        shapes,
        class_names,
        prior,
        opts,
        samples=drawn,
        sampled_from=shards.n_samples if plan.spec.selected is not None else None,
        shards=len(shards.shards),
    )


def _sample_masks(
    lm: Any,
    facts: Any,
    kept: Sequence[Any],
    shapes: Any,
    tail: tuple[int, ...],
    prior: np.ndarray,
    majority: int,
    opts: Any,
) -> tuple[Any, ...]:
    """The samples the HTML report draws, for a sharded run: chosen as the single run chooses
    them (the worst by foreground lost to the majority class, then seeded picks), but among
    the rows of the bounded sample the workers kept, which the launcher re-runs (at most a
    few hundred rows: the whole data never comes back to it)."""
    import copy
    from dataclasses import replace as with_row

    from kerasdoctor.dense import _Labels, _mask_samples, _pass, _Picker

    ids = np.concatenate([r[0] for r in kept])
    order = np.argsort(ids, kind="stable")  # global row order
    m = int(ids.size)
    xs = [np.concatenate([r[1][i] for r in kept])[order] for i in range(len(kept[0][1]))]
    labels = _Labels(
        np.concatenate([r[2] for r in kept])[order],
        np.concatenate([r[3] for r in kept])[order],
        None,
    )
    quiet = copy.copy(opts)
    quiet.progress = None
    picker = _Picker(m, majority, opts.seed, tail, shapes.k)
    acc = _pass(lm, facts, xs, labels, shapes, prior, np.arange(m), quiet, [], picker)
    local = _mask_samples(picker, acc, xs, labels, np.arange(m))
    return tuple(with_row(s, row=int(ids[order][s.row])) for s in local)


# ------------------------------------------------------------------ multi-label


class _Rows:
    """Per-row raw outputs and labels in blocks keyed by their first global row id, the
    input moments, and the rows the experiments re-run."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.inputs: list[Any] = []
        self.kept: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def merge(self, o: _Rows) -> _Rows:
        from kerasdoctor.rowstate import merge_moments

        self.blocks += o.blocks
        self.inputs = merge_moments(self.inputs, o.inputs)
        self.kept += o.kept
        return self

    def finish(self, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        blocks = sorted(self.blocks, key=lambda b: b[0])
        at = 0
        for start, raw, _ in blocks:
            if start != at:
                raise RuntimeError(f"the merged state misses or repeats rows at {at}")
            at += int(raw.shape[0])
        if at != n:
            raise RuntimeError(f"the merged state holds {at} rows, not {n}")
        if not blocks:
            return np.zeros((0, k)), np.zeros((0, k), np.int8)
        return (np.concatenate([b[1] for b in blocks]), np.concatenate([b[2] for b in blocks]))


class _MultiLabelPass(_Model):
    def __init__(
        self, model: ModelSource, spec: ReadSpec, k: int, where: str, wanted: np.ndarray
    ) -> None:
        super().__init__(model, spec)
        self.k, self.where, self.wanted = k, where, wanted

    def process(self, shard: Shard) -> Iterator[_Rows]:
        from kerasdoctor.multilabel import check_multi_hot, predict_batch
        from kerasdoctor.rowstate import moments_of

        for arrays, y, _, rows in self.batches(shard):
            yb = check_multi_hot(y, self.where)
            if yb.shape[1] != self.k:
                raise InputError(
                    f"{self.where} has {yb.shape[1]} columns in {shard.path}, {self.k} elsewhere"
                )
            xs = bind_batch(arrays, np.zeros(len(rows), np.int64), self.lm)
            out = _Rows()
            out.inputs = moments_of(xs)
            for m, a in zip(out.inputs, xs):
                m.update(a)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = predict_batch(self.lm, self.predictor, xs, self.k)
            out.blocks.append((int(rows[0]), raw, yb))
            keep = np.isin(rows, self.wanted)
            if keep.any():
                out.kept.append((rows[keep], [np.asarray(a[keep]) for a in xs]))
            yield out


def diagnose_multilabel(
    source: ModelSource,
    lm: Any,
    facts: Any,
    shards: ShardSet,
    opts: Any,
    pipeline_args: Sequence[str],
) -> Any:
    from kerasdoctor.multilabel import check_multi_hot, multilabel_report
    from kerasdoctor.probe import default_batch_size
    from kerasdoctor.rowstate import RowsAt
    from kerasdoctor.task_causes import sample_rows

    plan = plan_raw(lm, shards, opts)
    where = f"DATA: {shards.pattern}: '{opts.y_key}'"
    k = int(check_multi_hot(plan.first_y, where).shape[1])
    label_names = names_for_classes(plan.names, opts.class_names, k, where, "labels")
    n = plan.n
    wanted = sample_rows(n, k, opts.seed, dense=False)
    templates = [np.empty((0, *s.shape[1:]), np.float32) for s in lm.inputs]
    spec = replace(plan.spec, batch_size=int(opts.batch_size or default_batch_size(templates)))
    state = run_combine(
        plan.shards.shards, _MultiLabelPass(source, spec, k, where, wanted), _Rows, pipeline_args
    )
    raw, y = state.finish(n, k)
    ids = np.concatenate([kept[0] for kept in state.kept]) if state.kept else np.zeros(0, np.int64)
    xs = (
        [
            RowsAt(ids, np.concatenate([kept[1][i] for kept in state.kept]), n)
            for i in range(len(lm.inputs))
        ]
        if state.kept
        else []
    )
    return multilabel_report(
        lm,
        facts,
        shards.pattern,
        raw,
        y,
        np.arange(n),
        xs,
        label_names,
        state.inputs,
        opts,
        sampled_from=shards.n_samples if plan.spec.selected is not None else None,
        shards=len(shards.shards),
    )


def diagnose_task(
    source: ModelSource, lm: Any, facts: Any, pattern: str, opts: Any, pipeline_args: Sequence[str]
) -> Any | None:
    """The dense / multi-label report of the shards, or None for the single-label path."""
    shards = find_shards(pattern, label_key=opts.y_key)
    task = task_of(lm, shards, opts)
    if task == DENSE:
        return diagnose_dense(source, lm, facts, shards, opts, pipeline_args)
    if task == MULTILABEL:
        return diagnose_multilabel(source, lm, facts, shards, opts, pipeline_args)
    return None
