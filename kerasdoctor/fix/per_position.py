"""`fix --threshold` and `fix --repair` for dense models (issue 16): per-pixel classifiers
(output (N, H, W, K) or (N, H, W, 1) sigmoid) and per-token taggers (output (N, T, K)).

The samples are split as the dense diagnosis splits them (dense.split_samples, seeded): a cure
is fitted on one half and measured on the other, over the positions that count (the .npz's
`mask`, less --ignore-label). Two cures:

- one sigmoid unit: one threshold over all positions (dense.youden_bin on the fitting half's
  histogram of P(class 1)); the repair moves it into the output bias (bias -= logit t);
- K softmax units: logit adjustment, the log of the fitting half's position prior subtracted
  from the logits (= from the output bias), argmax.

Either is kept only under dense.cure_verdict: balanced accuracy over positions AND mean IoU
both up beyond their noise (paired bootstrap over samples).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Report
from kerasdoctor.fix.repair_result import (
    CureVerdict,
    PositionClassRow,
    PositionSummary,
    PositionThreshold,
    Rediagnosis,
    RepairDetails,
    RepairResult,
)

SPLIT = (
    "two seeded halves of the samples of DATA (as the dense diagnosis splits them): the "
    "cure is fitted on the first and measured on the second, over the positions that "
    "count"
)
RULE = (
    "kept only when, on the held-out samples, both the balanced accuracy over positions "
    "(by 0.02 at least) and the mean IoU rise beyond their noise (two paired-bootstrap "
    "standard errors): a shift toward the rare classes always buys recall, IoU also counts "
    "the positions it paints wrongly, and mIoU is what the model is judged by"
)
WHY: dict[str, str] = {
    "decision-threshold": "the model has no single sigmoid unit per position: no threshold "
    "decides its classes",
}


@dataclass
class DenseData:
    """A dense model and its data: inputs bound, labels as class indices, what counts."""

    lm: Any
    facts: Any
    path: str
    xs: list[np.ndarray]
    idx: np.ndarray  # (N, ...) int64 class indices per position
    counted: np.ndarray  # (N, ...) bool: the mask, less --ignore-label
    k_out: int  # units of the output's last axis (1: one sigmoid unit)
    k: int  # classes
    names: list[str]
    y: np.ndarray  # the labels as given (for the re-diagnosis)
    mask: np.ndarray | None
    ignore_label: int | None


def load_npz(
    model_path: str,
    data_path: str,
    opts: DataSpec,
    *,
    unsafe: bool = False,
    output_name: str | None = None,
    lm: Any = None,
) -> DenseData:
    """MODEL (a rank >= 3 output) and its dense labels, bound together: an .npz, or a
    segmentation folder (images/ + masks/) read as `diagnose` reads it."""
    from kerasdoctor.dense import read_dense_npz
    from kerasdoctor.load import load_model
    from kerasdoctor.seg_folder import is_seg_folder

    if lm is None:
        lm = load_model(model_path, unsafe=unsafe, output_name=output_name)
    if is_seg_folder(data_path):
        return _load_folder(lm, data_path, opts)
    arrays, y, mask, names = read_dense_npz(data_path, opts.x_key, opts.y_key)
    return bind(
        lm,
        str(data_path),
        arrays,
        y,
        mask,
        names,
        opts.ignore_label,
        f"DATA: {data_path}: '{opts.y_key}'",
    )


def _load_folder(lm: Any, data_path: str, opts: DataSpec) -> DenseData:
    """A segmentation folder: masks mapped to classes (and --ignore-label applied) exactly as
    `diagnose` maps them; the images decoded when a batch needs them."""
    from pathlib import Path
    from types import SimpleNamespace

    from kerasdoctor.seg_folder import SegFolderSource, read_folder

    src = SegFolderSource(Path(data_path), opts)
    # every pair (no --sample in fix), masks mapped with the void value as diagnose maps them
    read = SimpleNamespace(sample=None, seed=0, batch_size=None, ignore_label=opts.ignore_label)
    fd = read_folder(lm, src, read)
    return bind(
        lm, str(data_path), fd.arrays, fd.y, fd.valid, fd.names, None, f"DATA: {data_path}: masks/"
    )


def bind(
    lm: Any,
    path: str,
    arrays: dict[str, np.ndarray],
    y: Any,
    mask: Any,
    names: list[str] | None,
    ignore_label: int | None,
    where: str = "y",
) -> DenseData:
    """The checks of dense.diagnose_loaded (label shape, mask, --ignore-label, names)."""
    from kerasdoctor.dense import _fmt, _label_indices, check_labels, is_dense_output
    from kerasdoctor.load import Labels, RawData, bind_inputs
    from kerasdoctor.model_facts import read_facts

    if not is_dense_output(lm):
        raise InputError(
            f"MODEL: {lm.path} outputs {_fmt(tuple(lm.output_shape))}, not one "
            "prediction per position (N, H, W, K) or (N, T, K), but DATA holds "
            "dense labels"
        )
    y = np.asarray(y)
    shapes = check_labels(y, tuple(lm.output_shape), where)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
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
        mask = mask.astype(bool)
    k = shapes.k
    if names is not None and len(names) != k:
        raise InputError(f"{where}: {len(names)} class names for {k} classes")
    class_names = [str(v) for v in names] if names else [str(i) for i in range(k)]
    idx = _label_indices(y, shapes, pos_shape)
    counted = np.ones(pos_shape, bool) if mask is None else mask.copy()
    if ignore_label is not None:
        counted &= idx != int(ignore_label)
    bad = counted & ((idx < 0) | (idx >= k))
    if bad.any():
        at = tuple(int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"{where} holds label {idx[at]} at {at}; the model has {k} classes "
            f"(0..{k - 1})"
            + ("" if ignore_label is not None else "; mark void labels with --ignore-label")
        )
    if not counted.any():
        raise InputError(f"{where}: no position counts (the mask / --ignore-label leave none)")
    raw = RawData(path, dict(arrays), Labels(np.zeros(n, np.int64), "index", k, class_names))
    return DenseData(
        lm,
        read_facts(lm),
        path,
        bind_inputs(raw, lm),
        idx,
        counted,
        shapes.k_out,
        k,
        class_names,
        y,
        mask,
        ignore_label,
    )


def check_threshold_model(dd: DenseData) -> None:
    """`--threshold` needs one sigmoid unit per position; a K-unit softmax exits 2."""
    if dd.k_out != 1:
        raise InputError(
            f"--threshold needs one sigmoid unit per position; MODEL {dd.lm.path} has "
            f"{dd.k_out} {dd.facts.head} units per position (argmax over {dd.k} classes): no "
            "threshold decides them. Its class prior is the lever: kerasdoctor fix --repair "
            "MODEL DATA --cause class-imbalance (kept only if it validates)"
        )
    if dd.facts.head == "softmax":
        raise InputError(
            f"MODEL {dd.lm.path} has a softmax over a single unit: its output is "
            "always 1.0 and no threshold can separate the classes"
        )


# ------------------------------------------------------------------ the streaming pass


Batch = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def _run(dd: DenseData, rows: np.ndarray, on_batch: Batch, lm: Any = None) -> None:
    """Predict `rows` in batches bounded like the diagnosis's pass; on_batch(sel, p, y, c)
    with p (b, P, K) probabilities, y (b, P) labels and c (b, P) the positions that count
    (finite outputs only)."""
    from kerasdoctor.dense import OUT_BYTES, _probs
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.probe import Predictor, default_batch_size

    model = lm or dd.lm
    facts = dd.facts if lm is None else read_facts(lm)
    predictor = Predictor(model, facts, taps=False)
    templates = [np.empty((0, *a.shape[1:]), a.dtype) for a in dd.xs]
    per = int(np.prod(dd.idx.shape[1:], dtype=np.int64)) * max(dd.k_out, 2) * 4
    batch = max(1, min(default_batch_size(templates), OUT_BYTES // max(per, 1)))
    for start in range(0, len(rows), batch):
        sel = rows[start : start + batch]
        try:
            raw = np.asarray(predictor.run_batch([a[sel] for a in dd.xs])[0])
        except (ValueError, TypeError) as exc:
            text = str(exc).strip().splitlines()
            raise InputError(
                f"MODEL: {model.path} failed to run on the data: "
                f"{text[0] if text else type(exc).__name__}"
            ) from exc
        p = _probs(raw, facts.head, dd.k_out).reshape(len(sel), -1, dd.k)
        yb = np.asarray(dd.idx[sel], np.int64).reshape(len(sel), -1)
        cb = dd.counted[sel].reshape(len(sel), -1) & np.isfinite(p).all(axis=-1)
        on_batch(sel, p, yb, cb)


def _counts(
    pred: np.ndarray, yb: np.ndarray, cb: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample of a batch: (true, predicted, hit) counts per class over counted positions."""
    b = yb.shape[0]
    g = np.broadcast_to(np.arange(b)[:, None], cb.shape)[cb]
    yc, pc = yb[cb], pred[cb]
    true_k = np.bincount(g * k + yc, minlength=b * k).reshape(b, k)
    pred_k = np.bincount(g * k + pc, minlength=b * k).reshape(b, k)
    hit_k = np.bincount((g * k + yc)[pc == yc], minlength=b * k).reshape(b, k)
    return true_k, pred_k, hit_k


class _Tally:
    """Per-sample counts of some rows under several rules."""

    def __init__(self, rows: np.ndarray, k: int, rules: tuple[str, ...]) -> None:
        self.pos = {int(r): i for i, r in enumerate(rows)}
        self.counts = {
            rule: tuple(np.zeros((len(rows), k), np.int64) for _ in range(3)) for rule in rules
        }
        self.k = k

    def add(
        self, rule: str, sel: np.ndarray, pred: np.ndarray, yb: np.ndarray, cb: np.ndarray
    ) -> None:
        at = np.array([self.pos[int(s)] for s in sel])
        for target, part in zip(self.counts[rule], _counts(pred, yb, cb, self.k)):
            target[at] += part


def _summary(counts: tuple[np.ndarray, ...], names: list[str], majority: int) -> PositionSummary:
    """Balanced accuracy (mean recall), mIoU and per-class figures over the positions."""
    from kerasdoctor.dense import _scores

    true_k, pred_k, hit_k = counts
    t, p, h = (a.sum(axis=0) for a in counts)
    ba, miou = _scores(t, p, h)
    total = int(t.sum())
    fg_true = (true_k.sum(axis=1) - true_k[:, majority]) > 0
    fg_pred = (pred_k.sum(axis=1) - pred_k[:, majority]) > 0
    per = []
    for j, name in enumerate(names):
        union = t[j] + p[j] - h[j]
        per.append(
            PositionClassRow(
                index=j,
                name=name,
                support=int(t[j]),
                predicted=int(p[j]),
                recall=float(h[j] / t[j]) if t[j] else None,
                precision=float(h[j] / p[j]) if p[j] else None,
                iou=float(h[j] / union) if union else None,
            )
        )
    return PositionSummary(
        samples=int(true_k.shape[0]),
        positions=total,
        accuracy=float(h.sum() / total) if total else None,
        balanced_accuracy=float(ba),
        mean_iou=float(miou),
        no_predicted_foreground=float((~fg_pred).mean()),
        no_true_foreground=float((~fg_true).mean()),
        per_class=tuple(per),
    )


def _majority(dd: DenseData) -> int:
    return int(np.argmax(np.bincount(dd.idx[dd.counted], minlength=dd.k)))


def _logit(t: float) -> float:
    t = min(max(t, 1e-7), 1 - 1e-7)
    return math.log(t / (1 - t))


def _choose_threshold(dd: DenseData, fit: np.ndarray) -> tuple[float, np.ndarray]:
    """The Youden cut on P(class 1) over the fitting half's positions (dense.youden_bin, as
    the diagnosis's experiment), and that half's (negative, positive) histogram."""
    from kerasdoctor.dense import BINS, youden_bin

    hist = np.zeros((2, BINS), np.int64)

    def on(sel: np.ndarray, p: np.ndarray, yb: np.ndarray, cb: np.ndarray) -> None:
        s, yc = p[..., 1][cb], yb[cb]
        bins = np.minimum((s * BINS).astype(np.int64), BINS - 1)
        hist[:] += np.bincount(yc * BINS + bins, minlength=2 * BINS).reshape(2, BINS)

    _run(dd, fit, on)
    b = youden_bin(hist[0], hist[1])
    return float(min(max(b / BINS, 1e-6), 1 - 1e-6)), hist


def _prior(dd: DenseData, fit: np.ndarray) -> np.ndarray:
    """The fitting half's class shares over the positions (+1 each, as the diagnosis)."""
    counts = np.bincount(dd.idx[fit][dd.counted[fit]], minlength=dd.k).astype(np.float64) + 1
    out: np.ndarray = counts / counts.sum()
    return out


def _measure(
    dd: DenseData, test: np.ndarray, cut: float | None, log_prior: np.ndarray | None
) -> tuple[_Tally, np.ndarray]:
    """Held-out counts under the model's rule ('before') and the cure ('after'), and the
    held-out histogram of P(class 1) (one sigmoid unit; for its ROC AUC)."""
    from kerasdoctor.dense import BINS

    tally = _Tally(test, dd.k, ("before", "after"))
    hist = np.zeros((2, BINS), np.int64)

    def on(sel: np.ndarray, p: np.ndarray, yb: np.ndarray, cb: np.ndarray) -> None:
        if dd.k_out == 1:
            s = p[..., 1]
            tally.add("before", sel, (s > 0.5).astype(np.int64), yb, cb)
            assert cut is not None
            tally.add("after", sel, (s > cut).astype(np.int64), yb, cb)
            bins = np.minimum((s[cb] * BINS).astype(np.int64), BINS - 1)
            hist[:] += np.bincount(yb[cb] * BINS + bins, minlength=2 * BINS).reshape(2, BINS)
        else:
            assert log_prior is not None
            tally.add("before", sel, np.argmax(p, axis=-1), yb, cb)
            adj = np.log(np.maximum(p, 1e-12)) - log_prior.astype(np.float32)
            tally.add("after", sel, np.argmax(adj, axis=-1), yb, cb)

    _run(dd, test, on)
    return tally, hist


def threshold_report(dd: DenseData, seed: int, spec: DataSpec) -> PositionThreshold:
    """`fix --threshold MODEL DATA` on a one-sigmoid dense model: one threshold over the
    positions, chosen on one half of the samples and measured on the other."""
    from kerasdoctor.dense import cure_verdict, hist_auc, split_samples
    from kerasdoctor.multilabel import fix_commands

    check_threshold_model(dd)
    n = dd.idx.shape[0]
    fit, test = split_samples(n, seed)
    t, _ = _choose_threshold(dd, fit)
    tally, hist = _measure(dd, test, t, None)
    verdict = CureVerdict.of(cure_verdict(tally.counts["before"], tally.counts["after"], seed))
    m = _majority(dd)
    before = _summary(tally.counts["before"], dd.names, m)
    tried = _summary(tally.counts["after"], dd.names, m)
    ok = verdict.validated
    after = tried if ok else before
    name = dd.names[1]
    code = (
        f"THRESHOLD = {t:.6g}  # chosen on one seeded half of the samples, checked on the "
        "other\n"
        "probs = model.predict(x)[..., 0]  # P(" + name + ") per position\n"
        "mask = probs > THRESHOLD"
    )
    repair = None
    if ok:
        repair = fix_commands(
            dd.lm.path, dd.path, spec, "decision-threshold", repair=True, threshold=False
        )[0].command
    note = (
        None
        if ok
        else (
            f"the threshold {t:.4g} chosen on one half moves the held-out balanced accuracy from "
            f"{verdict.balanced_accuracy_before:.3f} to {verdict.balanced_accuracy_after:.3f}"
            f" (noise ±{verdict.noise:.3f}) and the mean IoU from "
            f"{verdict.mean_iou_before:.3f} to {verdict.mean_iou_after:.3f} (noise "
            f"±{verdict.mean_iou_noise:.3f}): not validated, keep 0.5"
        )
    )
    return PositionThreshold(
        model=dd.lm.path,
        data=dd.path,
        score=f"P({name}) per position",
        split=SPLIT,
        validation=RULE,
        seed=seed,
        fit_samples=int(fit.size),
        heldout_samples=int(test.size),
        positions_heldout=before.positions,
        threshold=t if ok else 0.5,
        threshold_fitted=t,
        validated=ok,
        roc_auc=hist_auc(hist[0], hist[1]),
        class_names=tuple(dd.names),
        ignore_label=dd.ignore_label,
        mask=dd.mask is not None,
        before=before,
        after=after,
        tried=tried,
        verdict=verdict,
        code=code,
        repair_command=repair,
        note=note,
    )


def repair(
    dd: DenseData, report: Report, finding: Finding | None, output: Path, seed: int
) -> RepairResult:
    """`fix --repair` of a dense model: the threshold (one sigmoid unit) or the logit
    adjustment (softmax) moved into the output bias, or a model-level cause cured
    (fix.task_repair); written only when the reloaded model passes dense.cure_verdict on the
    held-out samples."""
    from kerasdoctor.dense import cure_verdict, split_samples
    from kerasdoctor.fix.repair import (
        CannotRepair,
        _saved,
        shift_output_logits,
        unrepairable_why,
    )
    from kerasdoctor.fix.task_repair import MODEL_LEVEL
    from kerasdoctor.load import load_model

    n = dd.idx.shape[0]
    fit, test = split_samples(n, seed)
    result = RepairResult.start(
        "dense",
        report,
        finding,
        split=SPLIT,
        seed=seed,
        fit_rows=int(fit.size),
        heldout_rows=int(test.size),
        rule=RULE,
    )
    if finding is None:
        return result
    if finding.id in MODEL_LEVEL:  # inputs, BatchNorm statistics, a one-unit softmax
        from kerasdoctor.fix.task_repair import repair_dense

        return repair_dense(dd, finding, output, seed, result)
    m = _majority(dd)
    one = dd.k_out == 1
    if finding.id == "decision-threshold" and one:
        t, _ = _choose_threshold(dd, fit)
        tally, _ = _measure(dd, test, t, None)
        shift = np.array([_logit(t)])
        acts: tuple[str, ...] = ("sigmoid", "linear")
        cure = f"the threshold P({dd.names[1]}) > {t:.4g} (chosen on the fitting half)"
        fitted = RepairDetails(threshold=t)
    elif finding.id == "class-imbalance" and not one:
        prior = _prior(dd, fit)
        tally, _ = _measure(dd, test, None, np.log(prior))
        shift = np.log(prior)
        acts = ("softmax", "linear")
        cure = (
            "the log position prior of the fitting half (logit adjustment: argmax of "
            "log p - log prior)"
        )
        fitted = RepairDetails(prior=tuple(prior.tolist()))
    else:
        if finding.id == "class-imbalance":
            why = (
                "with one sigmoid unit the prior's cure is the threshold: repair "
                "the decision-threshold cause (--cause decision-threshold)"
            )
        else:
            why = WHY.get(finding.id) or unrepairable_why(finding, "retraining")
        return replace(result, why=why, instead=_instead(finding))
    before = _summary(tally.counts["before"], dd.names, m)
    planned = CureVerdict.of(cure_verdict(tally.counts["before"], tally.counts["after"], seed))
    result = replace(result, before=before, details=replace(fitted, planned=planned))
    if not planned.validated:
        return replace(
            result,
            verdict=planned,
            details=replace(result.details, tried=_summary(tally.counts["after"], dd.names, m)),
            why=_refusal(planned, cure),
            instead=_instead(finding),
        )
    try:
        model, what, details = shift_output_logits(dd.lm, shift, acts)
    except CannotRepair as exc:
        return replace(result, why=str(exc), instead=_instead(finding))
    result = replace(
        result,
        repair=f"moved {cure} into the output logits: {what}",
        details=replace(result.details, surgery=details),
    )
    with _saved(model, output) as tmp:
        lm2 = load_model(tmp)  # plain Keras, safe mode: what a user loads
        after = _Tally(test, dd.k, ("after",))

        def on(sel: np.ndarray, p: np.ndarray, yb: np.ndarray, cb: np.ndarray) -> None:
            pred = (p[..., 1] > 0.5).astype(np.int64) if one else np.argmax(p, axis=-1)
            after.add("after", sel, pred, yb, cb)

        _run(dd, test, on, lm=lm2)
        result = judged(result, tally.counts["before"], after.counts["after"], seed, lm2)
        result = replace(result, after=_summary(after.counts["after"], dd.names, m))
        verdict = result.verdict
        assert verdict is not None
        if not result.standard_layers_only:
            return result
        if not verdict.validated:
            return replace(
                result, why=_refusal(verdict, "the reloaded model"), instead=_instead(finding)
            )
        result = replace(result, diagnosis_after=_rediagnose(tmp, dd, test, seed))
        os.replace(tmp, output)
    return replace(result, repaired=True, output=str(output))


def judged(
    result: RepairResult,
    before: tuple[np.ndarray, ...],
    after: tuple[np.ndarray, ...],
    seed: int,
    reloaded: Any,
) -> RepairResult:
    """`result` with the verdict on the held-out samples (dense.cure_verdict of the counts
    before and after, by the reloaded model) and whether the saved model holds standard
    layers only; with the reason nothing is written when it does not. The one rule of every
    dense repair (this module's threshold and prior, fix.task_repair's model-level ones)."""
    from kerasdoctor.dense import MIN_GAIN, cure_verdict
    from kerasdoctor.fix.repair import _standard

    verdict = CureVerdict.of(cure_verdict(before, after, seed))
    standard = _standard(reloaded.keras_model)
    result = replace(
        result,
        verdict=verdict,
        gain=verdict.gain,
        required_gain=max(verdict.noise, MIN_GAIN),
        standard_layers_only=standard,
    )
    if not standard:
        return replace(result, why="the repaired model holds non-standard layers: not written")
    return result


def _refusal(v: CureVerdict, what: str) -> str:
    ba = (
        f"balanced accuracy over positions {v.balanced_accuracy_before:.3f} → "
        f"{v.balanced_accuracy_after:.3f} (noise ±{v.noise:.3f})"
    )
    iou = (
        f"mean IoU {v.mean_iou_before:.3f} → {v.mean_iou_after:.3f} (noise ±{v.mean_iou_noise:.3f})"
    )
    if not v.restores:
        reason = "balanced accuracy does not rise beyond noise"
    elif v.mean_iou_gain < 0:
        reason = (
            "recall rises but the mean IoU falls: the shift paints the rare classes on "
            "more wrong positions than it recovers"
        )
    else:
        reason = "the mean IoU does not rise beyond noise"
    return (
        f"on the held-out samples {what} gives {ba} and {iou}: {reason}; nothing written. "
        "Retrain with per-position class weights (a sample_weight array of the labels' "
        "shape)"
    )


def _instead(finding: Finding) -> tuple[Fix, ...]:
    return tuple(f for f in finding.fixes if "--repair" not in (f.command or ""))


def _rediagnose(path: str, dd: DenseData, test: np.ndarray, seed: int) -> Rediagnosis:
    """The dense diagnosis of the repaired model on the held-out samples."""
    from kerasdoctor.core import Options
    from kerasdoctor.dense import diagnose_arrays
    from kerasdoctor.load import load_model

    try:
        xs = {s.name: a[test] for s, a in zip(dd.lm.inputs, dd.xs)}
        rep = diagnose_arrays(
            load_model(path),
            xs if len(xs) > 1 else next(iter(xs.values())),
            dd.y[test],
            Options(seed=seed, ignore_label=dd.ignore_label, class_names=dd.names),
            mask=None if dd.mask is None else dd.mask[test],
        )
    except Exception as exc:  # reported, never fatal: the repair itself is measured above
        return Rediagnosis.failed(exc)
    return Rediagnosis.of(rep)
