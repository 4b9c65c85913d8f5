"""Typed results of `fix --repair` for every task (single-label, multi-label, dense) and of the
per-label / per-position `fix --threshold`: frozen dataclasses built by fix.repair,
fix.per_label, fix.per_position and fix.task_repair, read by render/repair.py through their
attributes; to_dict() is the JSON the command prints (NaN/Inf as null, tuples as lists).

One RepairResult for the three tasks: the contract's `{"repaired", "cause", "repair",
"before", "after", "output"}` and what we added (why, instead, gain, the split, the details of
the edit, the re-diagnosis...). What differs by task is the kind of summary before/after
(fix.results.Summary, LabelSummary, PositionSummary) and three keys: `task` and `rule` (not printed
for single-label results) and `verdict` (dense only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kerasdoctor.findings import CheckError, Finding, Fix, Report
from kerasdoctor.fix.results import Summary
from kerasdoctor.fix.results import finite as jsonable
from kerasdoctor.fix.surgery import Surgery
from kerasdoctor.sections import ClassMetrics

TASKS = ("single-label", "multilabel", "dense")


def _opt_pair(v: Any) -> tuple[float, float] | None:
    return None if v is None else (v[0], v[1])


# ------------------------------------------------------------------ multi-label summary


@dataclass(frozen=True)
class LabelRates:
    """One label's 0/1 predictions: positives, predicted, recall, precision, balanced
    accuracy (multilabel._rates)."""

    support: int
    predicted: int
    recall: float | None
    precision: float | None
    balanced_accuracy: float | None

    @classmethod
    def of(cls, r: Mapping[str, Any]) -> LabelRates:
        return cls(
            r["support"], r["predicted"], r["recall"], r["precision"], r["balanced_accuracy"]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "support": self.support,
            "predicted": self.predicted,
            "recall": self.recall,
            "precision": self.precision,
            "balanced_accuracy": self.balanced_accuracy,
        }


@dataclass(frozen=True)
class LabelClassRow(LabelRates):
    """A label's row of a LabelSummary: its rates, index, name and the cut applied."""

    index: int = 0
    name: str = ""
    threshold: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return dict(
            super().to_dict(), **{"class": self.index, "name": self.name}, threshold=self.threshold
        )


@dataclass(frozen=True)
class LabelSummary:
    """Multi-label predictions on the held-out half: macro figures (multilabel.label_summary),
    `balanced_accuracy` (= the macro one, the single-label key in the same sense) and a row
    per label."""

    rows: int
    macro_balanced_accuracy: float | None
    macro_recall: float | None
    macro_precision: float | None
    no_predicted_label: float
    no_true_label: float
    per_class: tuple[LabelClassRow, ...]

    @property
    def balanced_accuracy(self) -> float | None:
        return self.macro_balanced_accuracy

    @classmethod
    def of(cls, macro: Mapping[str, Any], per_label: Sequence[Mapping[str, Any]]) -> LabelSummary:
        """From multilabel.label_summary's figures and one multilabel._rates per label (with
        its index, name and threshold)."""
        return cls(
            rows=macro["rows"],
            macro_balanced_accuracy=macro["macro_balanced_accuracy"],
            macro_recall=macro["macro_recall"],
            macro_precision=macro["macro_precision"],
            no_predicted_label=macro["no_predicted_label"],
            no_true_label=macro["no_true_label"],
            per_class=tuple(
                LabelClassRow(
                    r["support"],
                    r["predicted"],
                    r["recall"],
                    r["precision"],
                    r["balanced_accuracy"],
                    index=r["class"],
                    name=r["name"],
                    threshold=r["threshold"],
                )
                for r in per_label
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "macro_balanced_accuracy": self.macro_balanced_accuracy,
            "macro_recall": self.macro_recall,
            "macro_precision": self.macro_precision,
            "no_predicted_label": self.no_predicted_label,
            "no_true_label": self.no_true_label,
            "balanced_accuracy": self.balanced_accuracy,
            "per_class": [p.to_dict() for p in self.per_class],
        }


@dataclass(frozen=True)
class LabelRow:
    """One label of a per-label threshold (or of a model-level repair, `cut=False`: no cut
    was fitted, and prevalence, ROC AUC, the fitted cut, gain and noise are not printed)."""

    label: int
    name: str
    threshold: float
    validated: bool
    note: str | None
    before: LabelRates
    after: LabelRates
    prevalence: float | None = None
    roc_auc: float | None = None
    threshold_fitted: float | None = None
    gain: float | None = None
    noise: float | None = None
    cut: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "name": self.name}
        if self.cut:
            out.update(prevalence=self.prevalence, roc_auc=self.roc_auc)
        out["threshold"] = self.threshold
        if self.cut:
            out["threshold_fitted"] = self.threshold_fitted
        out["validated"] = self.validated
        if self.cut:
            out.update(gain=self.gain, noise=self.noise)
        out.update(note=self.note, before=self.before.to_dict(), after=self.after.to_dict())
        return out


# ------------------------------------------------------------------ dense summary


@dataclass(frozen=True)
class PositionClassRow(ClassMetrics):
    """One class of a dense summary, counted over positions: the report's per-class figures
    (sections.ClassMetrics) and its IoU."""

    iou: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "iou": self.iou}


@dataclass(frozen=True)
class PositionSummary:
    """Dense predictions on the held-out samples, over the positions that count: balanced
    accuracy (mean recall), mean IoU, samples with no foreground, per-class figures."""

    samples: int
    positions: int
    accuracy: float | None
    balanced_accuracy: float
    mean_iou: float
    no_predicted_foreground: float
    no_true_foreground: float
    per_class: tuple[PositionClassRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "positions": self.positions,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "mean_iou": self.mean_iou,
            "no_predicted_foreground": self.no_predicted_foreground,
            "no_true_foreground": self.no_true_foreground,
            "per_class": [p.to_dict() for p in self.per_class],
        }


@dataclass(frozen=True)
class CureVerdict:
    """dense.cure_verdict: balanced accuracy over positions and mean IoU before/after, their
    gains and noise, and whether the cure is validated (both up beyond noise)."""

    balanced_accuracy_before: float
    balanced_accuracy_after: float
    mean_iou_before: float
    mean_iou_after: float
    gain: float
    noise: float
    restores: bool
    mean_iou_gain: float
    mean_iou_noise: float
    validated: bool

    @classmethod
    def of(cls, v: Mapping[str, Any]) -> CureVerdict:
        return cls(
            v["balanced_accuracy_before"],
            v["balanced_accuracy_after"],
            v["mean_iou_before"],
            v["mean_iou_after"],
            v["gain"],
            v["noise"],
            bool(v["restores"]),
            v["mean_iou_gain"],
            v["mean_iou_noise"],
            bool(v["validated"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "balanced_accuracy_before": self.balanced_accuracy_before,
            "balanced_accuracy_after": self.balanced_accuracy_after,
            "mean_iou_before": self.mean_iou_before,
            "mean_iou_after": self.mean_iou_after,
            "gain": self.gain,
            "noise": self.noise,
            "restores": self.restores,
            "mean_iou_gain": self.mean_iou_gain,
            "mean_iou_noise": self.mean_iou_noise,
            "validated": self.validated,
        }


# the held-out summary of each task (single-label: fix.results.Summary, as the other modes)
AnySummary = Summary | LabelSummary | PositionSummary


# ------------------------------------------------------------------ the repair result


@dataclass(frozen=True)
class FindingBrief:
    """A finding of the re-diagnosis: its id and severity."""

    id: str
    severity: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity}


@dataclass(frozen=True)
class Rediagnosis:
    """The diagnosis of the repaired model on the held-out part, or the error that stopped
    it (reported, never fatal). `errors` (the checks that crashed) is printed for
    single-label results only (None elsewhere)."""

    verdict: str | None = None
    root_cause: str | None = None
    findings: tuple[FindingBrief, ...] = ()
    errors: tuple[CheckError, ...] | None = None
    error: str | None = None

    @classmethod
    def of(cls, report: Report, *, with_errors: bool = False) -> Rediagnosis:
        return cls(
            verdict=report.verdict,
            root_cause=report.root_cause.id if report.root_cause else None,
            findings=tuple(FindingBrief(f.id, f.severity.value) for f in report.findings),
            errors=tuple(report.errors) if with_errors else None,
        )

    @classmethod
    def failed(cls, exc: BaseException) -> Rediagnosis:
        return cls(error=f"{type(exc).__name__}: {exc}"[:300])

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "root_cause": self.root_cause,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.errors is not None:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out


@dataclass(frozen=True)
class RepairDetails:
    """How the repair was fitted and what it changed.

    `surgery` is the edit's own account (fix.surgery: the layer, how, the shift, the
    transforms, the BatchNorm rows...: each repair of fix.repair / fix.task_repair says what
    it did; None before an edit is made); the other typed parts are what the cure was
    fitted from and what it would have given:

    - multi-label thresholds: `labels` (a LabelRow each), `thresholds`, `validated_labels`,
      `agreement_with_thresholds` (the reloaded model against the planned cuts);
    - dense: the `threshold` or the position `prior` fitted, the `planned` verdict;
    - `tried`: what a cure that was not written gave on the held-out part.

    to_dict() prints them in the order the command always printed them: what was fitted,
    the surgery, then what was measured on the result."""

    surgery: Surgery | None = None
    labels: tuple[LabelRow, ...] | None = None
    thresholds: tuple[float, ...] | None = None
    threshold: float | None = None
    prior: tuple[float, ...] | None = None
    planned: CureVerdict | None = None
    validated_labels: tuple[str, ...] | None = None
    agreement_with_thresholds: float | None = None
    tried: AnySummary | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fitted_labels = self.thresholds is not None  # per-label cuts: fitted before the edit
        if fitted_labels and self.labels is not None:
            out["labels"] = [r.to_dict() for r in self.labels]
        if self.thresholds is not None:
            out["thresholds"] = list(self.thresholds)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.prior is not None:
            out["prior"] = list(self.prior)
        if self.planned is not None:
            out["planned"] = self.planned.to_dict()
        if self.surgery is not None:
            out.update(self.surgery.to_dict())
        if not fitted_labels and self.labels is not None:  # measured on the edited model
            out["labels"] = [r.to_dict() for r in self.labels]
        if self.validated_labels is not None:
            out["validated_labels"] = list(self.validated_labels)
        if self.agreement_with_thresholds is not None:
            out["agreement_with_thresholds"] = self.agreement_with_thresholds
        if self.tried is not None:
            out["tried"] = self.tried.to_dict()
        return out


def nothing_to_repair(report: Report) -> str:
    """Why nothing is repaired when the diagnosis names no cause."""
    if report.verdict == "healthy":
        return "the diagnosis finds the model healthy: nothing to repair, nothing written"
    return (
        "the diagnosis names no cause for what it found: nothing to repair; "
        "run kerasdoctor diagnose for the symptoms"
    )


@dataclass(frozen=True)
class RepairResult:
    """What `fix --repair` did, for every task: the cause, the edit (or why none), the
    held-out figures before and after, the re-diagnosis and the file written."""

    task: str  # one of TASKS
    cause: str | None
    cause_title: str | None
    split: str  # how DATA was split into the fitting and the held-out part
    seed: int
    fit_rows: int  # rows (dense: samples) the repair was fitted on
    heldout_rows: int  # rows (dense: samples) it was measured on
    verdict_before: str  # the diagnosis's verdict
    rule: str | None = None  # what a repair must show to be written (multi-label, dense)
    repaired: bool = False
    repair: str | None = None  # what was changed inside the model
    why: str | None = None  # why nothing was written, when nothing was
    instead: tuple[Fix, ...] = ()  # what to do when no edit cures the cause
    before: AnySummary | None = None
    after: AnySummary | None = None  # the model as saved and reloaded
    gain: float | None = None
    required_gain: float | None = None
    details: RepairDetails = field(default_factory=RepairDetails)
    verdict: CureVerdict | None = None  # dense: the reloaded model's cure verdict
    diagnosis_after: Rediagnosis | None = None
    output: str | None = None  # the file written
    standard_layers_only: bool | None = None  # None: no model was built
    model: str | None = None  # the paths read (the command line; not the library)
    data: str | None = None

    @classmethod
    def start(
        cls,
        task: str,
        report: Report,
        finding: Finding | None,
        *,
        split: str,
        seed: int,
        fit_rows: int,
        heldout_rows: int,
        rule: str | None = None,
    ) -> RepairResult:
        """Nothing repaired yet: the cause, the split, and — without a cause — why."""
        assert task in TASKS, task
        return cls(
            task=task,
            cause=None if finding is None else finding.id,
            cause_title=None if finding is None else finding.title,
            split=split,
            seed=seed,
            fit_rows=fit_rows,
            heldout_rows=heldout_rows,
            verdict_before=report.verdict,
            rule=rule,
            why=nothing_to_repair(report) if finding is None else None,
        )

    @property
    def healthy(self) -> bool:
        """No cause and a healthy diagnosis: nothing to repair, and nothing wrong."""
        return self.cause is None and self.verdict_before == "healthy"

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `fix --repair --format json` (the contract's keys and ours)."""
        single = self.task == "single-label"
        out: dict[str, Any] = {"repaired": self.repaired}
        if not single:
            out["task"] = self.task
        out.update(
            cause=self.cause,
            cause_title=self.cause_title,
            repair=self.repair,
            why=self.why,
            instead=[f.to_dict() for f in self.instead],
            before=None if self.before is None else self.before.to_dict(),
            after=None if self.after is None else self.after.to_dict(),
            gain=self.gain,
            required_gain=self.required_gain,
        )
        if not single:
            out["rule"] = self.rule
        out.update(
            split=self.split,
            seed=self.seed,
            fit_rows=self.fit_rows,
            heldout_rows=self.heldout_rows,
            details=self.details.to_dict(),
        )
        if self.task == "dense":
            out["verdict"] = None if self.verdict is None else self.verdict.to_dict()
        out.update(
            diagnosis_after=None
            if self.diagnosis_after is None
            else self.diagnosis_after.to_dict(),
            output=self.output,
            verdict_before=self.verdict_before,
        )
        if self.standard_layers_only is not None:
            out["standard_layers_only"] = self.standard_layers_only
        if self.model is not None:
            out["model"] = self.model
        if self.data is not None:
            out["data"] = self.data
        out = jsonable(out)
        return out


@dataclass(frozen=True)
class RepairReport:
    """What `kerasdoctor.repair()` did: a view of the RepairResult (`outcome`) with the same
    fields as `fix --repair --format json`, as plain dicts."""

    outcome: RepairResult

    @property
    def repaired(self) -> bool:
        return self.outcome.repaired

    @property
    def cause(self) -> str | None:
        return self.outcome.cause

    @property
    def repair(self) -> str | None:
        """What was changed inside the model."""
        return self.outcome.repair

    @property
    def why(self) -> str | None:
        """Why nothing was changed, when nothing was."""
        return self.outcome.why

    @property
    def before(self) -> dict[str, Any]:
        """Held-out part: per-class recall, balanced accuracy..."""
        out: dict[str, Any] = self.to_dict()["before"]
        return out

    @property
    def after(self) -> dict[str, Any] | None:
        out: dict[str, Any] | None = self.to_dict()["after"]
        return out

    @property
    def gain(self) -> float | None:
        return self.outcome.gain

    @property
    def instead(self) -> list[dict[str, Any]]:
        """What to do when no surgery cures the cause."""
        return [f.to_dict() for f in self.outcome.instead]

    @property
    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = self.to_dict()["details"]
        return out

    @property
    def diagnosis_after(self) -> dict[str, Any] | None:
        out: dict[str, Any] | None = self.to_dict()["diagnosis_after"]
        return out

    @property
    def result(self) -> dict[str, Any]:
        """The whole JSON result."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return self.outcome.to_dict()


# ------------------------------------------------------------------ --threshold, per task


@dataclass(frozen=True)
class LabelThresholds:
    """`fix --threshold` on a multi-label model: a cut per label chosen on one half of the
    rows, kept where it beats 0.5 on the other beyond noise."""

    task: ClassVar[str] = "multilabel"
    objective: ClassVar[str] = "balanced-accuracy"
    rule: ClassVar[str] = "score > threshold"
    score: ClassVar[str] = "P(label), per label"

    model: str
    data: str
    head: str
    default_threshold: float
    split: str
    validation: str
    seed: int
    fit_rows: int
    heldout_rows: int
    thresholds: tuple[float, ...]
    logit_thresholds: tuple[float, ...] | None  # the model outputs logits
    validated_labels: tuple[str, ...]
    labels: tuple[LabelRow, ...]
    label_counts: tuple[int, ...]
    class_names: tuple[str, ...]
    before: LabelSummary
    after: LabelSummary
    code: str
    repair_command: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "data": self.data,
            "task": self.task,
            "head": self.head,
            "score": self.score,
            "objective": self.objective,
            "rule": self.rule,
            "default_threshold": self.default_threshold,
            "split": self.split,
            "validation": self.validation,
            "seed": self.seed,
            "fit_rows": self.fit_rows,
            "heldout_rows": self.heldout_rows,
            "thresholds": self.thresholds,
            "logit_thresholds": self.logit_thresholds,
            "validated_labels": self.validated_labels,
            "labels": self.labels,
            "label_counts": self.label_counts,
            "class_names": self.class_names,
            "before": self.before,
            "after": self.after,
            "code": self.code,
            "repair_command": self.repair_command,
            "note": self.note,
        }
        result: dict[str, Any] = jsonable(out)
        return result


@dataclass(frozen=True)
class PositionThreshold:
    """`fix --threshold` on a dense model with one sigmoid unit: one threshold over the
    positions, chosen on one half of the samples, kept when dense.cure_verdict validates it
    on the other."""

    task: ClassVar[str] = "dense"
    head: ClassVar[str] = "one sigmoid unit per position"
    objective: ClassVar[str] = "balanced-accuracy"
    rule: ClassVar[str] = "score > threshold"
    default_threshold: ClassVar[float] = 0.5

    model: str
    data: str
    score: str
    split: str
    validation: str
    seed: int
    fit_samples: int
    heldout_samples: int
    positions_heldout: int
    threshold: float  # the kept one: the fitted cut when validated, else 0.5
    threshold_fitted: float
    validated: bool
    roc_auc: float | None
    class_names: tuple[str, ...]
    ignore_label: int | None
    mask: bool
    before: PositionSummary
    after: PositionSummary  # = before when not validated
    tried: PositionSummary  # what the fitted cut gives
    verdict: CureVerdict
    code: str
    repair_command: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "data": self.data,
            "task": self.task,
            "head": self.head,
            "score": self.score,
            "objective": self.objective,
            "rule": self.rule,
            "default_threshold": self.default_threshold,
            "split": self.split,
            "validation": self.validation,
            "seed": self.seed,
            "fit_samples": self.fit_samples,
            "heldout_samples": self.heldout_samples,
            "positions_heldout": self.positions_heldout,
            "threshold": self.threshold,
            "threshold_fitted": self.threshold_fitted,
            "validated": self.validated,
            "roc_auc": self.roc_auc,
            "class_names": self.class_names,
            "ignore_label": self.ignore_label,
            "mask": self.mask,
            "before": self.before,
            "after": self.after,
            "tried": self.tried,
            "verdict": self.verdict,
            "code": self.code,
            "repair_command": self.repair_command,
            "note": self.note,
        }
        result: dict[str, Any] = jsonable(out)
        return result
