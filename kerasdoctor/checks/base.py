"""What a check is: a spec (id, kind, order, causal edges, tier, thresholds, needs, the tasks it
covers) and a pure run(Context). Everything else (the catalogue, the ranking, explain, JUnit, the
checks a dense or multi-label diagnosis reports) derives from specs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:  # the heavy side stays out of `kerasdoctor checks` / `explain`
    import numpy as np

    from kerasdoctor.evidence import Evidence
    from kerasdoctor.experiments import Experiments
    from kerasdoctor.model_facts import ModelFacts

# Groups a cause's `explains` may name instead of listing symptom ids one by one.
PREDICTIONS = "@predictions"  # every symptom of wrong predictions (collapse, recall, gates...)
OUTPUT = "@output"  # the output's own symptoms: it does not follow the input

# The diagnoses a model is routed to (core.py): a single-label classifier (the registry's run()
# functions on the probe's evidence), a dense one (per pixel or token: kerasdoctor/dense.py) and
# a multi-label one (multi-hot labels: kerasdoctor/multilabel.py). The last two compute their
# findings from their own pass (and task_causes.py), under the ids of the specs that cover them.
SINGLE_LABEL, DENSE, MULTILABEL = "single-label", "dense", "multilabel"
TASKS = (SINGLE_LABEL, DENSE, MULTILABEL)
ALL_TASKS = frozenset(TASKS)
TASK_NAMES = {SINGLE_LABEL: "single-label", DENSE: "dense", MULTILABEL: "multi-label"}


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
    order: int = 999  # catalogue position (`kerasdoctor checks`, the README, the JSON)
    # causes: what this defect can produce (cause ids, symptom ids, PREDICTIONS, OUTPUT),
    # derived from its mechanism; diagnosis follows these edges transitively
    explains: frozenset[str] = frozenset()
    # causes: findings this one locates more precisely (not causal, but not a root beside it)
    subsumes: frozenset[str] = frozenset()
    # causes: how directly the defect forces the output, lower first (ranking tie-break)
    tier: int = 5
    # symptoms: PREDICTIONS or OUTPUT, the group causes name in `explains`
    group: str = PREDICTIONS
    # what run() reads beyond the evidence and the facts: "symptoms", "experiments"
    needs: frozenset[str] = frozenset()
    # its worked example: a fixture stem (fixtures/<stem>.keras + .npz, made by a script
    # there) on which it fires above info, then any CLI flags; the contract test runs it
    fires_on: tuple[str, ...] = ()
    # causes: what `fix --repair` changes inside the saved model to cure it, without
    # retraining ("" when no surgery can); fix/repair.py holds one repair per such id
    repair: str = ""
    # the diagnoses that report this id (TASKS); a dense or multi-label diagnosis lists
    # exactly the checks that declare its task, with their outcomes (JSON, JUnit)
    tasks: frozenset[str] = frozenset({SINGLE_LABEL})
    # position in the dense and multi-label reports (their checks, and the ranking's order
    # between equals), symptoms and causes apart: there the model-level causes found by
    # experiment come first, upstream first (inputs, statistics, head, loss, decision, data)
    task_order: int = 999
    # the tasks (of `tasks`) whose training callback (DoctorCallback) runs it every epoch: it
    # reads only the single pass and the model's configuration, or degrades to that without
    # the experiment service, so an epoch costs one predict over the validation data
    every_epoch: frozenset[str] = frozenset()

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
        if self.tasks != {SINGLE_LABEL}:
            lines += ["", f"Diagnosed for: {self.task_names()} models."]
        if self.repair:
            lines += [
                "",
                "Repair without retraining (kerasdoctor fix --repair):",
                f"  {self.repair}",
            ]
        return "\n".join(lines)

    def task_names(self) -> str:
        """'single-label, dense and multi-label': the diagnoses that report this id."""
        names = [TASK_NAMES[t] for t in TASKS if t in self.tasks]
        return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


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
    experiments: Experiments | None = None  # the only way a check re-runs the model
    sample_inputs: list[np.ndarray] | None = None  # the bounded sample's inputs
    input_names: list[str] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)  # what each model input takes
    gates: Mapping[str, float] = field(default_factory=dict)  # min_recall, min_balanced_accuracy
    # phase 2: the symptom findings of phase 1 above info, by id (the runner fills it)
    symptoms: dict[str, Finding] = field(default_factory=dict)

    def threshold(self, spec: CheckSpec, name: str) -> float:
        return float(self.overrides.get(spec.id, {}).get(name, spec.thresholds[name].value))

    @property
    def resampled_name(self) -> str | None:
        """The --output of `fix --oversample` for data of DATA's kind (it writes the kind it
        reads: .npz, .csv/.tsv (.gz), .parquet, an image folder), or None for the kinds it
        cannot rewrite (x.npy with --labels, a tf.data directory)."""
        path = unquoted(self.data_path).lower().rstrip("/")
        for suffix in (".npz", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".pq"):
            if path.endswith(suffix):
                return "balanced" + suffix
        p = Path(unquoted(self.data_path))
        tfdata = any((p / name).exists() for name in ("dataset_spec.pb", "snapshot.metadata"))
        if p.is_dir() and not tfdata:  # an image folder
            return "balanced/"
        return None

    def cls(self, k: int) -> str:
        """'2 (grape)', or '2' when the class has no name."""
        name = self.class_names[k] if k < len(self.class_names) else str(k)
        return str(k) if name == str(k) else f"{k} ({name})"


class NotApplicable(Exception):
    """Raised by a check that does not apply to this model or data (no BatchNorm layer, not
    a binary model, layers that cannot be read): the runner records it as skipped with the
    reason, so a report never shows a check that did not run as passed."""


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


def repair_fix(ctx: Context, spec: CheckSpec) -> Fix:
    """`fix --repair` for this cause, with the flags that read DATA: offered first by a
    cause whose cure was measured on the data (the repair fits on one half of DATA and proves
    itself on the other, so the figure it reports is on rows it never fitted)."""
    import shlex

    stem = Path(unquoted(ctx.model_path).rstrip("/")).stem or "model"
    out = shlex.quote(f"{stem}_repaired.keras")
    return Fix(
        f"Repair it inside the model, without retraining: {spec.repair}",
        command=(
            f"kerasdoctor fix --repair {ctx.model_path} {ctx.data_args} "
            f"--cause {spec.id} --output {out}"
        ),
    )


def prediction_symptoms(ctx: Context) -> dict[str, Finding]:
    """The symptom findings (warning or error) of phase 1: what the predictions show."""
    return ctx.symptoms


def names_list(ctx: Context, classes: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(ctx.cls(int(c)) for c in classes[:limit])
    return shown + (f" and {len(classes) - limit} more" if len(classes) > limit else "")
