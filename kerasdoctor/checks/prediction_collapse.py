"""prediction-collapse: nearly all predictions go to one class while the labels hold several."""

from __future__ import annotations

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import ALL_TASKS, CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="prediction-collapse",
    kind=Kind.SYMPTOM,
    summary="Nearly all predictions go to one class while the labels hold several.",
    measures=(
        "The share p of predictions that go to the most-predicted class c, against that "
        "class's share q of the labels. It fires when p >= dominant_share and the other "
        "classes together receive at most max_other_ratio of the predictions their labels "
        "call for: (1 - p) <= max_other_ratio * (1 - q). The second rule keeps a model quiet "
        "on data that really is 95% one class, as long as it still predicts the others."
    ),
    fix=(
        "Collapse is a symptom: follow the first cause listed (imbalance, unscaled inputs, "
        "BatchNorm statistics, a broken head, no signal in the data...), whose fix it carries."
    ),
    thresholds={
        "dominant_share": Threshold(0.90, "'nearly all' predictions in one class"),
        "max_other_ratio": Threshold(
            0.5, "the other classes get at most half the predictions their labels call for"
        ),
    },
    fires_on=("collapsed",),
    order=10,
    tasks=ALL_TASKS,
    task_order=10,
    every_epoch=ALL_TASKS,
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    support = ev.label_counts
    predicted = ev.predicted_counts
    n = ev.n_samples
    if n == 0 or int((support > 0).sum()) < 2:
        return []
    c = int(np.argmax(predicted))
    p = predicted[c] / n
    q = support[c] / n
    if p < ctx.threshold(SPEC, "dominant_share"):
        return []
    if (1 - p) > ctx.threshold(SPEC, "max_other_ratio") * (1 - q):
        return []
    n_label_classes = int((support > 0).sum())
    n_pred_classes = int((predicted > 0).sum())
    # a symptom carries no remedy of its own: the cause that explains it does
    fixes = [Fix("See the causes below: the first one is the most likely root cause")]
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"{p:.1%} of predictions are class {ctx.cls(c)}, which is {q:.1%} of the labels",
            f"The labels hold {n_label_classes} classes but the model puts {int(predicted[c])} "
            f"of {n} samples in class {ctx.cls(c)} and predicts only {n_pred_classes} "
            "class(es) at all: its accuracy is close to always answering one class.",
            {
                "dominant_class": c,
                "dominant_name": ctx.class_names[c] if c < len(ctx.class_names) else str(c),
                "predicted_share": float(p),
                "label_share": float(q),
                "n_label_classes": n_label_classes,
                "n_predicted_classes": n_pred_classes,
            },
            fixes,
        )
    ]
