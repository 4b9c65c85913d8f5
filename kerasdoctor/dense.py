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
with a Youden-threshold experiment). Experiments fit on one seeded half of the samples and are
scored on the other; their noise is a paired bootstrap over samples, since positions within a
sample are far from independent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Kind, Outcome, Report, Severity

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

CHECKS = (
    ("prediction-collapse", Kind.SYMPTOM), ("missing-classes", Kind.SYMPTOM),
    ("quality-gate", Kind.SYMPTOM), ("decision-threshold", Kind.CAUSE),
    ("class-imbalance", Kind.CAUSE),
)


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

    if (len(shape) == 2 and shape[1] == out_shape[-1] and out_shape[1] != shape[1]
            and np.all(np.sum(y, axis=1) == 1)):
        return False  # one-hot (N, K) rows for an (N, ?, K) output: the single-label reading
    return fits(shape[1:], out_shape[1:-1]) or fits(shape[1:], out_shape[1:])


def read_dense_npz(path: str | os.PathLike[str], x_key: str | None, y_key: str
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None,
                              list[str] | None]:
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


def diagnose_arrays(lm: Any, x: Any, y: Any, opts: Any, mask: Any = None) -> Report:
    """kerasdoctor.diagnose(model, x, y) with a model whose output has rank >= 3."""
    if isinstance(x, Mapping):
        arrays = {str(key): np.asarray(v) for key, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = {f"x{i}": np.asarray(v) for i, v in enumerate(x)}
    else:
        arrays = {"x": np.asarray(x)}
    return diagnose_loaded(lm, "<arrays>", arrays, np.asarray(y), mask, None, opts)


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
        f"labels are class indices {_fmt(tuple(out_shape[:-1]))} or one-hot {_fmt(out_shape)}")


def diagnose_loaded(lm: Any, path: str, arrays: Mapping[str, np.ndarray], y: np.ndarray,
                    mask: Any, names: Sequence[str] | None, opts: Any) -> Report:
    import warnings

    from kerasdoctor.load import Labels, RawData, bind_inputs
    from kerasdoctor.multilabel import _sample_indices

    where = f"DATA: {path}: '{getattr(opts, 'y_key', 'y')}'" if path != "<arrays>" else "y"
    shapes = check_labels(y, tuple(lm.output_shape), where)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise InputError(f"{where} has NaN/Inf labels")
    n = y.shape[0]
    pos_shape = y.shape[:-1] if shapes.onehot or (shapes.k_out == 1 and y.ndim ==
                                                  len(lm.output_shape)) else y.shape
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != pos_shape or mask.dtype.kind not in "biu":
            raise InputError(f"DATA: {path}: 'mask' has shape {_fmt(mask.shape)} "
                             f"({mask.dtype}); expected booleans {_fmt(pos_shape)} "
                             "(True = the position counts)")
        mask = mask.astype(bool)
    k = shapes.k
    if names is not None and len(names) != k:
        raise InputError(f"{where}: {len(names)} class names for {k} classes")
    if opts.class_names is not None:
        names = list(opts.class_names)
        if len(names) != k:
            raise InputError(f"class_names: {len(names)} names for {k} classes")
    class_names = [str(v) for v in names] if names else [str(i) for i in range(k)]
    ignore_label = getattr(opts, "ignore_label", None)
    idx = _label_indices(y, shapes, pos_shape)  # (N, ...) int64 class indices
    counted = np.ones(pos_shape, bool) if mask is None else mask.copy()
    if ignore_label is not None:
        counted &= idx != int(ignore_label)
    bad = counted & ((idx < 0) | (idx >= k))
    if bad.any():
        at = tuple(int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"{where} holds label {idx[at]} at {at}; the model has {k} classes "
                         "(0.." + str(k - 1) + ")" + ("" if ignore_label is not None else
                                                      "; mark void labels with --ignore-label"))
    if not counted.any():
        raise InputError(f"{where}: no position counts (the mask / --ignore-label leave none)")
    raw = RawData(path, dict(arrays), Labels(np.zeros(n, np.int64), "index", k, class_names))
    xs = bind_inputs(raw, lm)
    indices = _sample_indices(n, opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _diagnose(lm, path, xs, idx, counted, shapes, class_names, indices, opts)


def _label_indices(y: np.ndarray, shapes: _Shapes, pos_shape: tuple[int, ...]) -> np.ndarray:
    if shapes.onehot:
        return np.argmax(y, axis=-1).astype(np.int64)
    v = y.reshape(pos_shape)
    if v.dtype.kind == "f" and not np.all(v == np.round(v)):
        raise InputError("y holds non-integer dense labels; expected class indices")
    return v.astype(np.int64)


# ------------------------------------------------------------------ the streaming pass


class _Acc:
    """What the pass accumulates: bounded by N x K, never by positions."""

    def __init__(self, n: int, k: int, one_unit: bool) -> None:
        self.k = k
        self.confusion = np.zeros(k * k, np.int64)
        self.hist = np.zeros((k, 2, BINS), np.int64)  # class, (negative, positive), bin
        self.max_score = np.zeros(k)
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


def _probs(raw: np.ndarray, head: str, k_out: int) -> np.ndarray:
    p: np.ndarray = raw.astype(np.float32)
    if head not in ("sigmoid", "softmax") and (p.min() < 0 or p.max() > 1):
        if k_out == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(p, -80, 80)))
        else:
            p = np.exp(p - p.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
    if k_out == 1:
        p = np.concatenate([1 - p, p], axis=-1)
    return p


def _pass(lm: Any, facts: Any, xs: list[Any], idx: np.ndarray, counted: np.ndarray,
          shapes: _Shapes, prior: np.ndarray, rows: np.ndarray, opts: Any,
          notes: list[str]) -> _Acc:
    from kerasdoctor.probe import Predictor, default_batch_size

    k = shapes.k
    predictor = Predictor(lm, facts, taps=False)
    templates = [np.empty((0, *a.shape[1:]), a.dtype) for a in xs]
    batch = int(opts.batch_size or default_batch_size(templates))
    if not opts.batch_size:  # bound the output too: positions x K float32 per sample
        per = int(np.prod(idx.shape[1:], dtype=np.int64)) * max(shapes.k_out, 2) * 4
        batch = max(1, min(batch, OUT_BYTES // max(per, 1)))
    acc = _Acc(len(rows), k, shapes.k_out == 1)
    log_prior = np.log(np.maximum(prior, 1e-12)).astype(np.float32)
    kk = np.arange(k)
    n = len(rows)
    dropped = 0
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        sel = rows[start:stop]
        part = [a[sel] for a in xs]
        try:
            raw = np.asarray(predictor.run_batch(part)[0])
        except (ValueError, TypeError) as exc:
            text = str(exc).strip().splitlines()
            raise InputError(f"MODEL: {lm.path} failed to run on the data: "
                             f"{text[0] if text else type(exc).__name__}") from exc
        if raw.shape[1:-1] != idx.shape[1:] or raw.shape[-1] != shapes.k_out:
            raise InputError(f"MODEL: {lm.path} outputs {_fmt(raw.shape)} but the labels are "
                             f"{_fmt(idx.shape)}")
        p = _probs(raw, facts.head, shapes.k_out).reshape(len(sel), -1, k)
        yb = idx[start:stop].reshape(len(sel), -1)  # idx / counted: the sampled rows already
        cb = counted[start:stop].reshape(len(sel), -1)
        finite = np.isfinite(p).all(axis=-1)
        if not finite.all():
            dropped += int((cb & ~finite).sum())
            cb = cb & finite
        s_of = np.broadcast_to(np.arange(len(sel))[:, None], cb.shape)[cb]
        pb, yb, b = p[cb], yb[cb], len(sel)  # (M, K) counted positions of this batch
        del p
        for c0 in range(0, len(yb), CHUNK // k):  # bounded temporaries: CHUNK elements
            pc, yc, g = pb[c0:c0 + CHUNK // k], yb[c0:c0 + CHUNK // k], s_of[c0:c0 + CHUNK // k]
            pred = ((pc[:, 1] > 0.5).astype(np.int64) if shapes.k_out == 1
                    else np.argmax(pc, axis=1))
            adj = np.argmax(np.log(np.maximum(pc, 1e-12)) - log_prior, axis=1)
            acc.confusion += np.bincount(yc * k + pred, minlength=k * k)
            bins = np.minimum((pc * BINS).astype(np.int32), BINS - 1)
            key = ((kk[None, :] * 2 + (yc[:, None] == kk[None, :])) * BINS + bins).ravel()
            acc.hist += np.bincount(key, minlength=k * 2 * BINS).reshape(k, 2, BINS)
            del key
            acc.max_score = np.maximum(acc.max_score, pc.max(axis=0))
            acc.counted[start:stop] += np.bincount(g, minlength=b)
            for target, cls, w in ((acc.true_k, yc, None), (acc.pred_k, pred, None),
                                   (acc.hit_k, yc, pred == yc), (acc.adj_pred_k, adj, None),
                                   (acc.adj_hit_k, yc, adj == yc)):
                keys = g * k + cls
                if w is not None:
                    keys = keys[w]
                target[start:stop] += np.bincount(keys, minlength=b * k).reshape(b, k)
            if acc.sample_hist is not None:
                key1 = (g * 2 + yc) * BINS + bins[:, 1]
                acc.sample_hist[start:stop] += np.bincount(
                    key1, minlength=b * 2 * BINS).reshape(b, 2, BINS)
        if opts.progress is not None:
            opts.progress(stop, n)
    if dropped:
        notes.append(f"{dropped} positions with NaN/Inf outputs were left out")
    return acc


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
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _scores(true_k: np.ndarray, pred_k: np.ndarray, hit_k: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(balanced accuracy, mean IoU) from summed counts; leading axes are replicates."""
    with np.errstate(invalid="ignore", divide="ignore"):
        present = true_k > 0
        recall = np.where(present, hit_k / np.maximum(true_k, 1), np.nan)
        union = true_k + pred_k - hit_k
        iou = np.where(union > 0, hit_k / np.maximum(union, 1), np.nan)
        return np.nanmean(recall, axis=-1), np.nanmean(iou, axis=-1)


def paired_gain(before: tuple[np.ndarray, ...], after: tuple[np.ndarray, ...],
                seed: int) -> tuple[float, float, float, float, float, float]:
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


def _diagnose(lm: Any, path: str, xs: list[Any], idx_all: np.ndarray, counted_all: np.ndarray,
              shapes: _Shapes, names: list[str], indices: np.ndarray | None,
              opts: Any) -> Report:
    from kerasdoctor import __version__
    from kerasdoctor.model_facts import read_facts
    facts = read_facts(lm)
    k = shapes.k
    n_all = idx_all.shape[0]
    rows = np.arange(n_all) if indices is None else indices
    idx, counted = idx_all[rows], counted_all[rows]
    n = len(rows)
    fit, test = split_samples(n, opts.seed)
    # the position prior of the fit half (labels only: known before predicting)
    yc_fit = idx[fit][counted[fit]]
    prior = np.bincount(yc_fit, minlength=k).astype(np.float64) + 1.0
    prior /= prior.sum()
    notes = list(lm.notes)
    acc = _pass(lm, facts, xs, idx, counted, shapes, prior, rows, opts, notes)
    metrics = dense_metrics(acc, names, shapes)
    findings = _findings(acc, metrics, names, shapes, prior, fit, test, facts, opts)
    only = getattr(opts, "only", None)
    outcomes, kept = [], []
    for check_id, kind in CHECKS:
        mine = [f for f in findings if f.id == check_id]
        if check_id in opts.ignore:
            outcomes.append(Outcome(check_id, kind, "skipped", f"ignored: {opts.ignore[check_id]}"))
        elif only is not None and check_id not in only:
            outcomes.append(Outcome(check_id, kind, "skipped", "not selected"))
        else:
            outcomes.append(Outcome(check_id, kind, "found" if mine else "passed"))
            kept += mine
    ordered, chain = _rank(kept)
    experiments = tuple(dict(f.evidence["experiment"], finding=f.id) for f in ordered
                        if "experiment" in f.evidence)
    model_info = {
        "path": lm.path, "format": lm.format,
        "inputs": [{"name": s.name, "shape": list(s.shape)} for s in lm.inputs],
        "output": lm.output_name, "output_shape": list(lm.output_shape),
        "n_outputs": facts.n_outputs, "head": facts.head, "loss": facts.loss,
        "loss_from_logits": facts.loss_from_logits,
        "optimizer_iterations": facts.optimizer_iterations, "notes": notes,
    }
    ignore_label = getattr(opts, "ignore_label", None)
    data_info: dict[str, Any] = {
        "path": path, "n_samples": n, "n_classes": k, "class_names": names,
        "label_counts": [int(v) for v in acc.true_k.sum(axis=0)],
        "label_encoding": "dense one-hot" if shapes.onehot else "dense index",
        "label_shape": list(idx_all.shape[1:]),
        "positions": int(acc.counted.sum()),
        "positions_excluded": int(idx.size - acc.counted.sum()),
        "ignore_label": ignore_label,
        "inputs": [_input_info(spec.name, a, indices) for spec, a in zip(lm.inputs, xs)],
    }
    if indices is not None:
        data_info.update({"sampled_from": int(n_all), "seed": opts.seed})
    return Report(model=model_info, data=data_info, metrics=metrics, findings=tuple(ordered),
                  chain=tuple(chain), ignored=dict(opts.ignore), version=__version__,
                  experiments=experiments, outcomes=tuple(outcomes), fail_on=opts.fail_on)


def _input_info(name: str, a: Any, indices: np.ndarray | None) -> dict[str, Any]:
    """multilabel._input_info's figures, a few rows at a time (no float64 copy of x)."""
    rows = np.arange(len(a)) if indices is None else indices
    step = max(1, 2**22 // max(int(np.prod(a.shape[1:], dtype=np.int64)), 1))
    tot, sq, cnt, lo, hi = 0.0, 0.0, 0, math.inf, -math.inf
    for i in range(0, len(rows), step):
        v = np.asarray(a[rows[i:i + step]], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            tot, sq, cnt = tot + float(v.sum()), sq + float((v * v).sum()), cnt + v.size
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    mean = tot / cnt if cnt else None
    std = math.sqrt(max(sq / cnt - mean * mean, 0.0)) if mean is not None else None
    return {"name": name, "shape": [len(rows), *a.shape[1:]], "dtype": str(a.dtype),
            "mean": mean, "std": std, "min": lo if cnt else None, "max": hi if cnt else None}


def dense_metrics(acc: _Acc, names: Sequence[str], shapes: _Shapes) -> dict[str, Any]:
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
        per.append({
            "class": j, "name": names[j], "support": int(support[j]),
            "predicted": int(predicted[j]),
            "share": float(support[j] / total) if total else 0.0,
            "predicted_share": float(predicted[j] / total) if total else 0.0,
            "samples": int((acc.true_k[:, j] > 0).sum()),
            "recall": float(tp[j] / support[j]) if support[j] else None,
            "precision": float(tp[j] / predicted[j]) if predicted[j] else None,
            "iou": float(tp[j] / union) if union else None,
            "auc": auc, "max_score": float(acc.max_score[j]),
        })
    recalls = [float(tp[j] / support[j]) for j in range(k) if support[j]]
    ious = [float(r["iou"]) for r in per if r["iou"] is not None]  # type: ignore[arg-type]
    has = acc.counted > 0
    fg_true = (acc.true_k.sum(axis=1) - acc.true_k[:, majority]) > 0
    fg_pred = (acc.pred_k.sum(axis=1) - acc.pred_k[:, majority]) > 0
    return {
        "task": "dense",
        "decision_rule": "score > 0.5" if shapes.k_out == 1 else "argmax",
        "positions": total,
        "accuracy": float(tp.sum() / total) if total else None,  # over positions
        "majority_baseline": float(support[majority] / total) if total else None,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,  # mean recall
        "mean_iou": float(np.mean(ious)) if ious else None,
        "majority_class": majority,
        "confusion_matrix": cm.tolist(),
        "per_class": per,
        "per_sample": {
            "samples": int(has.sum()),
            "no_predicted_foreground": float((~fg_pred[has]).mean()) if has.any() else None,
            "no_true_foreground": float((~fg_true[has]).mean()) if has.any() else None,
        },
    }


def _names(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(str(r["name"]) for r in rows)


def _collapse(acc: _Acc, metrics: Mapping[str, Any]) -> Finding | None:
    """Foreground positions lost to the majority class, with a one-sided 99% bound from the
    ratio estimator's standard error over samples (positions cluster within a sample)."""
    m = metrics["majority_class"]
    has = acc.counted > 0
    fg = (acc.counted - acc.true_k[:, m])[has].astype(np.float64)
    d = (acc.pred_k[:, m] - acc.true_k[:, m])[has].astype(np.float64)
    n = int(has.sum())
    if fg.sum() == 0 or n < 2:
        return None
    excess = float(d.sum() / fg.sum())
    z = d - excess * fg
    se = float(math.sqrt(n / (n - 1) * (z * z).sum()) / fg.sum())
    lower = excess - Z_ONE_SIDED * se
    if excess < COLLAPSE_EXCESS or lower <= 0:
        return None
    per = metrics["per_class"][m]
    ps = metrics["per_sample"]
    return Finding(
        "prediction-collapse", Kind.SYMPTOM,
        Severity.ERROR if excess >= 0.5 else Severity.WARNING,
        f"{per['predicted_share']:.1%} of the positions are predicted {per['name']}; "
        f"{per['share']:.1%} are",
        f"The model predicts the majority class {per['name']} on {per['predicted_share']:.1%} "
        f"of the {metrics['positions']} counted positions against a label share of "
        f"{per['share']:.1%}: {excess:.1%} of the foreground positions (99% lower bound "
        f"{lower:.1%}) are lost to it. {ps['no_predicted_foreground']:.1%} of the samples are "
        f"predicted with no foreground at all ({ps['no_true_foreground']:.1%} truly have none).",
        {"class": per["name"], "predicted_share": per["predicted_share"],
         "label_share": per["share"], "foreground_lost": excess,
         "foreground_lost_lower": lower,
         "no_predicted_foreground": ps["no_predicted_foreground"],
         "no_true_foreground": ps["no_true_foreground"],
         "positions": metrics["positions"], "samples": n})


def _findings(acc: _Acc, metrics: Mapping[str, Any], names: list[str], shapes: _Shapes,
              prior: np.ndarray, fit: np.ndarray, test: np.ndarray, facts: Any,
              opts: Any) -> list[Finding]:
    out: list[Finding] = []
    per = metrics["per_class"]
    k = shapes.k
    m = metrics["majority_class"]
    collapse = _collapse(acc, metrics)
    if collapse is not None:
        out.append(collapse)
    missing = [r for r in per if r["class"] != m and r["samples"] >= MIN_SAMPLES
               and r["support"] >= MIN_POSITIONS and r["predicted"] == 0]
    if missing:
        out.append(Finding(
            "missing-classes", Kind.SYMPTOM, Severity.ERROR,
            f"{len(missing)} of {k} classes are never predicted",
            f"No position is predicted {_names(missing)}, although "
            + ", ".join(f"{r['name']} covers {r['support']} positions in {r['samples']} "
                        f"samples (max score {r['max_score']:.2f})" for r in missing) + ".",
            {"classes": [r["name"] for r in missing],
             "support": [r["support"] for r in missing],
             "samples": [r["samples"] for r in missing],
             "max_score": [r["max_score"] for r in missing]}))
    gates = dict(getattr(opts, "gates", {}) or {})
    failed = []
    if "min_recall" in gates:
        low = [r for r in per if r["recall"] is not None and r["recall"] < gates["min_recall"]]
        if low:
            failed.append(f"recall below {gates['min_recall']:g} for " + ", ".join(
                f"{r['name']} ({r['recall']:.2f})" for r in low))
    ba = metrics["balanced_accuracy"]
    if "min_balanced_accuracy" in gates and ba is not None and ba < gates["min_balanced_accuracy"]:
        failed.append(f"balanced accuracy over positions {ba:.3f} < "
                      f"{gates['min_balanced_accuracy']:g}")
    if failed:
        out.append(Finding("quality-gate", Kind.SYMPTOM, Severity.ERROR,
                           "a quality gate is not met", "; ".join(failed) + ".",
                           {"gates": gates, "balanced_accuracy": ba}))
    starved = [r for r in per if r["class"] != m and r["support"] >= MIN_POSITIONS
               and r["samples"] >= MIN_SAMPLES
               and r["predicted_share"] <= STARVED_RATE * r["share"]]
    if not starved:
        return out
    symptom = collapse is not None or bool(missing)
    if shapes.k_out == 1:
        thr = _threshold(acc, metrics, names, fit, test, symptom, opts)
        out.append(thr)
        if starved[0]["share"] < RARE_SHARE:
            r = starved[0]
            out.append(Finding(
                "class-imbalance", Kind.CAUSE, Severity.INFO,
                f"{r['name']} covers {r['share']:.1%} of the positions",
                f"{r['name']} is {r['share']:.1%} of the counted positions: binary "
                "cross-entropy then keeps its scores below 0.5 early in training. The measured "
                "cures are the threshold above, or a per-pixel sample_weight (code below).",
                {"classes": [r["name"]], "share": [r["share"]]},
                (_weight_fix(k, shapes),)))
        return out
    out.append(_imbalance(acc, metrics, names, shapes, prior, fit, test, starved, symptom,
                          opts))
    return out


def _experiment_counts(acc: _Acc, rows: np.ndarray, adjusted: bool
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if adjusted:
        return acc.true_k[rows], acc.adj_pred_k[rows], acc.adj_hit_k[rows]
    return acc.true_k[rows], acc.pred_k[rows], acc.hit_k[rows]


def _imbalance(acc: _Acc, metrics: Mapping[str, Any], names: list[str], shapes: _Shapes,
               prior: np.ndarray, fit: np.ndarray, test: np.ndarray,
               starved: list[Mapping[str, Any]], symptom: bool, opts: Any) -> Finding:
    k = shapes.k
    m = metrics["majority_class"]
    per = metrics["per_class"]
    before = _experiment_counts(acc, test, False)
    after = _experiment_counts(acc, test, True)
    b_ba, a_ba, b_iou, a_iou, gain, se = paired_gain(before, after, opts.seed)
    noise = 2 * se
    restores = gain > max(noise, MIN_GAIN)
    severity = (Severity.ERROR if restores and symptom
                else Severity.WARNING if restores else Severity.INFO)
    experiment = {
        "what": f"logit adjustment: log of the class prior over the positions of one seeded "
                f"half of the samples ({len(fit)}) subtracted from the log-probabilities, "
                f"argmax, scored on the other half ({len(test)} samples)",
        "balanced_accuracy_before": b_ba, "balanced_accuracy_after": a_ba,
        "mean_iou_before": b_iou, "mean_iou_after": a_iou,
        "rows": int(len(test)), "positions": int(before[0].sum()),
        "gain": gain, "noise": noise, "restores": restores,
        "prior": [float(v) for v in prior],
    }
    share = per[m]["share"]
    prior_txt = "[" + ", ".join(f"{v:.4f}" for v in prior) + "]"
    detail = (
        f"{per[m]['name']} holds {share:.1%} of the counted positions; "
        f"{_names(starved)} ("
        + ", ".join(f"{r['share']:.1%}" for r in starved) + " of the positions) are predicted on "
        + ", ".join(f"{r['predicted_share']:.2%}" for r in starved) + ", although "
        "their scores rank them (ROC AUC "
        + ", ".join("n/a" if r["auc"] is None else f"{r['auc']:.2f}" for r in starved) + "). "
        f"Dividing the scores by the position prior (logit adjustment, prior from one half of "
        f"the samples) takes the balanced accuracy over positions on the other half from "
        f"{b_ba:.3f} to {a_ba:.3f} "
        + (f"(beyond noise, ±{noise:.3f})" if restores else f"(within noise, ±{noise:.3f})")
        + f" and the mean IoU from {b_iou:.3f} to {a_iou:.3f}. The network has learnt the "
        "prior of the positions; train with per-position class weights (or longer).")
    code_adjust = (
        "import numpy as np\n"
        f"PRIOR = np.array({prior_txt})  # class shares over the positions (training labels)\n"
        "probs = model.predict(x)  # (N, ..., K)\n"
        "pred = np.argmax(np.log(probs + 1e-12) - np.log(PRIOR), axis=-1)")
    code_losses = (
        "import keras\n"
        f"y_onehot = keras.utils.to_categorical(y_train, {k})  # these losses take one-hot\n"
        "model.compile(optimizer=\"adam\", loss=keras.losses.Dice())\n"
        "# or: loss=keras.losses.CategoricalFocalCrossentropy()\n"
        "model.fit(x_train, y_onehot, epochs=20)")
    fixes = (
        _weight_fix(k, shapes),
        Fix("Or a loss less driven by the majority class (measured on the U-Net fixture: not "
            "enough on its own in a short training; class weights were).", code=code_losses),
        Fix("Meanwhile, adjust the predictions by the position prior (the experiment above).",
            code=code_adjust),
    )
    return Finding(
        "class-imbalance", Kind.CAUSE, severity,
        f"the position prior ({per[m]['name']} {share:.1%}) drowns {len(starved)} of {k} classes",
        detail,
        {"majority_class": per[m]["name"], "majority_share": share,
         "classes": [r["name"] for r in starved],
         "share": [r["share"] for r in starved],
         "predicted_share": [r["predicted_share"] for r in starved],
         "auc": [r["auc"] for r in starved], "experiment": experiment},
        fixes)


def _weight_fix(k: int, shapes: _Shapes) -> Fix:
    code = (
        "import numpy as np\n"
        "# y_train: (N, H, W) (or (N, T)) class indices; one weight per position\n"
        f"counts = np.bincount(y_train.ravel(), minlength={k})\n"
        f"class_weight = counts.sum() / ({k} * np.maximum(counts, 1))  # 'balanced'\n"
        "sample_weight = class_weight[y_train].astype(\"float32\")  # same shape as y_train\n"
        "# sample_weight *= mask  # padding / void positions: weight 0\n"
        "model.fit(x_train, y_train, sample_weight=sample_weight, epochs=10)")
    return Fix("Retrain with per-position class weights: Keras's class_weight does not take "
               "dense targets, a sample_weight array of the labels' shape does.", code=code)


def _threshold(acc: _Acc, metrics: Mapping[str, Any], names: list[str], fit: np.ndarray,
               test: np.ndarray, symptom: bool, opts: Any) -> Finding:
    assert acc.sample_hist is not None
    sample_hist = acc.sample_hist
    per = metrics["per_class"]
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
    b_ba, a_ba, b_iou, a_iou, gain, se = paired_gain(before, after, opts.seed)
    noise = 2 * se
    restores = gain > max(noise, MIN_GAIN)
    hall = acc.sample_hist.sum(axis=0)
    t_all = youden_bin(hall[0], hall[1]) / BINS
    severity = (Severity.ERROR if restores and symptom
                else Severity.WARNING if restores else Severity.INFO)
    experiment = {
        "what": f"a threshold on P({r['name']}) (Youden J on the histogram ROC) chosen on one "
                f"seeded half of the samples ({len(fit)}), scored on the other half",
        "balanced_accuracy_before": b_ba, "balanced_accuracy_after": a_ba,
        "mean_iou_before": b_iou, "mean_iou_after": a_iou,
        "rows": int(len(test)), "positions": int(before[0].sum()),
        "gain": gain, "noise": noise, "restores": restores, "threshold": t_half,
    }
    auc = "n/a" if r["auc"] is None else f"{r['auc']:.3f}"
    detail = (
        f"P({r['name']}) ranks the positions well (ROC AUC {auc}) but never passes 0.5 where "
        f"it should: {r['name']} is predicted on {r['predicted_share']:.2%} of the positions "
        f"against {r['share']:.1%} (max score {r['max_score']:.2f}). A threshold of "
        f"{t_half:.3f} chosen on one half of the samples takes the balanced accuracy over "
        f"positions on the other half from {b_ba:.3f} to {a_ba:.3f} "
        + (f"(beyond noise, ±{noise:.3f})" if restores else f"(within noise, ±{noise:.3f})")
        + f" and the mean IoU from {b_iou:.3f} to {a_iou:.3f}.")
    code = (
        f"THRESHOLD = {t_all:.4f}  # Youden J on these positions; choose it on validation data\n"
        "probs = model.predict(x)[..., 0]  # (N, H, W)\n"
        "mask = probs >= THRESHOLD")
    return Finding(
        "decision-threshold", Kind.CAUSE, severity,
        f"the 0.5 cut drops {r['name']}, which the scores rank well",
        detail,
        {"class": r["name"], "auc": r["auc"], "share": r["share"],
         "predicted_share": r["predicted_share"], "max_score": r["max_score"],
         "threshold": t_all, "experiment": experiment},
        (Fix("Threshold the mask below 0.5 (or retrain with per-pixel weights).", code=code),))


CAUSE_ORDER = ("decision-threshold", "class-imbalance")
SYMPTOM_ORDER = ("prediction-collapse", "missing-classes", "quality-gate")


def _rank(findings: Sequence[Finding]) -> tuple[list[Finding], list[str]]:
    """Symptoms first, then causes (above info first, in CAUSE_ORDER); the chain is the root
    cause followed by the symptoms found."""
    symptoms = sorted((f for f in findings if f.kind is Kind.SYMPTOM),
                      key=lambda f: (-f.severity.rank, SYMPTOM_ORDER.index(f.id)))
    causes = sorted((f for f in findings if f.kind is Kind.CAUSE),
                    key=lambda f: (f.severity is Severity.INFO, CAUSE_ORDER.index(f.id)))
    root = next((f for f in causes if f.severity is not Severity.INFO), None)
    chain = ([root.id] + [s.id for s in symptoms if s.severity is not Severity.INFO]
             if root is not None else [])
    return symptoms + causes, chain
