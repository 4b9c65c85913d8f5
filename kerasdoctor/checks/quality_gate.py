"""quality-gate: the user's own bar (--min-recall, --min-balanced-accuracy) is not met."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    ALL_TASKS,
    CheckSpec,
    Context,
    NotApplicable,
    finding,
    names_list,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# The gate names, as in the command line (--min-recall) and [tool.kerasdoctor] (min_recall).
MIN_RECALL = "min_recall"
MIN_BALANCED_ACCURACY = "min_balanced_accuracy"

SPEC = CheckSpec(
    id="quality-gate",
    kind=Kind.SYMPTOM,
    summary="A quality gate set by the user (--min-recall, --min-balanced-accuracy) is not met.",
    measures=(
        "Only runs when a gate is set, on the command line or in [tool.kerasdoctor]. "
        "min_recall R: every class present in the labels must have recall >= R (a class "
        "never predicted has recall 0). min_balanced_accuracy B: the mean of the per-class "
        "recalls must be >= B. The bar is the user's, so a breach is always an error: the "
        "model does not meet the release criterion the pipeline declared."
    ),
    fix=(
        "Fix the root cause the report names (the classes that fall short are usually the "
        "rare ones: class weights or resampling), retrain, and run the gate again. Lower a "
        "gate only when it is stricter than the task needs."
    ),
    fires_on=("healthy_imbalanced", "--min-recall", "0.99"),
    order=210,
    tasks=ALL_TASKS,
    task_order=40,
)


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.metrics import recall_vector

    min_recall = ctx.gates.get(MIN_RECALL)
    min_bacc = ctx.gates.get(MIN_BALANCED_ACCURACY)
    if min_recall is None and min_bacc is None:
        raise NotApplicable("no gate set (min_recall, min_balanced_accuracy)")
    conf = ctx.evidence.confusion
    support = ctx.evidence.label_counts
    recall = recall_vector(conf)
    present = np.flatnonzero(support > 0)
    if present.size == 0:
        return []
    evidence: dict[str, Any] = {}
    parts: list[str] = []
    titles: list[str] = []
    below: list[int] = []
    if min_recall is not None:
        below = [int(k) for k in present if recall[k] < min_recall]
        if below:
            rows = sorted(below, key=lambda k: (float(recall[k]), k))
            evidence["min_recall"] = float(min_recall)
            evidence["classes"] = [
                {
                    "class": k,
                    "name": ctx.class_names[k] if k < len(ctx.class_names) else str(k),
                    "recall": float(recall[k]),
                    "support": int(support[k]),
                    "correct": int(conf[k, k]),
                }
                for k in rows
            ]
            evidence["n_below"] = len(below)
            titles.append(f"recall below {_pct(min_recall)} for {names_list(ctx, rows, limit=5)}")
            parts.append(
                "; ".join(
                    f"class {ctx.cls(k)}: recall {recall[k]:.1%} "
                    f"({int(conf[k, k])} of {int(support[k])})"
                    for k in rows[:8]
                )
                + (f"; and {len(rows) - 8} more" if len(rows) > 8 else "")
            )
    if min_bacc is not None:
        bacc = float(np.mean(recall[present]))
        if bacc < min_bacc:
            evidence["min_balanced_accuracy"] = float(min_bacc)
            evidence["balanced_accuracy"] = bacc
            titles.append(f"balanced accuracy {bacc:.1%} below {_pct(min_bacc)}")
            parts.append(
                f"balanced accuracy (mean per-class recall over {present.size} classes) is "
                f"{bacc:.1%}, the gate asks for {min_bacc:.1%}"
            )
    if not titles:
        return []
    title = "Quality gate failed: " + "; ".join(titles)
    detail = (
        "; ".join(parts)
        + ". The model does not meet the bar this pipeline set for it, whatever its accuracy."
    )
    fixes = []
    fixes.append(
        Fix(
            "Fix the most likely cause this report names, retrain, and re-run the gate; lower "
            "min_recall / min_balanced_accuracy in [tool.kerasdoctor] only if the bar is "
            "stricter than the task needs"
        )
    )
    return [finding(SPEC, Severity.ERROR, title, detail, evidence, fixes)]


def _pct(v: float) -> str:
    """A gate as the user wrote it: 0.9 -> '90%', 0.925 -> '92.5%'."""
    return f"{v * 100:.4g}%"
