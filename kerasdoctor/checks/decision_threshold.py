"""decision-threshold: a binary model that ranks well but cuts at 0.5 in the wrong place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    ALL_TASKS,
    DENSE,
    MULTILABEL,
    PREDICTIONS,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult

SPEC = CheckSpec(
    id="decision-threshold",
    kind=Kind.CAUSE,
    summary=(
        "Binary model that ranks well (high AUC) but whose 0.5 threshold puts (nearly) "
        "everything on one side."
    ),
    measures=(
        "For a binary model (one sigmoid/logit unit, or two softmax units) with at least "
        "min_class_samples samples of each class, the single pass "
        "keeps P(class 1) of every sample. The ROC AUC (rank-based: the chance that a random "
        "positive scores above a random negative) says whether the scores separate the "
        "classes at all; the predictions at the 0.5 cut say whether the cut is in the right "
        "place. It fires when AUC >= min_auc, one class receives at most max_predicted_ratio "
        "of the predictions its labels call for, and the threshold that maximises balanced "
        "accuracy (Youden's J on the ROC curve) gains at least min_gain over 0.5. This is what "
        "imbalanced training does to a well-ranking model: the posterior of a rare class "
        "seldom exceeds 0.5. Error when the starved class's recall at 0.5 is below one half, "
        "a warning otherwise. The cut is then validated as a cure: chosen on one seeded, "
        "stratified half of the rows and scored on the other, it must still gain min_gain "
        "there (evidence.experiment). Never on a near-constant output (the constant-output "
        "symptom): a cut between scores that differ in the ninth decimal is an accident of "
        "rounding, not a threshold."
    ),
    fix=(
        "Move the decision threshold (kerasdoctor fix --threshold MODEL DATA finds it on "
        "validation data), or retrain with class weights so 0.5 lands in the right place."
    ),
    thresholds={
        "min_auc": Threshold(
            0.8,
            "AUC 0.8 is the conventional bar for good discrimination (Hosmer & Lemeshow): "
            "below it no threshold separates the classes well, so the cut is not the problem",
        ),
        "max_predicted_ratio": Threshold(
            0.5,
            "the starved class gets at most half the predictions its labels call for (the "
            "prediction-collapse bar)",
        ),
        "min_gain": Threshold(
            0.1,
            "the best cut must win 10 points of balanced accuracy: far more than choosing a "
            "cut on the same data gains by chance",
        ),
        "min_class_samples": Threshold(
            10,
            "with fewer samples of a class one sample moves its recall by more than 10 points",
        ),
    },
    fires_on=("model_threshold",),
    repair=(
        "move the chosen cut into the output layer as a bias shift on the logit, so 0.5 on the "
        "output is the new cut"
    ),
    order=170,
    tasks=ALL_TASKS,
    task_order=60,
    explains=frozenset({PREDICTIONS}),
    subsumes=frozenset({"class-imbalance"}),
    tier=6,
    needs=frozenset({"symptoms", "experiments"}),
    every_epoch=frozenset({DENSE, MULTILABEL}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    scores = ev.scores
    if scores is None or ev.y_true.max(initial=0) > 1:
        raise NotApplicable("not a binary model: no single cut decides the class")
    if ev.n_samples == 0 or "constant-output" in ctx.symptoms:
        return []
    units = ctx.facts.n_outputs
    if units == 2 and ev.output.head_used not in ("softmax", "linear"):
        # two independent sigmoids: 0.5 on one of them is not the decision rule
        raise NotApplicable("two independent sigmoid units: no single decision cut")
    y = ev.y_true
    support = np.bincount(y, minlength=2)[:2]
    if support.min() < ctx.threshold(SPEC, "min_class_samples"):
        return []
    ok = np.isfinite(scores)
    if ok.sum() < ev.n_samples * 0.99:
        return []  # non-finite outputs are another finding's business
    s = scores[ok].astype(np.float64)
    yy = y[ok]
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(yy, s))
    if auc < ctx.threshold(SPEC, "min_auc"):
        return []
    pred = ev.y_pred[ok]
    predicted = np.bincount(pred, minlength=2)[:2]
    ratio = predicted / np.maximum(support, 1)
    starved = int(np.argmin(ratio))
    if ratio[starved] > ctx.threshold(SPEC, "max_predicted_ratio"):
        return []
    fpr, tpr, thr = roc_curve(yy, s)
    j = tpr - fpr
    best = int(np.argmax(j))
    t = float(min(thr[best], 1.0))  # roc_curve's first threshold is +inf
    rec_now = _recalls(yy, pred)
    bacc_now = float(rec_now.mean())
    pred_best = (s >= t).astype(np.int64)
    rec_best = _recalls(yy, pred_best)
    bacc_best = float(rec_best.mean())
    if bacc_best - bacc_now < ctx.threshold(SPEC, "min_gain"):
        return []
    held_out = _split_half(ctx, yy, s, pred)
    if held_out is not None and held_out.gain < ctx.threshold(SPEC, "min_gain"):
        return []  # the cut does not carry over to rows it was not chosen on
    pred_best_counts = np.bincount(pred_best, minlength=2)[:2]
    severity = Severity.ERROR if rec_now[starved] < 0.5 else Severity.WARNING
    evidence: dict[str, Any] = {
        "auc": auc,
        "threshold": t,
        "balanced_accuracy_at_0_5": bacc_now,
        "balanced_accuracy_at_threshold": bacc_best,
        "starved_class": starved,
        "favoured_class": 1 - starved,
        "predicted_at_0_5": predicted.tolist(),
        "predicted_at_threshold": pred_best_counts.tolist(),
        "label_counts": support.tolist(),
        "recall_at_0_5": rec_now.tolist(),
        "recall_at_threshold": rec_best.tolist(),
        "score_of": "P(class 1)" + (" = softmax unit 1" if units == 2 else ""),
    }
    if held_out is not None:
        evidence["experiment"] = held_out.to_dict()
        evidence["cured"] = True
    other = 1 - starved
    title = (
        f"The model ranks well (AUC {auc:.2f}) but at 0.5 only {int(predicted[starved])} of "
        f"{int(support[starved])} class {ctx.cls(starved)} samples are predicted as such; "
        f"threshold {t:.3g} gives balanced accuracy {bacc_best:.1%}"
    )
    detail = (
        f"A random class-1 sample outscores a random class-0 sample {auc:.0%} of the time, "
        f"so the scores separate the classes, but the 0.5 cut sends "
        f"{int(predicted[other])} of {int(ok.sum())} samples to class {ctx.cls(other)}: "
        f"recall of class {ctx.cls(starved)} is {rec_now[starved]:.0%}, balanced accuracy "
        f"{bacc_now:.1%}. Cutting P(class 1) at {t:.3g} instead predicts "
        f"{pred_best_counts.tolist()} (labels {support.tolist()}), recalls "
        f"{rec_best[0]:.0%} / {rec_best[1]:.0%}, balanced accuracy {bacc_best:.1%}. "
        + (
            f"Chosen on one half of the rows, the cut gives {held_out.after:.1%} on the other "
            f"half ({held_out.before:.1%} at 0.5). "
            if held_out is not None and held_out.after is not None
            else ""
        )
        + (
            "This is typical of imbalanced training: the posterior of the rarer class "
            f"({ctx.cls(starved)}, {support[starved]} of {int(support.sum())} labels) seldom "
            "exceeds 0.5."
            if support[starved] < support[other]
            else f"The starved class {ctx.cls(starved)} is the larger one here, so the prior does "
            "not explain the shift: the scores are offset (a calibration or preprocessing "
            "change between training and these data)."
        )
    )
    column = "[:, 0]" if units == 1 else "[:, 1]"
    if ev.output.head_used == "linear":  # logits: squash as the probe did
        squash = "sigmoid" if units == 1 else "softmax"
        predict = f"np.asarray(keras.ops.{squash}(model.predict(x))){column}"
    else:
        predict = f"model.predict(x){column}"
    return [
        finding(
            SPEC,
            severity,
            title,
            detail,
            evidence,
            [  # the threshold cures what the experiment showed; class weights are the
                # imbalance finding's remedy, not this one's
                repair_fix(ctx, SPEC),
                Fix(
                    "Find the threshold on validation data and use it instead of 0.5",
                    command=f"kerasdoctor fix --threshold {ctx.model_path} {ctx.data_args}",
                ),
                Fix(
                    f"Apply the threshold when predicting (value chosen on this data: {t:.3g})",
                    code=(f"p = {predict}  # P(class 1)\ny_pred = (p >= {t:.4g}).astype(int)"),
                ),
            ],
        )
    ]


def _split_half(
    ctx: Context, y: np.ndarray, s: np.ndarray, pred: np.ndarray
) -> ExperimentResult | None:
    """The Youden cut chosen on one seeded, stratified half, scored on the other."""
    from sklearn.metrics import roc_curve

    from kerasdoctor.experiments import ExperimentResult, split_halves

    a, b = split_halves(y, ctx.experiments.seed if ctx.experiments else 0)
    if np.unique(y[a]).size < 2 or np.unique(y[b]).size < 2:
        return None
    fpr, tpr, thr = roc_curve(y[a], s[a])
    t = float(min(thr[int(np.argmax(tpr - fpr))], 1.0))
    after = (s[b] >= t).astype(np.int64)
    res = ExperimentResult(
        "decision-threshold",
        f"cutting P(class 1) at {t:.3g} instead of 0.5",
        float(_recalls(y[b], pred[b]).mean()),
        float(_recalls(y[b], after).mean()),
        int(b.size),
        validated="cut chosen on one seeded half, scored on the other",
        predicted_counts=tuple(np.bincount(after, minlength=2)[:2].tolist()),
        recall_after=tuple(_recalls(y[b], after).tolist()),
    )
    if ctx.experiments is not None:
        ctx.experiments.record(res)
    return res


def _recalls(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = np.zeros(2)
    for c in (0, 1):
        m = y == c
        out[c] = float((pred[m] == c).mean()) if m.any() else float("nan")
    return out
