"""What a `fix --repair` edit changed inside the model, in its own words: one frozen dataclass
per kind of surgery of fix.repair and fix.task_repair (BatchNorm statistics re-estimated,
transforms prepended to the inputs, output units reordered, a decision cut, the label prior
or a shift moved into the output bias, a softmax made a sigmoid).

Each repair returns one; fix.repair_result.RepairDetails holds it and merges its to_dict()
into `details` of the JSON, the keys in the order the command always printed them. This
module imports neither numpy nor TensorFlow: the repairs build these from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class BatchNormSurgery:
    """AdaBN (fix.repair.reestimate_batchnorm): the BatchNormalization layers whose moving
    statistics were re-estimated, from how many rows, in batches of how many."""

    layers: tuple[str, ...]
    rows: int
    batch: int

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "rows": self.rows, "batch": self.batch}


@dataclass(frozen=True)
class InputTransform:
    """One input and the transform (checks.preprocessing_mismatch's name) done before it."""

    input: str
    transform: str

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "transform": self.transform}


@dataclass(frozen=True)
class InputTransformSurgery:
    """Standard layers prepended to the inputs (fix.repair.prepend_transforms), and the code
    of the restoring transform the diagnosis found (None: it gave none)."""

    transforms: tuple[InputTransform, ...]
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "code": self.code}


@dataclass(frozen=True)
class OutputOrderSurgery:
    """The output units reordered (label-permutation): the Dense layer edited and, for each
    output unit, the label class it was matched to on the fitting half."""

    layer: str
    output_unit_to_label: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "output_unit_to_label": list(self.output_unit_to_label)}


@dataclass(frozen=True)
class ThresholdSurgery:
    """A binary decision cut on P(class 1) moved into the output bias (decision-threshold):
    the layer, the cut, and what was added to the bias (-logit(threshold))."""

    layer: str
    threshold: float
    bias_shift: float

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "threshold": self.threshold, "bias_shift": self.bias_shift}


@dataclass(frozen=True)
class ClassImbalanceSurgery:
    """The head of a model that follows the label prior, re-balanced (class-imbalance): by
    logit adjustment or classifier re-training, whichever scored better on a quarter of DATA
    (`selection_balanced_accuracy`, by method, in the order they were tried)."""

    selection: ClassVar[str] = (
        "each fitted on one quarter of DATA, scored on another (both inside the fitting half)"
    )

    layer: str
    method: str  # "logit-adjustment" or "classifier-retraining"
    selection_balanced_accuracy: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "method": self.method,
            "selection_balanced_accuracy": dict(self.selection_balanced_accuracy),
            "selection": self.selection,
        }


@dataclass(frozen=True)
class SigmoidSurgery:
    """A one-unit softmax made a sigmoid on the same logit (fix.repair.sigmoid_head): the
    layer edited or replaced and, for a single-label model, the balanced accuracy the logit
    reached on the fitting half (None: not measured, not printed)."""

    layer: str
    fit_balanced_accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer}
        if self.fit_balanced_accuracy is not None:
            out["fit_balanced_accuracy"] = self.fit_balanced_accuracy
        return out


@dataclass(frozen=True)
class LogitShiftSurgery:
    """Output logits z made z - shift (fix.repair.shift_output_logits: per-label thresholds,
    a dense threshold or position prior): the layer, `bias` (its bias moved) or
    `normalization` (a fixed Normalization inserted before the activation), the shift per
    unit."""

    layer: str
    how: Literal["bias", "normalization"]
    shift: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "how": self.how, "shift": list(self.shift)}


# what RepairDetails.surgery holds: the account of whichever edit was made
Surgery = (
    BatchNormSurgery
    | InputTransformSurgery
    | OutputOrderSurgery
    | ThresholdSurgery
    | ClassImbalanceSurgery
    | SigmoidSurgery
    | LogitShiftSurgery
)
