"""`fix --repair` of the model-level causes of dense and multi-label diagnoses (issue 16):
preprocessing-mismatch, batchnorm-statistics and single-unit-softmax, as kerasdoctor/
task_causes.py finds them by experiment.

The surgery is the single-label repair's own (fix.repair: prepend_transforms,
reestimate_batchnorm, sigmoid_head), fitted on one seeded half of the samples:

- preprocessing-mismatch: the transform the diagnosis found (its evidence's
  restoring_transform) done by fixed standard layers in front of a copy of the model
  (Rescaling, Normalization, a 1x1 Conv2D); a statistic it needs (standardise) is counted on
  the fitting half;
- batchnorm-statistics: the BatchNorm moving statistics re-estimated from the fitting half's
  inputs (AdaBN, on a copy; no weight trained);
- single-unit-softmax: a sigmoid on the same logit (nothing to fit).

It is proved on the other half with the task's own scoring, on the model as saved and
reloaded by plain Keras in safe mode: for a dense model dense.cure_verdict (balanced accuracy
over positions AND mean IoU up beyond their noise, as the other dense repairs); for a
multi-label model the macro balanced accuracy up beyond two paired-bootstrap standard errors
(and by MIN_GAIN), with per-label figures. Nothing is written otherwise (exit 1, the reason).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.findings import Finding, Report
from kerasdoctor.fix.repair_result import LabelRow, RepairDetails, RepairResult
from kerasdoctor.fix.surgery import Surgery
from kerasdoctor.task_causes import CAUSES

MODEL_LEVEL: tuple[str, ...] = CAUSES  # the causes the diagnosis finds by experiment, repaired here
MIN_GAIN = 0.02  # the held-out gain must also clear this (besides 2 bootstrap SE)
BOOTSTRAP = 200
# BatchNorm re-estimation: batches of at most this many input bytes (images of 512x512x3
# float32 make ~21 a batch), and at most fix.repair.BN_BATCH rows
BN_BATCH_BYTES = 64 * 2**20

DENSE_RULE = (
    "written only when, on the held-out samples, the model as saved and reloaded "
    "raises both the balanced accuracy over positions (by 0.02 at least) and the "
    "mean IoU beyond their noise (two paired-bootstrap standard errors over the "
    "samples)"
)
MULTI_RULE = (
    "written only when, on the held-out half, the model as saved and reloaded "
    "raises the macro balanced accuracy by more than two paired-bootstrap standard "
    "errors over the rows and by 0.02 at least"
)
SPLIT = {
    "dense": "two seeded halves of the samples of DATA (as the dense diagnosis splits "
    "them): the repair is fitted on the first and measured on the second, over "
    "the positions that count",
    "multilabel": "two seeded halves of DATA, stratified by each row's rarest label: the "
    "repair is fitted on the first and measured on the second, which it "
    "never saw",
}
# What to do when the held-out half is not restored, per cause
ADVICE = {
    "preprocessing-mismatch": "prepare the data exactly as for training before predicting",
    "batchnorm-statistics": "re-estimate the statistics on the training data, or train "
    "longer (or with momentum=0.9 on the BatchNormalization layers)",
    "single-unit-softmax": "a softmax over one unit passed no gradient to the logit under it "
    "when it was there during training: retrain with a sigmoid head",
}


def repairable(lm: Any, facts: Any, finding_id: str, evidence: dict[str, Any]) -> bool:
    """Whether `fix --repair` can edit this model for this cause (what task_causes checks
    before it offers the command): Keras layers to edit (not a SavedModel), a transform that
    standard layers do, BatchNorm layers, a one-unit softmax whose logit did learn."""
    from kerasdoctor.fix.repair import CAFFE_MEAN, RESCALINGS

    if lm.keras_model is None or Path(str(lm.path)).is_dir():
        return False
    if finding_id == "preprocessing-mismatch":
        rt = evidence.get("restoring_transform") or {}
        name = rt.get("transform")
        if name in ("bgr<->rgb", "caffe"):
            spec = next((s for s in lm.inputs if s.name == rt.get("input")), None)
            return (
                spec is not None
                and len(tuple(spec.shape)) == 3
                and int(spec.shape[-1] or 0) == len(CAFFE_MEAN)
            )
        if name in ("undo-normalization", "undo-rescaling"):
            return rt.get("input") in facts.input_normalizers
        return name in RESCALINGS or name == "standardise"
    if finding_id == "batchnorm-statistics":
        return bool(facts.batchnorms)
    if finding_id == "single-unit-softmax":
        return bool(evidence.get("rescued"))
    return False


def build(
    lm: Any, facts: Any, xs: list[np.ndarray], fit: np.ndarray, finding: Finding, seed: int
) -> tuple[Any, str, Surgery]:
    """The repaired copy of lm's model, fitted on the `fit` rows of xs (CannotRepair when
    this model cannot be edited for this cause)."""
    from kerasdoctor.fix.repair import (
        BN_BATCH,
        CannotRepair,
        prepend_transforms,
        reestimate_batchnorm,
        sigmoid_head,
    )

    if lm.keras_model is None:
        raise CannotRepair(f"MODEL {lm.path} has no Keras layers to edit")
    if finding.id == "preprocessing-mismatch":
        rt = finding.evidence.get("restoring_transform")
        if not rt:
            raise CannotRepair(
                "the diagnosis names no transform of the data that restores "
                "the model: prepare the data as in training"
            )
        model, what, details = prepend_transforms(
            lm, facts, xs, fit, {rt["input"]: rt["transform"]}
        )
        return model, what, replace(details, code=rt.get("code"))
    if finding.id == "batchnorm-statistics":
        row = sum(int(np.prod(a.shape[1:], dtype=np.int64)) * 4 for a in xs)
        batch = max(1, min(BN_BATCH, BN_BATCH_BYTES // max(row, 1)))
        return reestimate_batchnorm(lm, facts, xs, fit, seed, batch)
    if finding.id == "single-unit-softmax":
        return sigmoid_head(lm)
    raise CannotRepair(f"{finding.id} is not a model-level cause")


def _reload(path: str, lm: Any) -> Any:
    """The file as a user loads it: plain Keras, safe mode (load.load_model)."""
    from kerasdoctor.load import load_model

    several = lm.keras_model is not None and len(lm.keras_model.outputs) > 1
    return load_model(path, output_name=lm.output_name if several else None)


def _not_restored(what: str, figures: str, cause: str) -> str:
    return (
        f"on the held-out {what} the repaired model, reloaded, gives {figures}: not a "
        f"gain beyond noise, nothing written. Instead: {ADVICE.get(cause, 'retrain')}"
    )


# ------------------------------------------------------------------ dense


def repair_dense(
    dd: Any, finding: Finding, output: Path, seed: int, result: RepairResult
) -> RepairResult:
    """per_position.repair's `result` for a model-level cause of a dense model."""
    from kerasdoctor.dense import split_samples
    from kerasdoctor.fix.per_position import (
        _instead,
        _majority,
        _rediagnose,
        _run,
        _summary,
        _Tally,
        judged,
    )
    from kerasdoctor.fix.repair import CannotRepair, _saved

    n = dd.idx.shape[0]
    fit, test = split_samples(n, seed)
    one = dd.k_out == 1
    m = _majority(dd)
    result = replace(result, rule=DENSE_RULE, split=SPLIT["dense"])

    def tally(rule: str, t: Any) -> Any:
        def on(sel: np.ndarray, p: np.ndarray, yb: np.ndarray, cb: np.ndarray) -> None:
            pred = (p[..., 1] > 0.5).astype(np.int64) if one else np.argmax(p, axis=-1)
            t.add(rule, sel, pred, yb, cb)

        return on

    before = _Tally(test, dd.k, ("before",))
    _run(dd, test, tally("before", before))
    result = replace(result, before=_summary(before.counts["before"], dd.names, m))
    try:
        model, what, details = build(dd.lm, dd.facts, dd.xs, fit, finding, seed)
    except CannotRepair as exc:
        return replace(result, why=str(exc), instead=_instead(finding))
    result = replace(result, repair=what, details=RepairDetails(surgery=details))
    with _saved(model, output) as tmp:
        lm2 = _reload(tmp, dd.lm)
        after = _Tally(test, dd.k, ("after",))
        _run(dd, test, tally("after", after), lm=lm2)
        summary = _summary(after.counts["after"], dd.names, m)
        result = judged(result, before.counts["before"], after.counts["after"], seed, lm2)
        verdict = result.verdict
        assert verdict is not None
        if not result.standard_layers_only:
            return result
        if not verdict.validated:
            figures = (
                f"balanced accuracy over positions {verdict.balanced_accuracy_before:.3f}"
                f" → {verdict.balanced_accuracy_after:.3f} (noise "
                f"±{verdict.noise:.3f}) and mean IoU {verdict.mean_iou_before:.3f}"
                f" → {verdict.mean_iou_after:.3f} (noise "
                f"±{verdict.mean_iou_noise:.3f})"
            )
            return replace(
                result,
                details=replace(result.details, tried=summary),
                why=_not_restored("samples", figures, finding.id),
                instead=_instead(finding),
            )
        result = replace(result, after=summary, diagnosis_after=_rediagnose(tmp, dd, test, seed))
        os.replace(tmp, output)
    return replace(result, repaired=True, output=str(output))


# ------------------------------------------------------------------ multi-label


def macro_noise(y: np.ndarray, before: np.ndarray, after: np.ndarray, seed: int) -> float:
    """Two standard errors of the paired difference in macro balanced accuracy (labels with
    both values present), over a bootstrap of the rows (the same resamples for both)."""
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)
    yb = y.astype(bool)

    def macro(pred: np.ndarray) -> np.ndarray:
        pb = pred.astype(bool)
        tp, fn = w @ (yb & pb), w @ (yb & ~pb)
        tn, fp = w @ (~yb & ~pb), w @ (~yb & pb)
        with np.errstate(invalid="ignore", divide="ignore"):
            ba = (tp / (tp + fn) + tn / (tn + fp)) / 2  # (B, K); NaN: a value absent
        out: np.ndarray = np.nanmean(ba, axis=1)
        return out

    with np.errstate(invalid="ignore"):
        return 2.0 * float(np.nanstd(macro(after) - macro(before)))


def repair_multilabel(
    ld: Any, report: Report, finding: Finding, output: Path, seed: int, result: RepairResult
) -> RepairResult:
    """per_label.repair's `result` for a model-level cause of a multi-label model."""
    from kerasdoctor.fix.per_label import _instead, _rediagnose, _summary, scores
    from kerasdoctor.fix.repair import CannotRepair, _saved, _standard
    from kerasdoctor.multilabel import DECISION, split_halves

    y, k = ld.y, ld.y.shape[1]
    fit, test = split_halves(y, seed)
    result = replace(result, rule=MULTI_RULE, split=SPLIT["multilabel"])
    cut = [DECISION] * k
    probs, logits = scores(ld, test)
    base = (probs > DECISION).astype(np.int8)
    before = _summary(y[test], base, ld.names, cut)
    result = replace(result, before=before)
    try:
        model, what, details = build(ld.lm, ld.facts, ld.xs, fit, finding, seed)
    except CannotRepair as exc:
        return replace(result, why=str(exc), instead=_instead(finding, report))
    result = replace(result, repair=what, details=RepairDetails(surgery=details))
    with _saved(model, output) as tmp:
        lm2 = _reload(tmp, ld.lm)
        # read as the original was, except a head the repair changed (softmax -> sigmoid)
        p2, _ = scores(
            ld, test, lm=lm2, logits=None if finding.id == "single-unit-softmax" else logits
        )
        pred = (p2 > DECISION).astype(np.int8)
        summary = _summary(y[test], pred, ld.names, cut)
        b, a = before.balanced_accuracy, summary.balanced_accuracy
        gain = None if a is None or b is None else float(a - b)
        noise = macro_noise(y[test], base, pred, seed)
        labels = tuple(
            LabelRow(
                label=j,
                name=ld.names[j],
                threshold=DECISION,
                validated=False,
                note=None,
                before=bp,
                after=ap,
                cut=False,
            )
            for j, (bp, ap) in enumerate(zip(before.per_class, summary.per_class))
        )
        standard = _standard(lm2.keras_model)
        result = replace(
            result,
            gain=gain,
            required_gain=max(noise, MIN_GAIN),
            details=replace(result.details, labels=labels),
            standard_layers_only=standard,
        )
        if not standard:
            return replace(result, why="the repaired model holds non-standard layers: not written")
        if gain is None or not gain > max(noise, MIN_GAIN):
            figures = (
                "no macro balanced accuracy (no label has both values)"
                if gain is None
                else f"macro balanced accuracy {b:.3f} → {a:.3f} (noise ±{noise:.3f}, "
                f"and {MIN_GAIN} at least)"
            )
            return replace(
                result,
                details=replace(result.details, tried=summary),
                why=_not_restored("half", figures, finding.id),
                instead=_instead(finding, report),
            )
        result = replace(result, after=summary, diagnosis_after=_rediagnose(tmp, ld, test))
        os.replace(tmp, output)
    return replace(result, repaired=True, output=str(output))
