"""Class weights for model.fit: scikit-learn's "balanced", or Cui et al.'s effective number.

The maths of a remedy, shared by the checks (their advice), the callback and `fix`; it imports
no CLI code."""

from __future__ import annotations

import numpy as np

from kerasdoctor.fix.results import ClassWeights

METHODS = ("balanced", "effective-number")


def label_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y, minlength=n_classes).astype(np.int64)


def class_weights(
    y: np.ndarray, n_classes: int | None = None, method: str = "balanced", beta: float = 0.999
) -> ClassWeights:
    """Weights for every class present in y (to_dict() is the contract's JSON shape).

    balanced: n_samples / (n_present_classes * count), exactly scikit-learn's formula.
    effective-number: (1 - beta) / (1 - beta**count) (Cui et al., 2019), scaled so the
    weights of the present classes sum to their number, as in the paper.
    """
    k = int(n_classes if n_classes is not None else y.max() + 1)
    counts = label_counts(y, k)
    present = np.flatnonzero(counts > 0)
    if method == "balanced":
        w = y.shape[0] / (present.size * counts[present])
    elif method == "effective-number":
        if not 0.0 <= beta < 1.0:
            raise ValueError("beta must be in [0, 1)")
        eff = (1.0 - np.power(beta, counts[present].astype(np.float64))) / (1.0 - beta)
        w = 1.0 / eff
        w = w * present.size / w.sum()
    else:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return ClassWeights(
        class_weight={str(int(c)): float(wc) for c, wc in zip(present, w)},
        method=method,
        label_counts=tuple(counts.tolist()),
        beta=beta if method == "effective-number" else None,
    )


def python_line(result: ClassWeights) -> str:
    """`class_weight = {0: 0.63, ...}` ready to paste into model.fit(..., class_weight=...)."""
    items = ", ".join(f"{k}: {v:.6g}" for k, v in result.class_weight.items())
    return f"class_weight = {{{items}}}"
