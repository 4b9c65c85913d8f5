"""sorted-labels: the dataset is ordered by class (a validation_split trap)."""

from __future__ import annotations

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import CheckSpec, Context, Threshold, finding, names_list
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# Keras' validation_split is usually 0.1 or 0.2; the larger tail is the one shown.
VALIDATION_SPLIT = 0.2

SPEC = CheckSpec(
    id="sorted-labels",
    kind=Kind.CAUSE,
    summary="The dataset is ordered by class (a validation_split trap).",
    measures=(
        "The number of label runs R in file order (1 + the number of positions where the "
        "label changes) against its expectation if the rows were in random order: "
        "E[R] = 1 + (N - 1)(1 - sum_k n_k(n_k - 1) / (N(N - 1))). A file sorted by class has "
        "R = K. It fires when R <= max_runs_ratio x E[R] on at least min_samples rows with two "
        "or more classes. Always info: model.fit(validation_split=v) takes the LAST fraction v "
        "of the arrays before shuffling, so on such a file the validation set holds only the "
        "last classes (and those classes may never be trained on); the evidence shows what "
        f"the last {VALIDATION_SPLIT:.0%} holds."
    ),
    fix=(
        "Shuffle the rows once before fit (x, y = x[p], y[p] with p a random permutation), or "
        "split with sklearn's train_test_split(..., stratify=y) and pass validation_data."
    ),
    thresholds={
        "max_runs_ratio": Threshold(
            0.5,
            "runs twice as long as chance. In random order R is close to E[R]: for two "
            "balanced classes its std is about sqrt(N)/2, so at N = 50 a ratio of 0.5 is "
            "already 3.7 standard deviations below chance and further below for larger N",
        ),
        "min_samples": Threshold(
            50, "below 50 rows run counts are too noisy to call an ordering (see above)"
        ),
    },
    fires_on=("data_sorted",),
    order=190,
    explains=frozenset({"low-recall", "missing-classes", "prediction-collapse"}),
    tier=8,
)


def expected_runs(counts: np.ndarray) -> float:
    """E[number of runs] of a uniformly random order of a multiset with these counts."""
    n = int(counts.sum())
    if n < 2:
        return float(n)
    same = float((counts * (counts - 1)).sum()) / (n * (n - 1))
    return 1.0 + (n - 1) * (1.0 - same)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    y = np.asarray(ev.y_true)
    n = int(y.shape[0])
    k = int(ev.n_classes)
    counts = np.bincount(y, minlength=k)
    present = np.flatnonzero(counts)
    if n < ctx.threshold(SPEC, "min_samples") or present.size < 2:
        return []
    runs = 1 + int(np.count_nonzero(y[1:] != y[:-1]))
    expected = expected_runs(counts)
    ratio = runs / expected
    if ratio > ctx.threshold(SPEC, "max_runs_ratio"):
        return []
    cut = n - int(round(n * VALIDATION_SPLIT))
    tail = np.bincount(y[cut:], minlength=k)
    head = np.bincount(y[:cut], minlength=k)
    tail_classes = [int(c) for c in np.flatnonzero(tail)]
    never_trained = [int(c) for c in present if head[c] == 0]
    tv = 0.5 * float(np.abs(tail / max(tail.sum(), 1) - counts / n).sum())
    detail = (
        f"The labels change only {runs - 1} times in {n} rows ({runs} runs; a random order "
        f"would give about {expected:.0f}). model.fit(validation_split={VALIDATION_SPLIT}) "
        f"would validate on the last {n - cut} rows, which hold class(es) "
        f"{names_list(ctx, tail_classes)}"
    )
    if never_trained:
        detail += f"; class(es) {names_list(ctx, never_trained)} would never be trained on"
    detail += (
        ". fit's shuffle=True shuffles only the training part after the split. Not a problem "
        "if this file is never split that way."
    )
    return [
        finding(
            SPEC,
            Severity.INFO,
            f"The rows are ordered by class: {runs} label runs where random order gives "
            f"~{expected:.0f}",
            detail,
            {
                "runs": runs,
                "expected_runs": expected,
                "runs_ratio": ratio,
                "n_samples": n,
                "validation_split": VALIDATION_SPLIT,
                "tail_label_counts": tail.tolist(),
                "tail_total_variation": tv,
                "never_trained_classes": never_trained,
                "validation_classes": tail_classes,
            },
            [
                Fix(
                    "Shuffle the rows once before training (every array with the same permutation)",
                    code=(
                        "rng = np.random.default_rng(0)\n"
                        "p = rng.permutation(len(y))\n"
                        "x, y = x[p], y[p]\n"
                        "model.fit(x, y, validation_split=0.2, ...)"
                    ),
                ),
                Fix(
                    "Or split with stratification and pass validation_data",
                    code=(
                        "from sklearn.model_selection import train_test_split\n"
                        "x_tr, x_val, y_tr, y_val = train_test_split(\n"
                        "    x, y, test_size=0.2, stratify=y, random_state=0)\n"
                        "model.fit(x_tr, y_tr, validation_data=(x_val, y_val), ...)"
                    ),
                ),
            ],
        )
    ]
