"""Typed sections of a Report: the model, the data and the metrics, each with to_dict() giving
the JSON of docs/contract.md (its keys, their order, and the keys a task leaves out)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

# A shape as a model or an array declares it: None for an axis of any size.
Shape = tuple[int | None, ...]


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class ModelInput:
    """One input of the model as it declares it."""

    name: str
    shape: Shape

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSection:
    """report.model: what was diagnosed, as loaded and read statically."""

    path: str
    format: str
    inputs: tuple[ModelInput, ...]
    output: str | None
    n_outputs: int
    head: str
    loss: str | None
    loss_from_logits: bool | None
    optimizer_iterations: int | None
    notes: tuple[str, ...] = ()
    # a dense (per position) model's output shape; None (and out of the JSON) otherwise
    output_shape: Shape | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "inputs": [i.to_dict() for i in self.inputs],
            "output": self.output,
        }
        if self.output_shape is not None:
            out["output_shape"] = list(self.output_shape)
        out.update(
            {
                "n_outputs": self.n_outputs,
                "head": self.head,
                "loss": self.loss,
                "loss_from_logits": self.loss_from_logits,
                "optimizer_iterations": self.optimizer_iterations,
                "notes": list(self.notes),
            }
        )
        return out


# ------------------------------------------------------------------ data


@dataclass(frozen=True)
class Histogram:
    """The bounded sample's values of one input over the whole pass's [lo, hi]."""

    lo: float
    hi: float
    counts: tuple[int, ...]
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo, "hi": self.hi, "counts": list(self.counts), "n_rows": self.n_rows}


@dataclass(frozen=True)
class InputSummary:
    """One input's values over the pass; single-label runs add what the HTML report plots
    (per-feature RMS and a histogram), which dense and multi-label runs leave out."""

    name: str
    shape: Shape
    dtype: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    feature_rms: tuple[float | None, ...] | None = None
    n_features: int | None = None
    histogram: Histogram | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
        }
        if self.feature_rms is not None:
            out["feature_rms"] = list(self.feature_rms)
        if self.n_features is not None:
            out["n_features"] = self.n_features
        if self.histogram is not None:
            out["histogram"] = self.histogram.to_dict()
        return out


MaskValue = int | tuple[int, ...] | None  # a palette index / grey value, or an RGB colour


@dataclass(frozen=True)
class MaskClass:
    """One class of a segmentation folder and the mask value that stands for it."""

    index: int
    name: str
    value: MaskValue
    pixels: int = 0
    color: tuple[int, ...] | None = None  # a palette entry's colour, where the file has one

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "name": self.name, "value": _plain(self.value)}
        if self.color is not None:
            out["color"] = list(self.color)
        out["pixels"] = self.pixels
        return out


@dataclass(frozen=True)
class MasksInfo:
    """report.data.masks: how a segmentation folder's mask files became classes."""

    dir: str
    kind: str  # palette | grey | rgb
    mapping: str
    rule: str
    matched: int
    pairs: int
    suffix: str
    classes: tuple[MaskClass, ...]
    void: MaskValue
    pixels_total: int
    void_pixels: int
    size: tuple[int, int]
    resized: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "kind": self.kind,
            "mapping": self.mapping,
            "rule": self.rule,
            "matched": self.matched,
            "pairs": self.pairs,
            "suffix": self.suffix,
            "classes": [c.to_dict() for c in self.classes],
            "void": _plain(self.void),
            "pixels_total": self.pixels_total,
            "void_pixels": self.void_pixels,
            "size": list(self.size),
            "resized": self.resized,
        }


@dataclass(frozen=True)
class DataSection:
    """report.data: what DATA held and how it was read. The dense fields (label_shape,
    positions, positions_excluded, ignore_label) are in the JSON exactly when label_shape is
    set; sampled_from with seed, shards and masks when set."""

    path: str
    n_samples: int
    n_classes: int
    class_names: tuple[str, ...]
    label_counts: tuple[int, ...]
    label_encoding: str
    inputs: tuple[InputSummary, ...]
    # dense (per position) labels
    label_shape: tuple[int, ...] | None = None
    positions: int | None = None
    positions_excluded: int | None = None
    ignore_label: int | None = None
    # --sample: the rows there were, and the seed that drew the diagnosed ones
    sampled_from: int | None = None
    seed: int | None = None
    shards: int | None = None  # a sharded (Beam) run
    masks: MasksInfo | None = None  # a segmentation folder

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "n_samples": self.n_samples,
            "n_classes": self.n_classes,
            "class_names": list(self.class_names),
            "label_counts": list(self.label_counts),
            "label_encoding": self.label_encoding,
        }
        if self.label_shape is not None:
            out.update(
                {
                    "label_shape": list(self.label_shape),
                    "positions": self.positions,
                    "positions_excluded": self.positions_excluded,
                    "ignore_label": self.ignore_label,
                }
            )
        out["inputs"] = [i.to_dict() for i in self.inputs]
        if self.sampled_from is not None:
            out.update({"sampled_from": self.sampled_from, "seed": self.seed})
        if self.shards is not None:
            out["shards"] = self.shards
        if self.masks is not None:
            out["masks"] = self.masks.to_dict()
        return out


# ------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class ClassMetrics:
    """One class's figures: recall is None without support, precision when never predicted."""

    index: int
    name: str
    support: int
    predicted: int
    recall: float | None
    precision: float | None

    @property
    def missing(self) -> bool:
        """Present in the labels, never predicted."""
        return self.support > 0 and self.predicted == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.index,
            "name": self.name,
            "support": self.support,
            "predicted": self.predicted,
            "recall": self.recall,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class DenseClassMetrics(ClassMetrics):
    """One class over the counted positions of a dense model."""

    share: float
    predicted_share: float
    samples: int  # samples holding the class
    iou: float | None
    auc: float | None
    max_score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.index,
            "name": self.name,
            "support": self.support,
            "predicted": self.predicted,
            "share": self.share,
            "predicted_share": self.predicted_share,
            "samples": self.samples,
            "recall": self.recall,
            "precision": self.precision,
            "iou": self.iou,
            "auc": self.auc,
            "max_score": self.max_score,
        }


@dataclass(frozen=True)
class LabelMetrics(ClassMetrics):
    """One label of a multi-label model (support: rows carrying it)."""

    prevalence: float
    predicted_rate: float
    auc: float | None
    auc_lower: float | None
    max_score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.index,
            "name": self.name,
            "support": self.support,
            "predicted": self.predicted,
            "prevalence": self.prevalence,
            "predicted_rate": self.predicted_rate,
            "recall": self.recall,
            "precision": self.precision,
            "auc": self.auc,
            "auc_lower": self.auc_lower,
            "max_score": self.max_score,
        }


@dataclass(frozen=True)
class Metrics:
    """report.metrics of a single-label classifier; DenseMetrics and MultiLabelMetrics extend
    it, so every renderer reads the same names (a multi-label run has no confusion matrix)."""

    task: ClassVar[str] = "single-label"  # not in the JSON: its absence means single-label

    accuracy: float | None
    balanced_accuracy: float | None
    majority_baseline: float | None
    majority_class: int | None
    confusion_matrix: tuple[tuple[int, ...], ...]
    per_class: tuple[ClassMetrics, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "majority_baseline": self.majority_baseline,
            "majority_class": self.majority_class,
            "confusion_matrix": [list(r) for r in self.confusion_matrix],
            "per_class": [c.to_dict() for c in self.per_class],
        }


@dataclass(frozen=True)
class DenseSampleMetrics:
    """Per sample of a dense model: how many samples lose (or have) no foreground."""

    samples: int
    no_predicted_foreground: float | None
    no_true_foreground: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "no_predicted_foreground": self.no_predicted_foreground,
            "no_true_foreground": self.no_true_foreground,
        }


@dataclass(frozen=True)
class DenseMetrics(Metrics):
    """Metrics over the counted pixel / token positions of a dense model."""

    task: ClassVar[str] = "dense"

    # narrowed: a dense model has a majority class and per-position figures per class
    majority_class: int
    per_class: tuple[DenseClassMetrics, ...]
    decision_rule: str
    positions: int
    mean_iou: float | None
    per_sample: DenseSampleMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "decision_rule": self.decision_rule,
            "positions": self.positions,
            "accuracy": self.accuracy,
            "majority_baseline": self.majority_baseline,
            "balanced_accuracy": self.balanced_accuracy,
            "mean_iou": self.mean_iou,
            "majority_class": self.majority_class,
            "confusion_matrix": [list(r) for r in self.confusion_matrix],
            "per_class": [c.to_dict() for c in self.per_class],
            "per_sample": self.per_sample.to_dict(),
        }


@dataclass(frozen=True)
class LabelSampleMetrics:
    """Per row of a multi-label model: rows with no label, true and predicted."""

    no_true_label: float
    no_predicted_label: float
    labelled_rows_predicted_empty: float | None
    mean_true_labels: float
    mean_predicted_labels: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "no_true_label": self.no_true_label,
            "no_predicted_label": self.no_predicted_label,
            "labelled_rows_predicted_empty": self.labelled_rows_predicted_empty,
            "mean_true_labels": self.mean_true_labels,
            "mean_predicted_labels": self.mean_predicted_labels,
        }


@dataclass(frozen=True)
class MultiLabelMetrics(Metrics):
    """Label-wise metrics of a multi-label model (majority_class None, no confusion matrix):
    accuracy over (row, label) cells, balanced accuracy as the mean over labels."""

    task: ClassVar[str] = "multilabel"

    per_class: tuple[LabelMetrics, ...]  # narrowed: per-label figures
    decision_rule: str
    subset_accuracy: float
    per_sample: LabelSampleMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "decision_rule": self.decision_rule,
            "accuracy": self.accuracy,
            "majority_baseline": self.majority_baseline,
            "balanced_accuracy": self.balanced_accuracy,
            "subset_accuracy": self.subset_accuracy,
            "per_class": [c.to_dict() for c in self.per_class],
            "per_sample": self.per_sample.to_dict(),
        }


def _plain(value: MaskValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


def int_tuple(values: Iterable[Any]) -> tuple[int, ...]:
    """Plain ints (numpy's too) as a tuple."""
    return tuple(int(v) for v in values)
