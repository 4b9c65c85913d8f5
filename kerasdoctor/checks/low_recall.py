"""low-recall: classes whose recall is far below the others'."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasdoctor.checks.base import CheckSpec, Context, Threshold, finding, names_list
from kerasdoctor.findings import Finding, Fix, Kind, Severity
from kerasdoctor.metrics import recall_vector

SPEC = CheckSpec(
    id="low-recall",
    kind=Kind.SYMPTOM,
    summary="Classes whose recall is far below the others'.",
    measures=(
        "Each class's recall r against the median recall m of the other classes. A class is "
        "flagged when r <= max_ratio * m and m - r >= min_gap, with at least min_support "
        "samples so the recall is not noise. Classes never predicted at all are reported by "
        "missing-classes instead."
    ),
    fix=(
        "A symptom: look at the confusion matrix row of the class and at the causes listed "
        "with it; a class confused with a similar one needs more or better data, one lost "
        "to a common class may be imbalance (its finding carries the class weights)."
    ),
    thresholds={
        "max_ratio": Threshold(0.5, "recall at most half of the others' median"),
        "min_gap": Threshold(0.3, "and at least 30 points below it: small gaps are normal"),
        "min_support": Threshold(
            10, "below 10 samples one error moves recall by 10 points or more: too noisy"
        ),
    },
    fires_on=('scn_resnet_raw',),
    order=30,
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    conf = ev.confusion
    support = ev.label_counts
    predicted = ev.predicted_counts
    recall = recall_vector(conf)
    present = np.flatnonzero(support > 0)
    if present.size < 2:
        return []
    ratio = ctx.threshold(SPEC, "max_ratio")
    gap = ctx.threshold(SPEC, "min_gap")
    min_support = ctx.threshold(SPEC, "min_support")
    flagged: list[dict[str, Any]] = []
    for k in present:
        if predicted[k] == 0 or support[k] < min_support:
            continue
        others = recall[[j for j in present if j != k]]
        m = float(np.median(others))
        r = float(recall[k])
        if r <= ratio * m and m - r >= gap:
            row = conf[k].copy()
            row[k] = 0
            confused = int(np.argmax(row))
            flagged.append(
                {
                    "class": int(k),
                    "name": ctx.class_names[k] if k < len(ctx.class_names) else str(k),
                    "recall": r,
                    "others_median_recall": m,
                    "support": int(support[k]),
                    "mostly_predicted_as": confused,
                }
            )
    if not flagged:
        return []
    first = flagged[0]
    detail = "; ".join(
        f"class {ctx.cls(f['class'])}: recall {f['recall']:.0%} vs {f['others_median_recall']:.0%} "
        f"for the others, mostly predicted as {ctx.cls(f['mostly_predicted_as'])}"
        for f in flagged[:6]
    )
    return [
        finding(
            SPEC,
            Severity.WARNING,
            f"Recall of {names_list(ctx, [f['class'] for f in flagged])} is far below the "
            f"other classes' ({first['recall']:.0%} vs {first['others_median_recall']:.0%})",
            detail + ".",
            {"classes": flagged},
            [Fix("See the causes below: the first one is the most likely root cause")],
        )
    ]
