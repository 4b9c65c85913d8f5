"""Typed results: Severity, Fix, Finding, CheckError, LoggedExperiment and the Report they
form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult, ProbeResult
    from kerasdoctor.sections import DataSection, Metrics, ModelSection

SCHEMA_VERSION = 1


class Severity(str, Enum):
    """How bad a finding is; ordered error > warning > info."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 3, "warning": 2, "info": 1}[self.value]


class Kind(str, Enum):
    """A symptom is what the predictions show; a cause is why."""

    SYMPTOM = "symptom"
    CAUSE = "cause"


@dataclass(frozen=True)
class Fix:
    """One remedy: a sentence, and optionally a command or a code snippet to paste."""

    summary: str
    command: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "command": self.command, "code": self.code}


@dataclass(frozen=True)
class Outcome:
    """What one check did on this run: passed (applied, found nothing), found (reported
    findings), skipped (did not apply, was ignored or not selected: the reason says which)
    or errored (crashed; the others still ran)."""

    check_id: str
    kind: Kind
    status: str  # "passed" | "found" | "skipped" | "errored"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.check_id, "kind": self.kind.value, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Finding:
    """One verdict of one check, with the numbers behind it."""

    id: str
    kind: Kind
    severity: Severity
    title: str
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    fixes: tuple[Fix, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "title": self.title,
            "detail": self.detail,
            "evidence": to_jsonable(dict(self.evidence)),
            "fixes": [f.to_dict() for f in self.fixes],
        }


@dataclass(frozen=True)
class CheckError:
    """A check that crashed: reported, never swallowed (exit code 3)."""

    check_id: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check_id, "error": self.message}


@dataclass(frozen=True)
class LoggedExperiment:
    """One entry of the report's experiment log: the typed result the experiment service
    returned, or, for a dense or multi-label check that measures its own cure on the pass
    (no service, no key), the object its finding's evidence records; with the id of the
    finding it backs, if any."""

    result: ExperimentResult | ProbeResult | None = None
    finding: str | None = None
    recorded: Mapping[str, Any] = field(default_factory=dict)  # when there is no result

    @property
    def key(self) -> str | None:
        if self.result is not None:
            return self.result.key
        key = self.recorded.get("key")
        return None if key is None else str(key)

    @property
    def what(self) -> str:
        return self.result.what if self.result is not None else str(self.recorded.get("what", ""))

    @property
    def seconds(self) -> float | None:
        """How long the service took (None for a check's own measurement); never in the JSON."""
        return self.result.seconds if self.result is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The log's JSON object: without seconds, so the same command gives byte-identical
        output; the finding's id last."""
        if self.result is not None:
            out = self.result.to_dict()
        else:
            out = {k: v for k, v in self.recorded.items() if k != "seconds"}
        if self.finding is not None:
            out["finding"] = self.finding
        return out


@dataclass(frozen=True)
class Report:
    """Everything one diagnosis produced; renderers and the exit policy read only this."""

    model: ModelSection
    data: DataSection
    metrics: Metrics  # DenseMetrics / MultiLabelMetrics for those tasks
    findings: tuple[Finding, ...]
    errors: tuple[CheckError, ...] = ()
    chain: tuple[str, ...] = ()
    ignored: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    # every experiment the diagnosis ran on the bounded sample (kerasdoctor.experiments)
    experiments: tuple[LoggedExperiment, ...] = ()
    # what every registered check did on this run (JUnit lists exactly these)
    outcomes: tuple[Outcome, ...] = ()
    # the severity that fails this diagnosis (--fail-on / fail_on=): `passed` and the CLI's
    # exit code read it; the findings are the same whatever it says
    fail_on: str = "error"

    @property
    def passed(self) -> bool:
        """No check crashed and no finding is at or above fail_on (the CLI's exit code 0)."""
        from kerasdoctor.policy import exit_code

        return exit_code(self, self.fail_on) == 0

    @property
    def verdict(self) -> str:
        return "sick" if any(f.severity is Severity.ERROR for f in self.findings) else "healthy"

    @property
    def symptoms(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is Kind.SYMPTOM)

    @property
    def causes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is Kind.CAUSE)

    @property
    def root_cause(self) -> Finding | None:
        """The most likely root cause: the first cause above info, if any."""
        for f in self.causes:
            if f.severity is not Severity.INFO:
                return f
        return None

    def finding(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kerasdoctor_version": self.version,
            "model": to_jsonable(self.model.to_dict()),
            "data": to_jsonable(self.data.to_dict()),
            "metrics": to_jsonable(self.metrics.to_dict()),
            "findings": [f.to_dict() for f in self.findings],
            "verdict": self.verdict,
            "root_cause": self.root_cause.id if self.root_cause else None,
            "chain": list(self.chain),
            "errors": [e.to_dict() for e in self.errors],
        }
        if self.outcomes:
            out["checks"] = [o.to_dict() for o in self.outcomes]
        if self.experiments:
            out["experiments"] = [to_jsonable(e.to_dict()) for e in self.experiments]
        if self.ignored:
            out["ignored"] = dict(self.ignored)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __rich__(self) -> Any:
        from kerasdoctor.render.table import report_renderable

        return report_renderable(self)

    def _repr_html_(self) -> str:
        from kerasdoctor.render.html import render_html

        return render_html(self, standalone=False)


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays to plain Python; NaN/Inf to None so the JSON stays strict."""
    import math

    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, 6)
    if isinstance(value, Enum):
        return value.value
    return value
