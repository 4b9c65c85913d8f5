"""Classification metrics from the confusion matrix; silent when a class is never predicted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.sections import ClassMetrics, Metrics


def class_count(
    width: int | None = None,
    class_names: Sequence[str] | None = None,
    n_outputs: int | None = None,
    labels_max: int | None = None,
) -> int:
    """K, the one rule (issue 17, item 7): the widest of the one-hot width, the class names,
    the model's output units (one unit scores two classes) and the largest label + 1; two at
    least, since a classifier tells two classes apart at least."""
    return int(
        max(
            width or 0,
            len(class_names or ()),
            n_outputs if n_outputs is not None and n_outputs > 1 else 2,
            labels_max + 1 if labels_max is not None else 0,
        )
    )


def names_for_classes(
    names: Sequence[Any] | None,
    given: Sequence[Any] | None,
    k: int,
    where: str,
    noun: str = "classes",
) -> list[str]:
    """The names of K classes (or labels): `given` (class_names=, --class-names) over the data's
    own `names`; each must name exactly K; the index where neither does."""
    if names is not None and len(names) != k:
        raise InputError(f"{where}: {len(names)} class names for {k} {noun}")
    if given is not None:
        names = list(given)
        if len(names) != k:
            raise InputError(f"class_names: {len(names)} names for {k} {noun}")
    return [str(v) for v in names] if names else [str(i) for i in range(k)]


def class_names_for(k: int, names: Sequence[str] | None) -> list[str]:
    """Names for K classes: the file's class_names where given, else the index."""
    names = list(names or [])
    return [names[i] if i < len(names) else str(i) for i in range(k)]


def compute_metrics(conf: np.ndarray, names: Sequence[str]) -> Metrics:
    """Accuracy next to the majority baseline, balanced accuracy, per-class figures.

    Recall is undefined (None) for a class without support, precision for a class never
    predicted; neither raises nor warns.
    """
    conf = np.asarray(conf, dtype=np.int64)
    support = conf.sum(axis=1)
    predicted = conf.sum(axis=0)
    tp = np.diag(conf)
    n = int(support.sum())
    present = support > 0
    recall = np.where(present, tp / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
    per_class = tuple(
        ClassMetrics(
            index=i,
            name=names[i],
            support=int(support[i]),
            predicted=int(predicted[i]),
            recall=_opt(recall[i]),
            precision=_opt(precision[i]),
        )
        for i in range(conf.shape[0])
    )
    majority = int(np.argmax(support)) if n else 0
    return Metrics(
        accuracy=float(tp.sum() / n) if n else None,
        balanced_accuracy=float(np.nanmean(recall[present])) if present.any() else None,
        majority_baseline=float(support[majority] / n) if n else None,
        majority_class=majority,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in conf),
        per_class=per_class,
    )


def recall_vector(conf: np.ndarray) -> np.ndarray:
    """Per-class recall, NaN for classes without support."""
    support = conf.sum(axis=1)
    return np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)


def _opt(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)
