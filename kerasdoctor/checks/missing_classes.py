"""missing-classes: classes present in the labels that the model never predicts."""

from __future__ import annotations

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    ALL_TASKS,
    CheckSpec,
    Context,
    Threshold,
    finding,
    names_list,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="missing-classes",
    kind=Kind.SYMPTOM,
    summary="Classes present in the labels that the model never predicts.",
    measures=(
        "For each class with at least one label, the number of samples predicted as that "
        "class. A class with support but zero predictions is missing. It is an error when a "
        "missing class has at least min_support samples, a warning below that."
    ),
    fix=(
        "A symptom: the causes listed with it say why the classes are dropped, and each "
        "carries its own remedy (class weights only where imbalance is the cause)."
    ),
    thresholds={
        "min_support": Threshold(
            5,
            "a class the model recognises half the time would be predicted at least once in "
            "5 samples with probability 1 - 0.5^5 = 97%; with fewer, missing may be chance",
        ),
    },
    fires_on=("collapsed",),
    order=20,
    tasks=ALL_TASKS,
    task_order=20,
    every_epoch=ALL_TASKS,
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    support = ev.label_counts
    predicted = ev.predicted_counts
    missing = np.flatnonzero((support > 0) & (predicted == 0))
    if missing.size == 0:
        return []
    n = ev.n_samples
    min_support = ctx.threshold(SPEC, "min_support")
    severe = bool((support[missing] >= min_support).any())
    share = float(support[missing].sum() / n)
    classes = [
        {
            "class": int(k),
            "name": ctx.class_names[k] if k < len(ctx.class_names) else str(k),
            "support": int(support[k]),
            "label_share": float(support[k] / n),
        }
        for k in missing
    ]
    parts = "; ".join(
        f"class {ctx.cls(int(k))}: 0 of {int(support[k])} predicted ({support[k] / n:.1%} of "
        "the labels)"
        for k in missing[:6]
    )
    return [
        finding(
            SPEC,
            Severity.ERROR if severe else Severity.WARNING,
            f"{missing.size} of {int((support > 0).sum())} classes are never predicted: "
            f"{names_list(ctx, list(missing))}",
            f"{parts}. Together they are {share:.1%} of the data; every one of those samples "
            "is misclassified.",
            {"missing": classes, "n_missing": int(missing.size), "missing_share": share},
            [Fix("See the causes below: the first one is the most likely root cause")],
        )
    ]
