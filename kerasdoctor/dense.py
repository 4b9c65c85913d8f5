"""Dense diagnosis (issue 16): per-pixel classifiers (output (N, H, W, K) or (N, H, W, 1)
sigmoid, y (N, H, W)) and per-token taggers (output (N, T, K), y (N, T)).

Metrics count positions: the positions a `mask` array in the .npz marks True, less those whose
label is --ignore-label. One streaming pass over batches accumulates a K x K confusion matrix,
per-class 256-bin histograms of each class's probability (positives and negatives apart: a
histogram ROC AUC), and small per-sample counts; no per-position array outlives its batch.

Foreground is "any class but the majority class of the counted labels" (the background of a
segmentation is usually class 0, but a dataset may number it otherwise; the majority is what a
collapsed model falls back on, and is class 0 on every fixture).

Findings use the catalogue ids: prediction-collapse, missing-classes, quality-gate (symptoms),
class-imbalance (with a logit-adjustment experiment) and decision-threshold (one sigmoid unit,
with a Youden-threshold experiment); chance-level and the model-level causes come from
task_causes. The report lists exactly the checks whose specs declare the dense task
(checks.for_task), assembled as a multi-label one is (task_report.assemble). Experiments fit
on one seeded half of the samples and are scored on the other; their noise is a paired
bootstrap over samples, since positions within a sample are far from independent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kerasdoctor.checks.base import DENSE
from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Kind, Report, Severity
from kerasdoctor.metrics import names_for_classes

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult, ProbeResult
    from kerasdoctor.sections import ClassMetrics, DenseClassMetrics, DenseMetrics


BINS = 256  # histogram bins of a class probability in [0, 1]
MIN_SAMPLES = 10  # a class must appear in >= 10 samples before "never predicted" is judged
MIN_POSITIONS = 100  # ... and cover >= 100 counted positions
STARVED_RATE = 0.25  # a class predicted on <= 1/4 of its label share is starved
COLLAPSE_EXCESS = 0.25  # >= a quarter of the foreground positions lost to the majority class
Z_ONE_SIDED = 2.326  # one-sided 99%
MIN_GAIN = 0.02  # an experiment's gain must also clear this (besides 2 bootstrap SE)
RARE_SHARE = 0.10  # class-imbalance: the dropped classes hold < 10% of the positions each
BOOTSTRAP = 200
OUT_BYTES = 64 * 2**20  # bound on one batch's model output (float32)
CHUNK = 2**21  # positions x classes handled at once within a batch


class _Shapes:
    """How y, the mask and the model output line up."""

    def __init__(self, k_out: int, onehot: bool) -> None:
        self.k_out = k_out  # units of the output's last axis (1: one sigmoid unit)
        self.k = 2 if k_out == 1 else k_out  # classes
        self.onehot = onehot  # y one-hot (N, ..., K)


# ------------------------------------------------------------------ detection and reading


def is_dense_output(lm: Any) -> bool:
    """The model's output has rank >= 3: (N, H, W, K), (N, T, K), ..."""
    return len(tuple(lm.output_shape)) >= 3


def labels_fit(y: Any, out_shape: Sequence[int | None]) -> bool:
    """y (N, ...) of the output's shape less its class axis, or of the output's shape."""
    shape = np.shape(y)
    if len(out_shape) < 3 or len(shape) < 2:
        return False

    def fits(a: Sequence[int], b: Sequence[int | None]) -> bool:
        return len(a) == len(b) and all(d is None or d == e for e, d in zip(a, b))

    if (
        len(shape) == 2
        and shape[1] == out_shape[-1]
        and out_shape[1] != shape[1]
        and np.all(np.sum(y, axis=1) == 1)
    ):
        return False  # one-hot (N, K) rows for an (N, ?, K) output: the single-label reading
    return fits(shape[1:], out_shape[1:-1]) or fits(shape[1:], out_shape[1:])


def read_dense_npz(
    path: str | os.PathLike[str], x_key: str | None, y_key: str
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, list[str] | None]:
    """Inputs, raw y, the optional `mask` and the class names of an .npz (the checks of
    multilabel.read_multilabel_npz: no pickle, damaged members refused)."""
    from kerasdoctor.multilabel import read_multilabel_npz

    arrays, y, names = read_multilabel_npz(path, x_key, y_key)
    mask = None
    with np.load(Path(path), allow_pickle=False) as npz:
        if "mask" in npz.files:
            try:
                mask = np.asarray(npz["mask"])
            except ValueError as exc:
                raise InputError(f"DATA: {path}: array 'mask' is not readable") from exc
    return arrays, y, mask, names


def diagnose_npz(lm: Any, data_path: str | os.PathLike[str], opts: Any) -> Report:
    arrays, y, mask, names = read_dense_npz(data_path, opts.x_key, opts.y_key)
    return diagnose_loaded(lm, str(data_path), arrays, y, mask, names, opts)


def diagnose_arrays(
    lm: Any, x: Any, y: Any, opts: Any, mask: Any = None, samples: bool = True
) -> Report:
    """kerasdoctor.diagnose(model, x, y) with a model whose output has rank >= 3; `mask`
    (N, ...) marks the positions that count (the .npz's `mask`)."""
    if isinstance(x, Mapping):
        arrays = {str(key): np.asarray(v) for key, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = {f"x{i}": np.asarray(v) for i, v in enumerate(x)}
    else:
        arrays = {"x": np.asarray(x)}
    return diagnose_loaded(lm, "<arrays>", arrays, np.asarray(y), mask, None, opts, samples=samples)


def _fmt(shape: Sequence[Any]) -> str:
    return "(N, " + ", ".join("?" if d is None else str(d) for d in shape[1:]) + ")"


def check_labels(y: np.ndarray, out_shape: Sequence[int | None], where: str) -> _Shapes:
    """y against the output shape: indices of shape output[:-1], or one-hot of the output's
    shape (K > 1). An InputError (exit 2, one line) otherwise."""
    k_out = out_shape[-1]
    if k_out is None:
        raise InputError(f"MODEL: the output {_fmt(out_shape)} has no fixed class axis")
    if y.dtype.kind not in "biuf":
        raise InputError(f"{where} has dtype {y.dtype}; dense labels must be class indices")
    if y.ndim >= 1 and y.shape[0] == 0:
        raise InputError(f"{where} holds no samples")

    def fits(a: Sequence[int], b: Sequence[int | None]) -> bool:
        return len(a) == len(b) and all(d is None or d == e for e, d in zip(a, b))

    if fits(y.shape[1:], out_shape[1:-1]):
        return _Shapes(int(k_out), False)
    if k_out == 1 and fits(y.shape[1:], out_shape[1:]):
        return _Shapes(1, False)  # (N, H, W, 1) masks for (N, H, W, 1) sigmoid
    if k_out > 1 and fits(y.shape[1:], out_shape[1:]):
        return _Shapes(int(k_out), True)
    raise InputError(
        f"{where} has shape {_fmt(y.shape)} but the model outputs {_fmt(out_shape)}; dense "
        f"labels are class indices {_fmt(tuple(out_shape[:-1]))} or one-hot {_fmt(out_shape)}"
    )


def diagnose_loaded(
    lm: Any,
    path: str,
    arrays: Mapping[str, np.ndarray],
    y: np.ndarray,
    mask: Any,
    names: Sequence[str] | None,
    opts: Any,
    samples: bool = True,
) -> Report:
    """The diagnosis of labels read whole (.npz or arrays). `samples`: pick the few samples
    the HTML report draws (DenseReport.samples; the callback, which keeps a report per
    epoch, does without)."""
    import warnings

    from kerasdoctor.load import Labels, RawData, bind_inputs
    from kerasdoctor.multilabel import _sample_indices

    where = f"DATA: {path}: '{getattr(opts, 'y_key', 'y')}'" if path != "<arrays>" else "y"
    shapes = check_labels(y, tuple(lm.output_shape), where)
    if y.dtype.kind == "f" and not all(np.isfinite(y[s]).all() for s in _row_spans(y)):
        raise InputError(f"{where} has NaN/Inf labels")
    n = y.shape[0]
    pos_shape = (
        y.shape[:-1]
        if shapes.onehot or (shapes.k_out == 1 and y.ndim == len(lm.output_shape))
        else y.shape
    )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != pos_shape or mask.dtype.kind not in "biu":
            raise InputError(
                f"DATA: {path}: 'mask' has shape {_fmt(mask.shape)} "
                f"({mask.dtype}); expected booleans {_fmt(pos_shape)} "
                "(True = the position counts)"
            )
        if mask.dtype != bool:
            mask = mask != 0
    k = shapes.k
    class_names = names_for_classes(names, opts.class_names, k, where)
    ignore_label = getattr(opts, "ignore_label", None)
    labels = _Labels(
        _label_indices(y, shapes, pos_shape),
        mask,
        None if ignore_label is None else int(ignore_label),
    )
    counts_any = False
    for s in _row_spans(labels.idx):
        yi, cb = labels.rows(s)
        check_label_values(yi, cb, k, where, s.start, ignore_label)
        counts_any = counts_any or bool(cb.any())
    if not counts_any:
        raise InputError(f"{where}: no position counts (the mask / --ignore-label leave none)")
    raw = RawData(path, dict(arrays), Labels(np.zeros(n, np.int64), "index", k, class_names))
    xs = bind_inputs(raw, lm)
    indices = _sample_indices(n, opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _diagnose(lm, path, xs, labels, shapes, class_names, indices, opts, samples)


def check_label_values(
    yi: np.ndarray, cb: np.ndarray, k: int, where: str, row0: int, ignore_label: int | None
) -> None:
    """Every counted label is a class of the model (rows row0.. of the data)."""
    bad = cb & ((yi < 0) | (yi >= k))
    if bad.any():
        first = np.argwhere(bad)[0]
        at = (int(first[0]) + row0, *(int(v) for v in first[1:]))
        raise InputError(
            f"{where} holds label {yi[tuple(first)]} at {at}; the model has {k} classes "
            "(0.."
            + str(k - 1)
            + ")"
            + ("" if ignore_label is not None else "; mark void labels with --ignore-label")
        )


ROW_ELEMENTS = 2**20  # elements of the labels handled at once outside the pass


def _row_spans(a: Any, rows: int | None = None) -> list[slice]:
    """Slices of a few rows of `a` (at most ~ROW_ELEMENTS elements each; at least one row)."""
    n = a.shape[0] if rows is None else rows
    step = max(1, ROW_ELEMENTS // max(int(np.prod(a.shape[1:], dtype=np.int64)), 1))
    return [slice(s, min(n, s + step)) for s in range(0, n, step)]


def _index_dtype(lo: int, hi: int) -> np.dtype[Any]:
    """The smallest integer dtype holding lo..hi."""
    return np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi))


def _label_indices(y: np.ndarray, shapes: _Shapes, pos_shape: tuple[int, ...]) -> np.ndarray:
    """Class indices (N, ...): integer labels as they are (no copy: dense labels are as large
    as the images), bool ones viewed as uint8; one-hot and float labels converted a few rows at
    a time into the smallest integer dtype that holds them."""
    if shapes.onehot:
        out = np.empty(pos_shape, _index_dtype(0, shapes.k - 1))
        for s in _row_spans(y):
            out[s] = np.argmax(y[s], axis=-1)
        return out
    v = y.reshape(pos_shape)
    if v.dtype.kind == "b":
        return v.view(np.uint8)
    if v.dtype.kind in "iu":
        return v
    lo, hi = 0, 0
    for s in _row_spans(v):
        c = v[s]
        if not np.all(c == np.round(c)):
            raise InputError("y holds non-integer dense labels; expected class indices")
        if c.size:
            lo, hi = min(lo, int(c.min())), max(hi, int(c.max()))
    out = np.empty(pos_shape, _index_dtype(lo, hi))
    for s in _row_spans(v):
        out[s] = v[s]
    return out


class _Labels:
    """Every position's class index (in a compact dtype) and whether it counts (the mask, less
    --ignore-label), read a few rows at a time: no int64 or boolean copy of all the labels."""

    def __init__(self, idx: np.ndarray, mask: np.ndarray | None, ignore: int | None) -> None:
        self.idx = idx
        self.mask = mask
        self.ignore = ignore
        self.shape: tuple[int, ...] = tuple(idx.shape)

    def rows(self, sel: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(int64 class indices, counted) of these rows."""
        yi = np.asarray(self.idx[sel], dtype=np.int64)
        cb = (
            np.ones(yi.shape, bool) if self.mask is None else np.array(self.mask[sel], dtype=bool)
        )  # a copy: &= below must not write back
        if self.ignore is not None:
            cb &= yi != self.ignore
        return yi, cb


# ------------------------------------------------------------------ the samples the HTML draws

SAMPLE_WORST = 3  # the samples that lose the largest share of their foreground to the majority
SAMPLE_SHOWN = 6  # in all: seeded picks fill the rest (all of them on a model that loses none)
SAMPLE_SIDE = 192  # masks and images are strided down to at most this many pixels a side


@dataclass(frozen=True, eq=False)
class MaskSample:
    """One sample the HTML report draws: its input and its true and predicted masks, strided
    to at most SAMPLE_SIDE pixels a side. Class indices; `void` marks positions that do not
    count (the mask, --ignore-label)."""

    row: int  # index of the sample in the data
    why: str  # "worst" (foreground lost) or "seeded"
    true: np.ndarray  # (h, w) class indices
    pred: np.ndarray  # (h, w) class indices, the model's rule
    void: np.ndarray  # (h, w) bool
    image: np.ndarray | None  # (h, w, 3) uint8, None when no input is an image of the mask's size
    stride: int  # the sample's pixels per drawn pixel, along each axis
    foreground: int  # counted positions of a class other than the majority
    lost: int  # ... of them predicted as the majority class
    accuracy: float | None  # over the sample's counted positions


@dataclass(frozen=True)
class DenseReport(Report):
    """A dense diagnosis: the Report (same JSON), plus the few samples the HTML report draws,
    which stay out of to_dict() and the JSON."""

    samples: tuple[MaskSample, ...] = field(default=(), compare=False, repr=False)


class _Picker:
    """Chooses the drawn samples during the pass, keeping only their (strided) predicted masks:
    the SAMPLE_WORST worst by share of foreground lost to the majority class, and seeded picks,
    so memory is a few masks whatever N."""

    def __init__(self, n: int, majority: int, seed: int, spatial: tuple[int, ...], k: int) -> None:
        self.majority = majority
        self.spatial = spatial
        self.stride = max(1, -(-max(spatial) // SAMPLE_SIDE))
        self.dtype = _index_dtype(0, k - 1)
        order = np.random.default_rng(seed).permutation(n)[:SAMPLE_SHOWN]
        self.seeded = [int(v) for v in order]  # in this order
        self.kept: dict[int, tuple[np.ndarray, int, int]] = {}  # position -> (pred, lost, fg)
        self.worst: list[tuple[float, int, int]] = []  # min-heap of (share lost, lost, -pos)

    def offer(self, start: int, lost: np.ndarray, fg: np.ndarray, pred: np.ndarray) -> None:
        """This batch's samples (positions start..): per-sample foreground lost and held,
        the batch's predicted classes (b, positions)."""
        import heapq

        s = self.stride

        def mask(j: int) -> np.ndarray:
            return np.ascontiguousarray(pred[j].reshape(self.spatial)[::s, ::s].astype(self.dtype))

        seeded = set(self.seeded)
        for j in range(len(lost)):
            pos, lo, f = start + j, int(lost[j]), int(fg[j])
            if pos in seeded:
                self.kept[pos] = (mask(j), lo, f)
            if lo <= 0:
                continue
            key = (lo / max(f, 1), lo, -pos)
            if len(self.worst) < SAMPLE_WORST:
                heapq.heappush(self.worst, key)
            elif key > self.worst[0]:
                out = -heapq.heapreplace(self.worst, key)[2]
                if out not in seeded:
                    self.kept.pop(out, None)
            else:
                continue
            if pos not in self.kept:
                self.kept[pos] = (mask(j), lo, f)

    def chosen(self) -> list[tuple[int, str, np.ndarray, int, int]]:
        """(position, why, predicted mask, lost, foreground): the worst first, then seeded."""
        out = [(-key[2], "worst") for key in sorted(self.worst, reverse=True)]
        taken = {pos for pos, _ in out}
        out += [(pos, "seeded") for pos in self.seeded if pos not in taken]
        return [(pos, why, *self.kept[pos]) for pos, why in out[:SAMPLE_SHOWN]]


def _image_input(xs: Sequence[Any], spatial: tuple[int, ...]) -> int | None:
    """The first input that is an image of the mask's size: (N, H, W) or (N, H, W, C)."""
    for i, a in enumerate(xs):
        shape = tuple(getattr(a, "shape", ()))
        if len(shape) in (3, 4) and shape[1:3] == spatial:
            return i
    return None


def _rgb(v: np.ndarray) -> np.ndarray:
    """An input sample (h, w) or (h, w, C) as uint8 RGB: uint8 as it is, values in [0, 1] or
    [0, 255] on that scale, anything else stretched from its 1st to its 99th percentile; one
    channel (or two) drawn grey, the first three of more."""
    v = v[..., None] if v.ndim == 2 else v
    v = v[..., :3] if v.shape[-1] >= 3 else np.repeat(v[..., :1], 3, axis=-1)
    if v.dtype == np.uint8:
        return np.ascontiguousarray(v)
    f = v.astype(np.float64)
    fin = np.isfinite(f)
    if not fin.any():
        return np.zeros(v.shape, np.uint8)
    lo, hi = float(f[fin].min()), float(f[fin].max())
    if lo >= 0 and (hi <= 1 or 32 < hi <= 255):  # pixels scaled to [0, 1], or as read
        lo, hi = 0.0, (1.0 if hi <= 1 else 255.0)
    else:
        lo, hi = (float(q) for q in np.percentile(f[fin], [1, 99]))
        hi = hi if hi > lo else lo + 1.0
    scaled = np.clip((np.where(fin, f, lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.asarray(np.round(scaled * 255), dtype=np.uint8)


def _mask_samples(
    picker: _Picker, acc: _Acc, xs: Sequence[Any], labels: _Labels, rows: np.ndarray
) -> tuple[MaskSample, ...]:
    """The chosen samples, their labels and inputs read back from the data (one row each)."""
    s = picker.stride
    which = _image_input(xs, picker.spatial)
    out = []
    for pos, why, pred, lost, fg in picker.chosen():
        row = int(rows[pos])
        yi, cb = labels.rows(slice(row, row + 1))
        image = None
        if which is not None:
            v = np.asarray(xs[which][row : row + 1])[0]
            image = _rgb(v[::s, ::s])
        counted = int(acc.counted[pos])
        out.append(
            MaskSample(
                row=row,
                why=why,
                true=yi[0][::s, ::s].astype(picker.dtype),
                pred=pred,
                void=~cb[0][::s, ::s],
                image=image,
                stride=s,
                foreground=fg,
                lost=lost,
                accuracy=float(acc.hit_k[pos].sum() / counted) if counted else None,
            )
        )
    return tuple(out)


# ------------------------------------------------------------------ the streaming pass


PER_SAMPLE = ("counted", "true_k", "pred_k", "hit_k", "adj_pred_k", "adj_hit_k", "sample_hist")


class _Acc:
    """What the pass accumulates: bounded by N x K, never by positions.

    Mergeable (issue 16, item 5: the Beam run): the sums, histograms and maxima add up, and the
    per-sample arrays of rows start..start+n are kept as blocks that finish() puts end to end
    in global row order. The single run fills one block of every row."""

    def __init__(self, n: int, k: int, one_unit: bool, start: int = 0) -> None:
        self.k = k
        self.start = start  # global id (position in the rows diagnosed) of this block's row 0
        self.confusion = np.zeros(k * k, np.int64)
        self.hist = np.zeros((k, 2, BINS), np.int64)  # class, (negative, positive), bin
        self.max_score = np.zeros(k)
        self.dropped = 0  # counted positions left out for NaN/Inf outputs
        # per sample: counted positions, true / predicted majority-class positions, and per
        # class (true, predicted, hit) counts at the model's rule and after logit adjustment
        self.counted = np.zeros(n, np.int64)
        self.true_k = np.zeros((n, k), np.int64)
        self.pred_k = np.zeros((n, k), np.int64)
        self.hit_k = np.zeros((n, k), np.int64)
        self.adj_pred_k = np.zeros((n, k), np.int64)
        self.adj_hit_k = np.zeros((n, k), np.int64)
        # one sigmoid unit: per-sample histograms of P(class 1), negatives and positives
        self.sample_hist = np.zeros((n, 2, BINS), np.int64) if one_unit else None
        self.blocks: list[tuple[int, tuple[Any, ...]]] = []  # merged in, not yet joined
        self.inputs: list[Any] = []  # rowstate.Moments per model input
        self.kept: list[tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]] = []
        # ^ (row ids, inputs, class indices, counted) of the rows the experiments re-run

    def add(
        self,
        p: np.ndarray,
        yb: np.ndarray,
        cb: np.ndarray,
        log_prior: np.ndarray,
        at: int,
        majority: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fold in one batch: probabilities p (b, positions, K), class indices yb and counted
        cb (b, positions), for this block's rows at..at+b. Returns the batch's predicted
        classes (b, positions) and, given the majority class, each sample's foreground
        positions predicted as the majority."""
        k = self.k
        kk = np.arange(k)
        b = p.shape[0]
        start, stop = at, at + b
        finite = np.isfinite(p).all(axis=-1)
        if not finite.all():
            self.dropped += int((cb & ~finite).sum())
            cb = cb & finite
        # the model's rule over the whole batch: (b, positions), kept for the picker's masks
        pred_all = (
            (p[..., 1] > 0.5).astype(np.int64)
            if k == 2 and self.sample_hist is not None
            else np.argmax(p, axis=-1)
        )
        if cb.all():  # views, no copy of the batch's outputs
            s_of = np.repeat(np.arange(b), cb.shape[1])
            pb, yb, predb = p.reshape(-1, k), yb.reshape(-1), pred_all.reshape(-1)
        else:  # (M, K) counted positions of this batch
            s_of = np.broadcast_to(np.arange(b)[:, None], cb.shape)[cb]
            pb, yb, predb = p[cb], yb[cb], pred_all[cb]
        lost = np.zeros(b, np.int64) if majority is not None else None
        for c0 in range(0, len(yb), CHUNK // k):  # bounded temporaries: CHUNK elements
            pc, yc, g = (
                pb[c0 : c0 + CHUNK // k],
                yb[c0 : c0 + CHUNK // k],
                s_of[c0 : c0 + CHUNK // k],
            )
            pred = predb[c0 : c0 + CHUNK // k]
            if lost is not None:  # foreground predicted as majority
                lost += np.bincount(g[(yc != majority) & (pred == majority)], minlength=b)
            adj = np.argmax(np.log(np.maximum(pc, 1e-12)) - log_prior, axis=1)
            self.confusion += np.bincount(yc * k + pred, minlength=k * k)
            bins = np.minimum((pc * BINS).astype(np.int32), BINS - 1)
            key = ((kk[None, :] * 2 + (yc[:, None] == kk[None, :])) * BINS + bins).ravel()
            self.hist += np.bincount(key, minlength=k * 2 * BINS).reshape(k, 2, BINS)
            del key
            self.max_score = np.maximum(self.max_score, pc.max(axis=0))
            self.counted[start:stop] += np.bincount(g, minlength=b)
            for target, cls, w in (
                (self.true_k, yc, None),
                (self.pred_k, pred, None),
                (self.hit_k, yc, pred == yc),
                (self.adj_pred_k, adj, None),
                (self.adj_hit_k, yc, adj == yc),
            ):
                keys = g * k + cls
                if w is not None:
                    keys = keys[w]
                target[start:stop] += np.bincount(keys, minlength=b * k).reshape(b, k)
            if self.sample_hist is not None:
                key1 = (g * 2 + yc) * BINS + bins[:, 1]
                self.sample_hist[start:stop] += np.bincount(key1, minlength=b * 2 * BINS).reshape(
                    b, 2, BINS
                )
        return pred_all, lost

    def merge(self, other: _Acc) -> _Acc:
        """Add another accumulator's sums; keep its per-sample blocks (joined by finish)."""
        from kerasdoctor.rowstate import merge_moments

        self.confusion += other.confusion
        self.hist += other.hist
        self.max_score = np.maximum(self.max_score, other.max_score)
        self.dropped += other.dropped
        if other.counted.shape[0]:
            self.blocks.append((other.start, tuple(getattr(other, a) for a in PER_SAMPLE)))
        self.blocks += other.blocks
        self.inputs = merge_moments(self.inputs, other.inputs)
        self.kept += other.kept
        other.blocks, other.kept = [], []
        return self

    def finish(self, n: int) -> _Acc:
        """Join the per-sample blocks in global row order; they must cover rows 0..n-1."""
        mine = [(self.start, tuple(getattr(self, a) for a in PER_SAMPLE))]
        blocks = sorted((b for b in [*mine, *self.blocks] if b[1][0].shape[0]), key=lambda b: b[0])
        at = 0
        for start, arrays in blocks:
            if start != at:
                raise RuntimeError(
                    f"the merged state lacks rows {at}..{start - 1}"
                    if start > at
                    else f"the merged state has row {start} twice"
                )
            at += int(arrays[0].shape[0])
        if at != n:
            raise RuntimeError(f"the merged state holds {at} rows, not {n}")
        if len(blocks) != 1 or blocks[0][0] != 0:
            for i, name in enumerate(PER_SAMPLE):
                parts = [arrays[i] for _, arrays in blocks]
                setattr(self, name, None if parts[0] is None else np.concatenate(parts))
        self.start, self.blocks = 0, []
        return self


def _probs(raw: np.ndarray, head: str, k_out: int) -> np.ndarray:
    p: np.ndarray = np.asarray(raw, dtype=np.float32)  # no copy of a float32 output
    if head not in ("sigmoid", "softmax") and (p.min() < 0 or p.max() > 1):
        if k_out == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(p, -80, 80)))
        else:
            p = np.exp(p - p.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
    if k_out == 1:
        p = np.concatenate([1 - p, p], axis=-1)
    return p


def pass_batch(
    xs: Sequence[Any], label_shape: Sequence[int], shapes: _Shapes, batch_size: int | None
) -> int:
    """Rows per batch: the probe's default, bounded so that the output (positions x K
    float32 per sample) stays under OUT_BYTES."""
    from kerasdoctor.probe import default_batch_size

    templates = [np.empty((0, *a.shape[1:]), a.dtype) for a in xs]
    batch = int(batch_size or default_batch_size(templates))
    if not batch_size:
        per = int(np.prod(label_shape[1:], dtype=np.int64)) * max(shapes.k_out, 2) * 4
        batch = max(1, min(batch, OUT_BYTES // max(per, 1)))
    return batch


def _predict_probs(
    lm: Any, predictor: Any, head: str, part: list[Any], label_shape: Sequence[int], shapes: _Shapes
) -> np.ndarray:
    """One batch's class probabilities (b, positions, K)."""
    from kerasdoctor.multilabel import run_batch

    raw = run_batch(lm, predictor, part)
    if tuple(raw.shape[1:-1]) != tuple(label_shape[1:]) or raw.shape[-1] != shapes.k_out:
        raise InputError(
            f"MODEL: {lm.path} outputs {_fmt(raw.shape)} but the labels are {_fmt(label_shape)}"
        )
    return _probs(raw, head, shapes.k_out).reshape(raw.shape[0], -1, shapes.k)


def _pass(
    lm: Any,
    facts: Any,
    xs: list[Any],
    labels: _Labels,
    shapes: _Shapes,
    prior: np.ndarray,
    rows: np.ndarray,
    opts: Any,
    notes: list[str],
    picker: _Picker | None = None,
) -> _Acc:
    """One pass over the batches of `rows`: labels and outputs are read a batch at a time and
    only the accumulators (and the picker's few masks) outlive it."""
    from kerasdoctor.probe import Predictor
    from kerasdoctor.rowstate import moments_of

    k = shapes.k
    predictor = Predictor(lm, facts, taps=False)
    batch = pass_batch(xs, labels.shape, shapes, opts.batch_size)
    acc = _Acc(len(rows), k, shapes.k_out == 1)
    acc.inputs = moments_of(xs)
    log_prior = np.log(np.maximum(prior, 1e-12)).astype(np.float32)
    n = len(rows)
    contiguous = bool(n) and int(rows[0]) == 0 and bool(np.all(np.diff(rows) == 1))
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sel = rows[start:stop]
        part = [a[sel] for a in xs]
        for m, a in zip(acc.inputs, part):
            m.update(a)
        p = _predict_probs(lm, predictor, facts.head, part, labels.shape, shapes)
        yb, cb = labels.rows(slice(start, stop) if contiguous else sel)
        yb, cb = yb.reshape(len(sel), -1), cb.reshape(len(sel), -1)
        pred_all, lost = acc.add(
            p, yb, cb, log_prior, start, picker.majority if picker is not None else None
        )
        del p
        if lost is not None and picker is not None:
            fg = acc.counted[start:stop] - acc.true_k[start:stop, picker.majority]
            picker.offer(start, lost, fg, pred_all)
        del pred_all
        if opts.progress is not None:
            opts.progress(stop, n)
    return acc


def _model_causes(
    lm: Any,
    facts: Any,
    xs: list[Any],
    labels: _Labels,
    rows: np.ndarray,
    shapes: _Shapes,
    findings: Sequence[Finding],
    opts: Any,
    path: str | None = None,
) -> tuple[list[Finding], list[ExperimentResult | ProbeResult]]:
    """Input preparation, BatchNorm statistics, a one-unit softmax: the model-level causes,
    tried on a bounded sample of the samples and scored over positions (task_causes); with
    DATA's `path`, a repairable finding offers `fix --repair` first."""
    from kerasdoctor.experiments import Task
    from kerasdoctor.task_causes import DenseTask, found_causes, sample_rows

    def sample() -> tuple[list[np.ndarray], Task]:
        per_row = int(np.prod(labels.shape[1:], dtype=np.int64)) * max(shapes.k_out, 2)
        pick = sample_rows(len(rows), per_row, opts.seed, dense=True)
        task = DenseTask(*labels.rows(rows[pick]), shapes.k, shapes.k_out, facts.head)
        return [np.asarray(a[rows[pick]]) for a in xs], task

    return found_causes(lm, facts, findings, opts, sample, dense=True, path=path)


# ------------------------------------------------------------------ statistics


def hist_auc(neg: np.ndarray, pos: np.ndarray) -> float | None:
    """ROC AUC from 256-bin histograms of the scores (ties within a bin count half)."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.concatenate([[0], np.cumsum(neg)[:-1]])
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def youden_bin(neg: np.ndarray, pos: np.ndarray) -> int:
    """The bin b maximising TPR - FPR of the rule `score >= b / BINS`."""
    tpr = np.cumsum(pos[::-1])[::-1] / max(pos.sum(), 1)
    fpr = np.cumsum(neg[::-1])[::-1] / max(neg.sum(), 1)
    return int(np.argmax(tpr - fpr))


def split_samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _scores(
    true_k: np.ndarray, pred_k: np.ndarray, hit_k: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(balanced accuracy, mean IoU) from summed counts; leading axes are replicates."""
    with np.errstate(invalid="ignore", divide="ignore"):
        present = true_k > 0
        recall = np.where(present, hit_k / np.maximum(true_k, 1), np.nan)
        union = true_k + pred_k - hit_k
        iou = np.where(union > 0, hit_k / np.maximum(union, 1), np.nan)
        return np.nanmean(recall, axis=-1), np.nanmean(iou, axis=-1)


def paired_gain(
    before: tuple[np.ndarray, ...], after: tuple[np.ndarray, ...], seed: int
) -> tuple[float, float, float, float, float, float]:
    """(ba before, ba after, miou before, miou after, gain in ba, its bootstrap SE) over the
    samples given as per-sample (true, predicted, hit) class counts."""
    b_ba, b_iou = _scores(*(a.sum(axis=0) for a in before))
    a_ba, a_iou = _scores(*(a.sum(axis=0) for a in after))
    n = before[0].shape[0]
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)
    bb, _ = _scores(*(w @ a for a in before))
    ab, _ = _scores(*(w @ a for a in after))
    se = float(np.nanstd(ab - bb))
    return (float(b_ba), float(a_ba), float(b_iou), float(a_iou), float(a_ba - b_ba), se)


# ------------------------------------------------------------------ the diagnosis


def label_counts(
    yi: np.ndarray, cb: np.ndarray, in_fit: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counted positions per class of some rows: (all of them, those of the fit half)."""
    return (np.bincount(yi[cb], minlength=k), np.bincount(yi[in_fit][cb[in_fit]], minlength=k))


def position_prior(fit_counts: np.ndarray) -> np.ndarray:
    prior = fit_counts.astype(np.float64) + 1.0
    prior /= prior.sum()
    return prior


def _diagnose(
    lm: Any,
    path: str,
    xs: list[Any],
    labels: _Labels,
    shapes: _Shapes,
    names: list[str],
    indices: np.ndarray | None,
    opts: Any,
    samples: bool = True,
) -> Report:
    from kerasdoctor.model_facts import read_facts

    facts = read_facts(lm)
    k = shapes.k
    n_all = labels.shape[0]
    rows = np.arange(n_all) if indices is None else indices
    n = len(rows)
    fit, test = split_samples(n, opts.seed)
    # the position prior of the fit half and the majority class of all the counted labels
    # (labels only: known before predicting), a few rows at a time
    in_fit = np.zeros(n, bool)
    in_fit[fit] = True
    fit_counts, all_counts = np.zeros(k, np.int64), np.zeros(k, np.int64)
    for span in _row_spans(labels.idx, n):
        yi, cb = labels.rows(rows[span])
        got_all, got_fit = label_counts(yi, cb, in_fit[span], k)
        all_counts += got_all
        fit_counts += got_fit
    prior = position_prior(fit_counts)
    spatial = labels.shape[1:]
    picker = (
        _Picker(n, int(np.argmax(all_counts)), opts.seed, spatial, k)
        if samples and len(spatial) == 2
        else None
    )  # (N, H, W): images, not tokens
    acc = _pass(lm, facts, xs, labels, shapes, prior, rows, opts, [], picker)
    drawn = _mask_samples(picker, acc, xs, labels, rows) if picker is not None else ()
    return dense_report(
        lm,
        facts,
        path,
        acc,
        xs,
        labels,
        rows,
        shapes,
        names,
        prior,
        opts,
        sampled_from=None if indices is None else int(n_all),
        samples=drawn,
    )


def dense_report(
    lm: Any,
    facts: Any,
    path: str,
    acc: _Acc,
    xs: Sequence[Any],
    labels: _Labels,
    rows: np.ndarray,
    shapes: _Shapes,
    names: list[str],
    prior: np.ndarray,
    opts: Any,
    *,
    sampled_from: int | None = None,
    samples: tuple[MaskSample, ...] = (),
    shards: int | None = None,
) -> DenseReport:
    """The report from the pass's accumulator: the single run and the sharded (Beam) run
    both end here. `xs` and `labels` are indexed by the ids in `rows`; the experiments read
    only the bounded sample of them (task_causes.sample_rows)."""
    from kerasdoctor import __version__
    from kerasdoctor.sections import DataSection, int_tuple
    from kerasdoctor.task_report import assemble, model_section

    k = shapes.k
    n = len(rows)
    fit, test = split_samples(n, opts.seed)
    notes = list(lm.notes)
    if acc.dropped:
        notes.append(f"{acc.dropped} positions with NaN/Inf outputs were left out")
    spatial = labels.shape[1:]
    metrics = dense_metrics(acc, names, shapes)
    findings = _findings(
        acc, metrics, names, shapes, prior, fit, test, facts, opts, paths=(lm.path, path)
    )
    causes, trials = _model_causes(lm, facts, list(xs), labels, rows, shapes, findings, opts, path)
    done = assemble(DENSE, findings + causes, trials, opts)
    data_info = DataSection(
        path=path,
        n_samples=n,
        n_classes=k,
        class_names=tuple(names),
        label_counts=int_tuple(acc.true_k.sum(axis=0)),
        label_encoding="dense one-hot" if shapes.onehot else "dense index",
        label_shape=int_tuple(spatial),
        positions=int(acc.counted.sum()),
        positions_excluded=int(n * int(np.prod(spatial, dtype=np.int64)) - acc.counted.sum()),
        ignore_label=getattr(opts, "ignore_label", None),
        inputs=tuple(m.info(spec.name, n) for spec, m in zip(lm.inputs, acc.inputs)),
        sampled_from=None if sampled_from is None else int(sampled_from),
        seed=None if sampled_from is None else opts.seed,
        shards=shards,
    )
    return DenseReport(
        model=model_section(lm, facts, notes, dense=True),
        data=data_info,
        metrics=metrics,
        findings=done.findings,
        chain=done.chain,
        ignored=dict(opts.ignore),
        version=__version__,
        experiments=done.experiments,
        outcomes=done.outcomes,
        fail_on=opts.fail_on,
        samples=samples,
    )


def dense_metrics(acc: _Acc, names: Sequence[str], shapes: _Shapes) -> DenseMetrics:
    from kerasdoctor.sections import DenseClassMetrics, DenseMetrics, DenseSampleMetrics

    k = acc.k
    cm = acc.confusion.reshape(k, k)
    total = int(cm.sum())
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    majority = int(np.argmax(support))
    per = []
    for j in range(k):
        union = support[j] + predicted[j] - tp[j]
        auc = hist_auc(acc.hist[j, 0], acc.hist[j, 1])
        per.append(
            DenseClassMetrics(
                index=j,
                name=names[j],
                support=int(support[j]),
                predicted=int(predicted[j]),
                share=float(support[j] / total) if total else 0.0,
                predicted_share=float(predicted[j] / total) if total else 0.0,
                samples=int((acc.true_k[:, j] > 0).sum()),
                recall=float(tp[j] / support[j]) if support[j] else None,
                precision=float(tp[j] / predicted[j]) if predicted[j] else None,
                iou=float(tp[j] / union) if union else None,
                auc=auc,
                max_score=float(acc.max_score[j]),
            )
        )
    recalls = [float(tp[j] / support[j]) for j in range(k) if support[j]]
    ious = [float(r.iou) for r in per if r.iou is not None]
    has = acc.counted > 0
    fg_true = (acc.true_k.sum(axis=1) - acc.true_k[:, majority]) > 0
    fg_pred = (acc.pred_k.sum(axis=1) - acc.pred_k[:, majority]) > 0
    return DenseMetrics(
        decision_rule="score > 0.5" if shapes.k_out == 1 else "argmax",
        positions=total,
        accuracy=float(tp.sum() / total) if total else None,  # over positions
        majority_baseline=float(support[majority] / total) if total else None,
        balanced_accuracy=float(np.mean(recalls)) if recalls else None,  # mean recall
        mean_iou=float(np.mean(ious)) if ious else None,
        majority_class=majority,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in cm),
        per_class=tuple(per),
        per_sample=DenseSampleMetrics(
            samples=int(has.sum()),
            no_predicted_foreground=float((~fg_pred[has]).mean()) if has.any() else None,
            no_true_foreground=float((~fg_true[has]).mean()) if has.any() else None,
        ),
    )


def _names(rows: Sequence[ClassMetrics]) -> str:
    return ", ".join(str(r.name) for r in rows)


def _collapse(acc: _Acc, metrics: DenseMetrics) -> Finding | None:
    """Positions of the other classes lost to one class: the majority (all background), or
    any other (a model fed unprepared inputs that paints every pixel 'disc', a one-unit
    softmax that calls everything foreground). For each class c the share of the positions
    truly of another class that c takes, sum(pred_c - true_c) / sum(counted - true_c), with a
    one-sided 99% bound from the ratio estimator's standard error over samples (positions
    cluster within a sample); the class with the largest lower bound is judged."""
    has = acc.counted > 0
    n = int(has.sum())
    if n < 2:
        return None
    best: tuple[float, float, int] | None = None
    for c in range(acc.k):
        other = (acc.counted - acc.true_k[:, c])[has].astype(np.float64)
        d = (acc.pred_k[:, c] - acc.true_k[:, c])[has].astype(np.float64)
        if other.sum() == 0:
            continue
        excess = float(d.sum() / other.sum())
        z = d - excess * other
        se = float(math.sqrt(n / (n - 1) * (z * z).sum()) / other.sum())
        lower = excess - Z_ONE_SIDED * se
        if best is None or lower > best[1]:
            best = (excess, lower, c)
    if best is None:
        return None
    excess, lower, c = best
    if excess < COLLAPSE_EXCESS or lower <= 0:
        return None
    m = metrics.majority_class
    per = metrics.per_class[c]
    ps = metrics.per_sample
    if c == m:
        lost = (
            f"{excess:.1%} of the foreground positions (99% lower bound {lower:.1%}) are lost to it"
        )
        what = f"the majority class {per.name}"
    else:
        lost = (
            f"{excess:.1%} of the positions of the other classes (99% lower bound "
            f"{lower:.1%}) are lost to it, the majority class {metrics.per_class[m].name}"
            " included"
        )
        what = f"{per.name}, which is not the majority class,"
    return Finding(
        "prediction-collapse",
        Kind.SYMPTOM,
        Severity.ERROR if excess >= 0.5 else Severity.WARNING,
        f"{per.predicted_share:.1%} of the positions are predicted {per.name}; {per.share:.1%} are",
        f"The model predicts {what} on {per.predicted_share:.1%} "
        f"of the {metrics.positions} counted positions against a label share of "
        f"{per.share:.1%}: {lost}. {ps.no_predicted_foreground:.1%} of the samples are "
        f"predicted with no foreground at all ({ps.no_true_foreground:.1%} truly have none).",
        {
            "class": per.name,
            "predicted_share": per.predicted_share,
            "label_share": per.share,
            "foreground_lost" if c == m else "others_lost": excess,
            "foreground_lost_lower" if c == m else "others_lost_lower": lower,
            "no_predicted_foreground": ps.no_predicted_foreground,
            "no_true_foreground": ps.no_true_foreground,
            "positions": metrics.positions,
            "samples": n,
        },
    )


def _chance(acc: _Acc, metrics: DenseMetrics) -> Finding | None:
    """chance-level over positions. Under a label-blind guesser class k's recall has mean q_k
    (its prediction share); its variance is taken over the samples that hold class k, not
    its positions (positions inside a sample move together), which only widens the bound."""
    from kerasdoctor.task_causes import chance_level

    per = metrics.per_class
    samples = np.array([r.samples for r in per], np.float64)
    present = np.array([r.support > 0 for r in per]) & (samples > 0)
    kp = int(present.sum())
    if kp < 2 or int((acc.counted > 0).sum()) < MIN_SAMPLES:
        return None
    q = np.array([r.predicted_share for r in per])[present]
    var = float(np.sum(q * (1 - q) / samples[present]) / kp**2)
    return chance_level(
        metrics.balanced_accuracy,
        1.0 / kp,
        var,
        "samples",
        "balanced accuracy over positions",
        {"n_classes_present": kp, "prediction_shares": [r.predicted_share for r in per]},
    )


def _findings(
    acc: _Acc,
    metrics: DenseMetrics,
    names: list[str],
    shapes: _Shapes,
    prior: np.ndarray,
    fit: np.ndarray,
    test: np.ndarray,
    facts: Any,
    opts: Any,
    paths: tuple[str, str] = ("MODEL", "DATA"),
) -> list[Finding]:
    out: list[Finding] = []
    per = metrics.per_class
    k = shapes.k
    m = metrics.majority_class
    collapse = _collapse(acc, metrics)
    if collapse is not None:
        out.append(collapse)
    missing = [
        r
        for r in per
        if r.index != m
        and r.samples >= MIN_SAMPLES
        and r.support >= MIN_POSITIONS
        and r.predicted == 0
    ]
    if missing:
        out.append(
            Finding(
                "missing-classes",
                Kind.SYMPTOM,
                Severity.ERROR,
                f"{len(missing)} of {k} classes are never predicted",
                f"No position is predicted {_names(missing)}, although "
                + ", ".join(
                    f"{r.name} covers {r.support} positions in {r.samples} "
                    f"samples (max score {r.max_score:.2f})"
                    for r in missing
                )
                + ".",
                {
                    "classes": [r.name for r in missing],
                    "support": [r.support for r in missing],
                    "samples": [r.samples for r in missing],
                    "max_score": [r.max_score for r in missing],
                },
            )
        )
    chance = _chance(acc, metrics)
    if chance is not None:
        out.append(chance)
    gates = dict(getattr(opts, "gates", {}) or {})
    failed = []
    if "min_recall" in gates:
        low = [r for r in per if r.recall is not None and r.recall < gates["min_recall"]]
        if low:
            failed.append(
                f"recall below {gates['min_recall']:g} for "
                + ", ".join(f"{r.name} ({r.recall:.2f})" for r in low)
            )
    ba = metrics.balanced_accuracy
    if "min_balanced_accuracy" in gates and ba is not None and ba < gates["min_balanced_accuracy"]:
        failed.append(
            f"balanced accuracy over positions {ba:.3f} < {gates['min_balanced_accuracy']:g}"
        )
    if failed:
        out.append(
            Finding(
                "quality-gate",
                Kind.SYMPTOM,
                Severity.ERROR,
                "a quality gate is not met",
                "; ".join(failed) + ".",
                {"gates": gates, "balanced_accuracy": ba},
            )
        )
    starved = [
        r
        for r in per
        if r.index != m
        and r.support >= MIN_POSITIONS
        and r.samples >= MIN_SAMPLES
        and r.predicted_share <= STARVED_RATE * r.share
    ]
    if not starved:
        return out
    symptom = collapse is not None or bool(missing)
    if shapes.k_out == 1:
        thr = _threshold(acc, metrics, names, fit, test, symptom, opts, paths=paths)
        out.append(thr)
        if starved[0].share < RARE_SHARE:
            r = starved[0]
            out.append(
                Finding(
                    "class-imbalance",
                    Kind.CAUSE,
                    Severity.INFO,
                    f"{r.name} covers {r.share:.1%} of the positions",
                    f"{r.name} is {r.share:.1%} of the counted positions: binary "
                    "cross-entropy then keeps its scores below 0.5 early in training. The measured "
                    "cures are the threshold above, or a per-pixel sample_weight (code below).",
                    {"classes": [r.name], "share": [r.share]},
                    (_weight_fix(k, shapes),),
                )
            )
        return out
    out.append(
        _imbalance(
            acc, metrics, names, shapes, prior, fit, test, starved, symptom, opts, paths=paths
        )
    )
    return out


def _experiment_counts(
    acc: _Acc, rows: np.ndarray, adjusted: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if adjusted:
        return acc.true_k[rows], acc.adj_pred_k[rows], acc.adj_hit_k[rows]
    return acc.true_k[rows], acc.pred_k[rows], acc.hit_k[rows]


def _imbalance(
    acc: _Acc,
    metrics: DenseMetrics,
    names: list[str],
    shapes: _Shapes,
    prior: np.ndarray,
    fit: np.ndarray,
    test: np.ndarray,
    starved: list[DenseClassMetrics],
    symptom: bool,
    opts: Any,
    paths: tuple[str, str] = ("MODEL", "DATA"),
) -> Finding:
    from kerasdoctor.multilabel import fix_commands

    k = shapes.k
    m = metrics.majority_class
    per = metrics.per_class
    before = _experiment_counts(acc, test, False)
    after = _experiment_counts(acc, test, True)
    # `restores` (balanced accuracy up beyond noise) confirms the cause and sets the severity;
    # `validated` (mIoU up beyond noise too) is the bar `fix --repair` writes a model by
    verdict = cure_verdict(before, after, opts.seed)
    b_ba, a_ba = verdict["balanced_accuracy_before"], verdict["balanced_accuracy_after"]
    b_iou, a_iou = verdict["mean_iou_before"], verdict["mean_iou_after"]
    gain, noise, restores = verdict["gain"], verdict["noise"], verdict["restores"]
    validated = verdict["validated"]
    severity = (
        Severity.ERROR if restores and symptom else Severity.WARNING if restores else Severity.INFO
    )
    experiment = {
        "what": f"logit adjustment: log of the class prior over the positions of one seeded "
        f"half of the samples ({len(fit)}) subtracted from the log-probabilities, "
        f"argmax, scored on the other half ({len(test)} samples)",
        "balanced_accuracy_before": b_ba,
        "balanced_accuracy_after": a_ba,
        "mean_iou_before": b_iou,
        "mean_iou_after": a_iou,
        "rows": int(len(test)),
        "positions": int(before[0].sum()),
        "gain": gain,
        "noise": noise,
        "restores": restores,
        "mean_iou_gain": verdict["mean_iou_gain"],
        "mean_iou_noise": verdict["mean_iou_noise"],
        "validated": validated,
        "prior": [float(v) for v in prior],
    }
    share = per[m].share
    prior_txt = "[" + ", ".join(f"{v:.4f}" for v in prior) + "]"
    iou_noise = verdict["mean_iou_noise"]
    detail = (
        f"{per[m].name} holds {share:.1%} of the counted positions; "
        f"{_names(starved)} ("
        + ", ".join(f"{r.share:.1%}" for r in starved)
        + " of the positions) are predicted on "
        + ", ".join(f"{r.predicted_share:.2%}" for r in starved)
        + ", although "
        "their scores rank them (ROC AUC "
        + ", ".join("n/a" if r.auc is None else f"{r.auc:.2f}" for r in starved)
        + "). "
        f"Dividing the scores by the position prior (logit adjustment, prior from one half of "
        f"the samples) takes the balanced accuracy over positions on the other half from "
        f"{b_ba:.3f} to {a_ba:.3f} "
        + _versus_noise(restores, gain, noise)
        + f" and the mean IoU from {b_iou:.3f} to {a_iou:.3f} (±{iou_noise:.3f})"
        + (
            "; both rise beyond noise, so the prior can be moved into the output bias"
            if validated
            else ": the adjustment buys recall of the rare classes with positions painted wrongly "
            "(mIoU does not rise beyond noise), so it is no repair to ship"
            if restores
            else ""
        )
        + (
            ". The network has learnt the prior of the positions; train with per-position "
            "class weights (or longer)."
            if restores
            else ". Correcting for the prior does not help: the rare classes are not what this "
            "model gets wrong first; see the causes above."
        )
    )
    code_adjust = (
        "import numpy as np\n"
        f"PRIOR = np.array({prior_txt})  # class shares over the positions (training labels)\n"
        "probs = model.predict(x)  # (N, ..., K)\n"
        "pred = np.argmax(np.log(probs + 1e-12) - np.log(PRIOR), axis=-1)"
    )
    code_losses = (
        "import keras\n"
        "import numpy as np\n"
        f"PRIOR = np.array({prior_txt})  # class shares over the training positions\n"
        "# the head, when you build it: its bias starts at the log prior (RetinaNet), so the "
        "first\n"
        "# steps are not spent pushing the rare classes down from 1/K\n"
        f'head = keras.layers.Conv2D({k}, 1, activation="softmax",  # a tagger: '
        f"keras.layers.Dense({k}, ...)\n"
        "                           bias_initializer=keras.initializers.Constant(np.log(PRIOR)))\n"
        "outputs = head(features)\n"
        f"y_onehot = keras.utils.to_categorical(y_train, {k})  # these losses take one-hot\n"
        'model.compile(optimizer="adam", loss=keras.losses.CategoricalFocalCrossentropy())\n'
        "# or: loss=keras.losses.Dice()\n"
        "model.fit(x_train, y_onehot, epochs=20)"
    )
    fixes: list[Fix] = []
    if validated:  # only a cure validated on the held-out half is offered as a repair
        fixes += fix_commands(
            paths[0], paths[1], opts, "class-imbalance", repair=True, threshold=False
        )
    fixes += [
        _weight_fix(k, shapes),
        Fix(
            "Or, when you (re)build and train the head, a loss less driven by the majority "
            "class with the output bias initialised at the position prior (for a head about "
            "to be trained: a trained head's bias has already moved; measured on the U-Net "
            "fixture, the loss alone was not enough in a short training, class weights were).",
            code=code_losses,
        ),
        Fix(
            "Meanwhile, adjust the predictions by the position prior (the experiment above)"
            + (
                "."
                if validated
                else "; it raises recall but not mIoU here, so check it on your metric."
            ),
            code=code_adjust,
        ),
    ]
    return Finding(
        "class-imbalance",
        Kind.CAUSE,
        severity,
        f"the position prior ({per[m].name} {share:.1%}) drowns {len(starved)} of {k} classes",
        detail,
        {
            "majority_class": per[m].name,
            "majority_share": share,
            "classes": [r.name for r in starved],
            "share": [r.share for r in starved],
            "predicted_share": [r.predicted_share for r in starved],
            "auc": [r.auc for r in starved],
            "experiment": experiment,
        },
        tuple(fixes) if restores else (),
    )  # remedies only under the cause they cure


def _versus_noise(restores: bool, gain: float, noise: float) -> str:
    """How a before -> after change compares with its noise, in words that match its sign."""
    if restores:
        return f"(beyond noise, ±{noise:.3f})"
    if gain < -noise:
        return f"(worse, beyond noise, ±{noise:.3f})"
    return f"(within noise, ±{noise:.3f})"


def _weight_fix(k: int, shapes: _Shapes) -> Fix:
    code = (
        "import numpy as np\n"
        "# y_train: (N, H, W) (or (N, T)) class indices; one weight per position\n"
        f"counts = np.bincount(y_train.ravel(), minlength={k})\n"
        f"class_weight = counts.sum() / ({k} * np.maximum(counts, 1))  # 'balanced'\n"
        'sample_weight = class_weight[y_train].astype("float32")  # same shape as y_train\n'
        "# sample_weight *= mask  # padding / void positions: weight 0\n"
        "model.fit(x_train, y_train, sample_weight=sample_weight, epochs=10)"
    )
    return Fix(
        "Retrain with per-position class weights: Keras's class_weight does not take "
        "dense targets, a sample_weight array of the labels' shape does.",
        code=code,
    )


def cure_verdict(
    before: tuple[np.ndarray, ...], after: tuple[np.ndarray, ...], seed: int
) -> dict[str, Any]:
    """Whether a cure measured on held-out samples (per-sample (true, predicted, hit) class
    counts before and after) is validated: the rule by which `fix --repair` writes a dense
    model and the findings offer that command (issue 16).

    Both figures must rise beyond their noise (two standard errors of the paired difference
    over a bootstrap of the samples, the same resamples for both): balanced accuracy over
    positions (and by MIN_GAIN at least), AND mean IoU. Balanced accuracy is mean recall: a
    shift toward the rare classes always buys some, even when it paints them on far more
    wrong positions than it recovers; IoU = TP / (TP + FP + FN) counts those positions, and
    mIoU is what a segmenter or a tagger is judged by, so a repair has to show it improves
    it, not merely that it may not have harmed it. Measured: logit adjustment on
    dense_unet_collapsed takes balanced accuracy 0.250 -> 0.455 (noise 0.011) but mIoU
    0.239 -> 0.229 (noise 0.011): the disc and square classes stay near zero recall and bar
    is painted at 4.6% precision, which no user would ship as a repaired model; on
    tag_collapsed mIoU rises 0.306 -> 0.325 (noise 0.009), on dense_binary_collapsed's
    threshold 0.478 -> 0.590 (noise 0.051)."""
    b_ba, a_ba, b_iou, a_iou, gain, se = paired_gain(before, after, seed)
    n = before[0].shape[0]
    rng = np.random.default_rng(seed)  # the resamples of paired_gain (same seed, same draws)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)
    _, bi = _scores(*(w @ a for a in before))
    _, ai = _scores(*(w @ a for a in after))
    iou_noise = 2 * float(np.nanstd(ai - bi))
    noise = 2 * se
    restores = gain > max(noise, MIN_GAIN)
    iou_gain = a_iou - b_iou
    return {
        "balanced_accuracy_before": b_ba,
        "balanced_accuracy_after": a_ba,
        "mean_iou_before": b_iou,
        "mean_iou_after": a_iou,
        "gain": gain,
        "noise": noise,
        "restores": restores,
        "mean_iou_gain": iou_gain,
        "mean_iou_noise": iou_noise,
        "validated": bool(restores and iou_gain > iou_noise),
    }


def _threshold(
    acc: _Acc,
    metrics: DenseMetrics,
    names: list[str],
    fit: np.ndarray,
    test: np.ndarray,
    symptom: bool,
    opts: Any,
    paths: tuple[str, str] = ("MODEL", "DATA"),
) -> Finding:
    from kerasdoctor.multilabel import fix_commands

    assert acc.sample_hist is not None
    sample_hist = acc.sample_hist
    per = metrics.per_class
    r = per[1]
    hf = acc.sample_hist[fit].sum(axis=0)
    b = youden_bin(hf[0], hf[1])
    t_half = b / BINS

    def counts(rows: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = sample_hist[rows]  # (n, neg/pos, bins)
        neg_hi, pos_hi = h[:, 0, cut:].sum(axis=1), h[:, 1, cut:].sum(axis=1)
        neg, pos = h[:, 0].sum(axis=1), h[:, 1].sum(axis=1)
        true_k = np.stack([neg, pos], axis=1)
        pred_k = np.stack([neg + pos - neg_hi - pos_hi, neg_hi + pos_hi], axis=1)
        hit_k = np.stack([neg - neg_hi, pos_hi], axis=1)
        return true_k, pred_k, hit_k

    before = _experiment_counts(acc, test, False)
    after = counts(test, b)
    # `restores` (balanced accuracy) sets the severity; `validated` (mIoU up beyond noise
    # too, dense.cure_verdict) is the bar `fix --repair` writes a model by
    verdict = cure_verdict(before, after, opts.seed)
    b_ba, a_ba = verdict["balanced_accuracy_before"], verdict["balanced_accuracy_after"]
    b_iou, a_iou = verdict["mean_iou_before"], verdict["mean_iou_after"]
    gain, noise, restores = verdict["gain"], verdict["noise"], verdict["restores"]
    validated = verdict["validated"]
    hall = acc.sample_hist.sum(axis=0)
    t_all = youden_bin(hall[0], hall[1]) / BINS
    severity = (
        Severity.ERROR if restores and symptom else Severity.WARNING if restores else Severity.INFO
    )
    experiment = {
        "what": f"a threshold on P({r.name}) (Youden J on the histogram ROC) chosen on one "
        f"seeded half of the samples ({len(fit)}), scored on the other half",
        "balanced_accuracy_before": b_ba,
        "balanced_accuracy_after": a_ba,
        "mean_iou_before": b_iou,
        "mean_iou_after": a_iou,
        "rows": int(len(test)),
        "positions": int(before[0].sum()),
        "gain": gain,
        "noise": noise,
        "restores": restores,
        "threshold": t_half,
        "mean_iou_gain": verdict["mean_iou_gain"],
        "mean_iou_noise": verdict["mean_iou_noise"],
        "validated": validated,
    }
    auc = "n/a" if r.auc is None else f"{r.auc:.3f}"
    detail = (
        f"P({r.name}) ranks the positions well (ROC AUC {auc}) but never passes 0.5 where "
        f"it should: {r.name} is predicted on {r.predicted_share:.2%} of the positions "
        f"against {r.share:.1%} (max score {r.max_score:.2f}). A threshold of "
        f"{t_half:.3f} chosen on one half of the samples takes the balanced accuracy over "
        f"positions on the other half from {b_ba:.3f} to {a_ba:.3f} "
        + _versus_noise(restores, gain, noise)
        + f" and the mean IoU from {b_iou:.3f} to {a_iou:.3f} "
        + (
            f"(beyond noise, ±{verdict['mean_iou_noise']:.3f})."
            if validated
            else f"(±{verdict['mean_iou_noise']:.3f}: not a gain beyond noise)."
        )
    )
    code = (
        f"THRESHOLD = {t_all:.4f}  # Youden J on these positions; choose it on validation data\n"
        "probs = model.predict(x)[..., 0]  # (N, H, W)\n"
        "mask = probs > THRESHOLD"
    )
    p = min(max(float(r.share), 1e-6), 1 - 1e-6)
    code_retrain = (
        "import keras\n"
        "import numpy as np\n"
        f"P = {p:.4f}  # share of {r.name} over the training positions\n"
        "# the head, when you build it: its bias starts at the prior's log-odds (RetinaNet), so "
        "the\n"
        "# first steps are not spent pushing every position to background\n"
        'head = keras.layers.Conv2D(1, 1, activation="sigmoid",  # a tagger: Dense(1, ...)\n'
        "                           bias_initializer=keras.initializers.Constant(np.log(P / (1 - "
        "P))))\n"
        "outputs = head(features)\n"
        'model.compile(optimizer="adam", loss=keras.losses.BinaryFocalCrossentropy())\n'
        "model.fit(x_train, y_train[..., None], epochs=20)  # y_train: (N, H, W) 0/1"
    )
    fixes: list[Fix] = []
    commands = fix_commands(
        paths[0], paths[1], opts, "decision-threshold", repair=validated, threshold=True
    )
    fixes += [f for f in commands if f.command and "--repair" in f.command]  # validated only
    fixes.append(
        Fix("Threshold the mask below 0.5 (or retrain with per-pixel weights).", code=code)
    )
    fixes += [f for f in commands if f.command and "--threshold" in f.command]
    fixes.append(
        Fix(
            "When you (re)build and train the head: a focal loss, with the output "
            "bias initialised at the prior of the positions (for a head about to be "
            "trained; a trained head's bias has already moved).",
            code=code_retrain,
        )
    )
    return Finding(
        "decision-threshold",
        Kind.CAUSE,
        severity,
        f"the 0.5 cut drops {r.name}, which the scores rank well",
        detail,
        {
            "class": r.name,
            "auc": r.auc,
            "share": r.share,
            "predicted_share": r.predicted_share,
            "max_score": r.max_score,
            "threshold": t_all,
            "experiment": experiment,
        },
        tuple(fixes),
    )
