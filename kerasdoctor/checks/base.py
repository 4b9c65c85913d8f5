"""What a check is: a spec (id, kind, docs, named thresholds) and a pure run(Context)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:  # the heavy side stays out of `kerasdoctor checks` / `explain`
    import numpy as np

    from kerasdoctor.model_facts import ModelFacts
    from kerasdoctor.probe import Evidence, Predictor


@dataclass(frozen=True)
class Threshold:
    """A named, documented default; overridable per check from the configuration."""

    value: float
    why: str


@dataclass(frozen=True)
class CheckSpec:
    """The catalogue entry of one finding id."""

    id: str
    kind: Kind
    summary: str  # one line, for `kerasdoctor checks`
    measures: str  # how it is measured
    fix: str  # how to fix it, in words
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)

    def explain(self) -> str:
        """The text of `kerasdoctor explain ID`."""
        lines = [
            f"{self.id} ({self.kind.value})",
            "",
            self.summary,
            "",
            "How it is measured:",
            f"  {self.measures}",
        ]
        if self.thresholds:
            lines += ["", "Thresholds (override in [tool.kerasdoctor.thresholds]):"]
            for name, t in self.thresholds.items():
                lines.append(f"  {name} = {t.value:g}: {t.why}")
        lines += ["", "How to fix it:", f"  {self.fix}"]
        return "\n".join(lines)


@dataclass
class Context:
    """What a check may read: the evidence of the pass, the model facts, and the settings."""

    evidence: Evidence
    facts: ModelFacts
    class_names: list[str]
    model_path: str = "MODEL"
    data_path: str = "DATA"
    data_args: str = "DATA"  # data_path plus the flags that say how to read it, for commands
    label_encoding: str = "index"
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    predictor: Predictor | None = None  # for checks that re-run a bounded sample
    sample_inputs: list[np.ndarray] | None = None  # the bounded sample's inputs
    input_names: list[str] = field(default_factory=list)
    gates: Mapping[str, float] = field(default_factory=dict)  # min_recall, min_balanced_accuracy
    _cache: dict[str, Any] = field(default_factory=dict)

    def threshold(self, spec: CheckSpec, name: str) -> float:
        return float(self.overrides.get(spec.id, {}).get(name, spec.thresholds[name].value))

    @property
    def data_is_npz(self) -> bool:
        """Whether DATA is an .npz (what `fix --oversample` reads and writes)."""
        return unquoted(self.data_path).lower().endswith(".npz")

    def cls(self, k: int) -> str:
        """'2 (grape)', or '2' when the class has no name."""
        name = self.class_names[k] if k < len(self.class_names) else str(k)
        return str(k) if name == str(k) else f"{k} ({name})"

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Share an expensive derived figure (e.g. a re-run) between checks."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


def finding(
    spec: CheckSpec,
    severity: Severity,
    title: str,
    detail: str,
    evidence: Mapping[str, Any],
    fixes: Sequence[Fix] = (),
) -> Finding:
    """Build a Finding of this spec's id and kind."""
    return Finding(spec.id, spec.kind, severity, title, detail, dict(evidence), tuple(fixes))


def unquoted(path: str) -> str:
    """ctx.model_path/data_path are shell-quoted; the plain path back."""
    import shlex

    try:
        parts = shlex.split(path)
    except ValueError:
        return path
    return parts[0] if len(parts) == 1 else path


def prediction_symptoms(ctx: Context) -> dict[str, Finding]:
    """The symptom findings (warning or error) the predictions show, computed once per run.

    Cause checks use them to decide whether a risk factor is the failure. The symptom checks
    are pure, so re-running them here costs a few reductions and keeps threshold overrides.
    """

    def compute() -> dict[str, Finding]:
        from kerasdoctor.checks import (
            constant_output,
            low_recall,
            missing_classes,
            prediction_collapse,
        )

        out: dict[str, Finding] = {}
        for mod in (prediction_collapse, missing_classes, constant_output, low_recall):
            for f in mod.run(ctx):
                if f.severity is not Severity.INFO:
                    out[f.id] = f
        return out

    result: dict[str, Finding] = ctx.cached("symptoms", compute)
    return result


def class_weights_fix(ctx: Context) -> Fix:
    return Fix(
        "Train with class weights so the rare classes count as much as the common ones",
        command=f"kerasdoctor fix --class-weights {ctx.data_args}",
    )


def names_list(ctx: Context, classes: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(ctx.cls(int(c)) for c in classes[:limit])
    return shown + (f" and {len(classes) - limit} more" if len(classes) > limit else "")
