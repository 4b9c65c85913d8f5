"""low-recall: classes whose recall is far below the others'."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    SINGLE_LABEL,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
    names_list,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="low-recall",
    kind=Kind.SYMPTOM,
    summary="Classes whose recall is far below the others'.",
    measures=(
        "Each class's recall, judged with its uncertainty: with h of its n samples right, the "
        "one-sided upper confidence bound U of its recall (Clopper-Pearson, at confidence) is "
        "compared with the median recall m of the other classes. A class is flagged when even "
        "U is low: U <= max_ratio * m and m - U >= min_gap, so 0 of 6 right is a finding (U "
        "39%) while 1 of 3 is not. A class whose recall looks low but so small that even 0 "
        "right could not be flagged is listed as not judged, with its count (info), never "
        "skipped in silence; so is one below min_support samples. Classes never predicted at "
        "all are reported by "
        "missing-classes instead."
    ),
    fix=(
        "A symptom: look at the confusion matrix row of the class and at the causes listed "
        "with it; a class confused with a similar one needs more or better data, one lost "
        "to a common class may be imbalance (its finding carries the class weights). A class "
        "too small to judge needs more labelled samples before its recall means anything."
    ),
    thresholds={
        "max_ratio": Threshold(0.5, "recall at most half of the others' median"),
        "min_gap": Threshold(0.3, "and at least 30 points below it: small gaps are normal"),
        "confidence": Threshold(
            0.95,
            "the recall's upper bound holds at 95%: a flagged class is low with 95% "
            "confidence, whatever its size, instead of a fixed minimum count",
        ),
        "min_support": Threshold(
            1, "classes with fewer samples are listed as not judged (1: every class is judged)"
        ),
    },
    fires_on=("scn_resnet_raw",),
    order=30,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def recall_upper_bound(hits: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial proportion hits / n."""
    if n <= 0:
        return 1.0
    if hits >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, hits + 1, n - hits))


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.metrics import recall_vector

    ev = ctx.evidence
    conf = ev.confusion
    support = ev.label_counts
    predicted = ev.predicted_counts
    recall = recall_vector(conf)
    present = np.flatnonzero(support > 0)
    if present.size < 2:
        raise NotApplicable("fewer than two classes in the labels")
    ratio = ctx.threshold(SPEC, "max_ratio")
    gap = ctx.threshold(SPEC, "min_gap")
    confidence = ctx.threshold(SPEC, "confidence")
    min_support = ctx.threshold(SPEC, "min_support")
    flagged: list[dict[str, Any]] = []
    not_judged: list[dict[str, Any]] = []
    for k in present:
        if predicted[k] == 0:
            continue  # missing-classes
        n, hits = int(support[k]), int(conf[k, k])
        others = recall[[j for j in present if j != k]]
        m = float(np.median(others))
        r = float(recall[k])
        upper = recall_upper_bound(hits, n, confidence)
        row = {
            "class": int(k),
            "name": ctx.class_names[k] if k < len(ctx.class_names) else str(k),
            "recall": r,
            "correct": hits,
            "support": n,
            "recall_upper_bound": upper,
            "others_median_recall": m,
        }
        # even none right would not be low with confidence: the class cannot be judged
        floor = recall_upper_bound(0, n, confidence)
        if n < min_support or floor > ratio * m or m - floor < gap:
            if r <= ratio * m:  # only worth saying where the point estimate looks low
                not_judged.append(row)
            continue
        if upper <= ratio * m and m - upper >= gap:
            errs = conf[k].copy()
            errs[k] = 0
            flagged.append({**row, "mostly_predicted_as": int(np.argmax(errs))})
    if not flagged and not not_judged:
        return []
    evidence: dict[str, Any] = {
        "classes": flagged,
        "not_judged": not_judged,
        "confidence": confidence,
    }
    unjudged = "; ".join(
        f"class {ctx.cls(c['class'])}: {c['correct']} of {c['support']} right" for c in not_judged
    )
    if not flagged:
        return [
            finding(
                SPEC,
                Severity.INFO,
                "Too few samples to judge the recall of "
                + names_list(ctx, [c["class"] for c in not_judged]),
                f"{unjudged}. With so few samples even none right would be consistent with a "
                f"recall near the others' ({not_judged[0]['others_median_recall']:.0%}) at "
                f"{confidence:.0%} confidence: these classes are not judged, not passed. They "
                "need more labelled samples.",
                evidence,
            )
        ]
    first = flagged[0]
    detail = "; ".join(
        f"class {ctx.cls(f['class'])}: recall {f['recall']:.0%} ({f['correct']} of "
        f"{f['support']}; at most {f['recall_upper_bound']:.0%} at {confidence:.0%} confidence) "
        f"vs {f['others_median_recall']:.0%} for the others, mostly predicted as "
        f"{ctx.cls(f['mostly_predicted_as'])}"
        for f in flagged[:6]
    )
    if not_judged:
        detail += f". Not judged (too few samples): {unjudged}"
    return [
        finding(
            SPEC,
            Severity.WARNING,
            f"Recall of {names_list(ctx, [f['class'] for f in flagged])} is far below the "
            f"other classes' ({first['recall']:.0%} vs {first['others_median_recall']:.0%})",
            detail + ".",
            evidence,
            [Fix("See the causes below: the first one is the most likely root cause")],
        )
    ]
