"""The typed results of `fix`'s remedies (class weights, output bias, threshold, resampling,
retraining): frozen dataclasses whose to_dict() is the contract's JSON, key for key.

Renderers read their attributes; only to_dict() spells the JSON keys. This module imports
neither numpy nor TensorFlow: the producers (class_weights, fix.output_bias, fix.threshold,
fix.resample, fix.retrain, fix.common.summarize) build these from their arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def finite(value: Any) -> Any:
    """A value as fix's JSON prints it: NaN/Inf as null (JSON has no spelling for them;
    json.dumps would write NaN), tuples as lists, typed parts through their to_dict(). The
    one such rule of every fix and repair result (fix.repair_result, cli.fix)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict"):  # a typed part: its JSON
        return finite(value.to_dict())
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _finite_dict(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = finite(d)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Optional keys: present in the JSON only where the result has them."""
    if value is not None:
        out[key] = value


# ---------------------------------------------------------------- shared


@dataclass(frozen=True)
class ClassRecall:
    """One class's row of a before/after summary."""

    index: int
    name: str
    support: int
    predicted: int
    recall: float | None  # None for a class without support

    def to_dict(self) -> dict[str, Any]:
        return _finite_dict(
            {
                "class": self.index,
                "name": self.name,
                "support": self.support,
                "predicted": self.predicted,
                "recall": self.recall,
            }
        )


@dataclass(frozen=True)
class Summary:
    """Accuracy, balanced accuracy (with its 95% interval), confusion matrix and per-class
    recall of some predictions (fix.common.summarize)."""

    n_samples: int
    accuracy: float | None
    balanced_accuracy: float | None
    balanced_accuracy_ci95: tuple[float, float] | None  # None without rows
    effective_n: float | None  # Kish's effective sample size of the interval
    confusion_matrix: tuple[tuple[int, ...], ...]
    per_class: tuple[ClassRecall, ...]

    @classmethod
    def of(cls, s: Mapping[str, Any]) -> Summary:
        """From its JSON dict (to_dict() read back)."""
        ci = s["balanced_accuracy_ci95"]
        return cls(
            n_samples=s["n_samples"],
            accuracy=s["accuracy"],
            balanced_accuracy=s["balanced_accuracy"],
            balanced_accuracy_ci95=None if ci is None else (ci[0], ci[1]),
            effective_n=s["effective_n"],
            confusion_matrix=tuple(tuple(row) for row in s["confusion_matrix"]),
            per_class=tuple(
                ClassRecall(p["class"], p["name"], p["support"], p["predicted"], p["recall"])
                for p in s["per_class"]
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        ci = self.balanced_accuracy_ci95
        return _finite_dict(
            {
                "n_samples": self.n_samples,
                "accuracy": self.accuracy,
                "balanced_accuracy": self.balanced_accuracy,
                "balanced_accuracy_ci95": None if ci is None else [ci[0], ci[1]],
                "effective_n": self.effective_n,
                "confusion_matrix": [list(row) for row in self.confusion_matrix],
                "per_class": [row.to_dict() for row in self.per_class],
            }
        )


# ---------------------------------------------------------------- --class-weights


@dataclass(frozen=True)
class ClassWeights:
    """Weights for model.fit's class_weight, one per class present in the labels."""

    class_weight: Mapping[str, float]  # class index as a string (JSON keys) -> weight
    method: str  # "balanced" | "effective-number"
    label_counts: tuple[int, ...]
    beta: float | None = None  # effective-number's beta; None for balanced
    train_data: str | None = None  # the data the weights were learnt from (the CLI sets it)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "class_weight": dict(self.class_weight),
            "method": self.method,
            "label_counts": list(self.label_counts),
        }
        _put(out, "beta", self.beta)
        _put(out, "train_data", self.train_data)
        _put(out, "note", self.note)
        return _finite_dict(out)


# ---------------------------------------------------------------- --output-bias


@dataclass(frozen=True)
class BiasHead:
    """The output bias of one kind of head, its formula and the code that sets it."""

    head: str  # "softmax" | "sigmoid"
    units: int
    bias: tuple[float, ...]
    formula: str
    for_: str  # which layers it is for ("for" in the JSON)
    code: str

    def to_dict(self) -> dict[str, Any]:
        return _finite_dict(
            {
                "head": self.head,
                "units": self.units,
                "bias": list(self.bias),
                "formula": self.formula,
                "for": self.for_,
                "code": self.code,
            }
        )


@dataclass(frozen=True)
class OutputBias:
    """The bias of each kind of head that starts the model's output at the label prior."""

    label_counts: tuple[int, ...]
    prior: tuple[float, ...]
    class_names: tuple[str, ...] | None
    absent_classes: tuple[int, ...]
    heads: tuple[BiasHead, ...]
    note: str
    train_data: str | None = None  # the CLI sets it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label_counts": list(self.label_counts),
            "prior": list(self.prior),
            "class_names": None if self.class_names is None else list(self.class_names),
            "absent_classes": list(self.absent_classes),
            "heads": [h.to_dict() for h in self.heads],
            "note": self.note,
        }
        _put(out, "train_data", self.train_data)
        return _finite_dict(out)


# ---------------------------------------------------------------- --threshold (binary)


@dataclass(frozen=True)
class ThresholdSide:
    """A binary model's predictions at one threshold (rule: score > threshold)."""

    threshold: float
    objective: float  # the value of the chosen objective (balanced accuracy or F1)
    balanced_accuracy: float
    f1: float
    accuracy: float
    confusion_matrix: tuple[tuple[int, int], tuple[int, int]]
    predicted_counts: tuple[int, int]
    recall: tuple[float | None, float | None]  # per class; None for a class without rows

    def to_dict(self) -> dict[str, Any]:
        return _finite_dict(
            {
                "threshold": self.threshold,
                "objective": self.objective,
                "balanced_accuracy": self.balanced_accuracy,
                "f1": self.f1,
                "accuracy": self.accuracy,
                "confusion_matrix": [list(row) for row in self.confusion_matrix],
                "predicted_counts": list(self.predicted_counts),
                "recall": list(self.recall),
            }
        )


@dataclass(frozen=True)
class CrossCheck:
    """The threshold chosen on one half, measured on the other (and vice versa)."""

    objective: float | None  # the mean over both halves; None when a half lacks a class
    thresholds: tuple[float, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"objective": self.objective, "thresholds": list(self.thresholds)}
        _put(out, "note", self.note)
        return _finite_dict(out)


@dataclass(frozen=True)
class ThresholdReport:
    """`fix --threshold` on a binary single-label model: the threshold, before and after."""

    model: str
    data: str
    head: str  # the head in words ("one sigmoid unit", ...)
    score: str  # what is thresholded ("P(class 1)")
    objective: str  # "balanced-accuracy" | "f1"
    threshold: float
    logit_threshold: float | None  # the same cut on logits, for a linear head
    default_threshold: float
    roc_auc: float
    warning: str | None
    label_counts: tuple[int, int]
    class_names: tuple[str, ...]
    before: ThresholdSide
    after: ThresholdSide
    cross_check: CrossCheck
    code: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return _finite_dict(
            {
                "model": self.model,
                "data": self.data,
                "head": self.head,
                "score": self.score,
                "objective": self.objective,
                "threshold": self.threshold,
                "logit_threshold": self.logit_threshold,
                "default_threshold": self.default_threshold,
                "roc_auc": self.roc_auc,
                "warning": self.warning,
                "label_counts": list(self.label_counts),
                "class_names": list(self.class_names),
                "before": self.before.to_dict(),
                "after": self.after.to_dict(),
                "cross_check": self.cross_check.to_dict(),
                "code": self.code,
                "note": self.note,
            }
        )


# ---------------------------------------------------------------- --oversample / --undersample


@dataclass(frozen=True)
class ResampledFile:
    """One entry of a rebalanced image folder: where it links (or was copied) from."""

    class_: str  # "class" in the JSON
    source: str
    link: str

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.class_, "source": self.source, "link": self.link}


@dataclass(frozen=True)
class ResampleReport:
    """`fix --oversample/--undersample`: the rebalanced copy and its label counts.

    The optional fields belong to one format each: `arrays` to .npz; `written_as`, `files`
    and `files_omitted` to an image folder; `label_column` and `columns` to .csv/.parquet.
    """

    method: str  # "oversample" | "undersample"
    seed: int
    data: str
    output: str
    format: str  # "npz" | "csv" | "parquet" | "image-folder"
    class_names: tuple[str, ...]
    n_samples_before: int
    n_samples_after: int
    distinct_samples: int
    label_counts_before: tuple[int, ...]
    label_counts_after: tuple[int, ...]
    note: str
    arrays: tuple[str, ...] | None = None
    written_as: str | None = None  # "links" | "copies"
    files: tuple[ResampledFile, ...] | None = None  # at most fix.resample.MAX_LISTED_FILES
    files_omitted: int | None = None
    label_column: str | None = None
    columns: tuple[str, ...] | None = None
    train_data: str | None = None  # the CLI sets it

    def to_dict(self, *, files: bool = True) -> dict[str, Any]:
        """The JSON; files=False leaves out an image folder's file list (the table's view)."""
        out: dict[str, Any] = {
            "method": self.method,
            "seed": self.seed,
            "data": self.data,
            "output": self.output,
            "format": self.format,
        }
        _put(out, "arrays", None if self.arrays is None else list(self.arrays))
        out.update(
            {
                "class_names": list(self.class_names),
                "n_samples_before": self.n_samples_before,
                "n_samples_after": self.n_samples_after,
                "distinct_samples": self.distinct_samples,
                "label_counts_before": list(self.label_counts_before),
                "label_counts_after": list(self.label_counts_after),
                "note": self.note,
            }
        )
        _put(out, "written_as", self.written_as)
        if files and self.files is not None:
            out["files"] = [f.to_dict() for f in self.files]
        _put(out, "files_omitted", self.files_omitted)
        _put(out, "label_column", self.label_column)
        _put(out, "columns", None if self.columns is None else list(self.columns))
        _put(out, "train_data", self.train_data)
        return _finite_dict(out)


# ---------------------------------------------------------------- --retrain


@dataclass(frozen=True)
class Interval:
    """How the intervals next to the balanced accuracies were computed."""

    level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "method": self.method}


@dataclass(frozen=True)
class BiasRefit:
    """What became of the output bias before fine-tuning: re-fitted for class-balanced
    training, or kept (and why). The numbers are there only when a re-fit was computed."""

    applied: bool
    reason: str
    layer: str | None = None
    before: tuple[float, ...] | None = None
    refit: tuple[float, ...] | None = None
    balanced_loss_before: float | None = None
    balanced_loss_refit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.layer is None:  # no re-fit computed: only the verdict and why
            return {"applied": self.applied, "reason": self.reason}
        return _finite_dict(
            {
                "applied": self.applied,
                "layer": self.layer,
                "before": None if self.before is None else list(self.before),
                "refit": None if self.refit is None else list(self.refit),
                "balanced_loss_before": self.balanced_loss_before,
                "balanced_loss_refit": self.balanced_loss_refit,
                "reason": self.reason,
            }
        )


@dataclass(frozen=True)
class FollowUp:
    """What to run next on a fine-tuned model, and what not to (cli/fix.py sets it)."""

    command: str  # "follow_up" in the JSON
    why: str
    spent: str | None  # the warning when the fine-tuning data may have been evaluation data

    def to_dict(self) -> dict[str, Any]:
        return {"follow_up": self.command, "follow_up_why": self.why, "spent": self.spent}


@dataclass(frozen=True)
class RetrainReport:
    """`fix --retrain`: the fine-tuning, and per-class recall before/after on rows it never
    trained on (EVAL_DATA, or the held-out part of TRAIN_DATA)."""

    model: str
    data: str  # TRAIN_DATA ("data" and "train_data" in the JSON)
    eval_data: str | None
    output: str
    epochs: int
    batch_size: int
    learning_rate: float | None
    optimizer: str
    loss: str
    loss_from_logits: bool
    loss_source: str  # "compiled" | "chosen"
    validation_split: float | None  # None with EVAL_DATA
    seed: int
    n_train: int
    n_heldout: int
    heldout_file: str | None  # the held-out rows' indices (without EVAL_DATA)
    interval: Interval
    class_names: tuple[str, ...]
    class_weight: Mapping[str, float]
    bias: BiasRefit
    train_loss: tuple[float, ...]
    before: Summary  # on the rows never trained on ("heldout" in the JSON)
    after: Summary
    notes: tuple[str, ...]
    follow_up: FollowUp | None = None

    @property
    def evaluated_on(self) -> str:
        return "eval-data" if self.eval_data is not None else "heldout-part"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "data": self.data,
            "train_data": self.data,
            "eval_data": self.eval_data,
            "evaluated_on": self.evaluated_on,
            "output": self.output,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "optimizer": self.optimizer,
            "loss": self.loss,
            "loss_from_logits": self.loss_from_logits,
            "loss_source": self.loss_source,
            "validation_split": self.validation_split,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "heldout_file": self.heldout_file,
            "interval": self.interval.to_dict(),
            "class_names": list(self.class_names),
            "class_weight": dict(self.class_weight),
            "bias": self.bias.to_dict(),
            "train_loss": list(self.train_loss),
            "heldout": {"before": self.before.to_dict(), "after": self.after.to_dict()},
            "notes": list(self.notes),
        }
        if self.follow_up is not None:
            out.update(self.follow_up.to_dict())
        return _finite_dict(out)
