"""The report of a dense or multi-label diagnosis, assembled one way for both tasks.

Which checks ran comes from the registry (the specs that declare the task: checks.for_task),
each with its outcome (JSON, JUnit); the findings are ranked as the single-label ones are
(diagnosis.rank, with the task's order); the experiment log and the model section are built
here. A finding under an id that no spec declares for the task is a bug, and raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kerasdoctor.findings import Finding, LoggedExperiment, Outcome

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult, ProbeResult
    from kerasdoctor.sections import ModelSection


@dataclass(frozen=True)
class Assembled:
    """What a dense or multi-label Report holds besides its sections and metrics."""

    findings: tuple[Finding, ...]  # ranked: symptoms, then causes, the root first
    chain: tuple[str, ...]
    outcomes: tuple[Outcome, ...]  # one per check of the task, in the task's order
    experiments: tuple[LoggedExperiment, ...]


def task_check_ids(task: str) -> list[str]:
    """The ids a diagnosis of this task reports, in its order."""
    from kerasdoctor.checks import for_task

    return [c.spec.id for c in for_task(task)]


def skipped(opts: Any, ids: Sequence[str]) -> set[str]:
    """Those of `ids` not to report: ignored (the configuration) or outside `only` (the
    training callback's cheap checks)."""
    only = getattr(opts, "only", None)
    return {c for c in ids if c in opts.ignore or (only is not None and c not in only)}


def assemble(
    task: str,
    findings: Sequence[Finding],
    trials: Sequence[ExperimentResult | ProbeResult],
    opts: Any,
) -> Assembled:
    """The outcomes of the task's checks, the findings of those not skipped, ranked, with the
    chain of the root cause, and the experiment log (each finding's experiment, then the
    other cures tried)."""
    from kerasdoctor.checks import for_task
    from kerasdoctor.diagnosis import rank

    checks = for_task(task)
    kinds = {c.spec.id: c.spec.kind for c in checks}
    stray = sorted({f"{f.id} ({f.kind.value})" for f in findings if kinds.get(f.id) is not f.kind})
    if stray:
        raise RuntimeError(
            f"the {task} diagnosis produced {', '.join(stray)}: no check of the registry "
            "declares it for this task with that kind (add the task to its SPEC.tasks)"
        )
    only = getattr(opts, "only", None)
    outcomes, kept = [], []
    for c in checks:
        cid, kind = c.spec.id, c.spec.kind
        mine = [f for f in findings if f.id == cid]
        if cid in opts.ignore:
            outcomes.append(Outcome(cid, kind, "skipped", f"ignored: {opts.ignore[cid]}"))
        elif only is not None and cid not in only:
            outcomes.append(Outcome(cid, kind, "skipped", "not selected"))
        else:
            outcomes.append(Outcome(cid, kind, "found" if mine else "passed"))
            kept += mine
    ordered, chain = rank(kept, list(kinds))
    experiments = tuple(
        _logged(f.evidence["experiment"], f.id, trials)
        for f in ordered
        if "experiment" in f.evidence
    )
    logged = {e.key for e in experiments}
    experiments += tuple(LoggedExperiment(t) for t in trials if t.key not in logged)  # the rest
    return Assembled(tuple(ordered), tuple(chain), tuple(outcomes), experiments)


def _logged(
    experiment: Mapping[str, Any],
    finding: str,
    trials: Sequence[ExperimentResult | ProbeResult],
) -> LoggedExperiment:
    """A finding's experiment as the log holds it: the service's typed result when the
    evidence is that result's object (a model-level cause: task_causes), else the object the
    check recorded from its own measurement on the pass (no key)."""
    key = experiment.get("key")
    typed = next((t for t in trials if key is not None and t.key == key), None)
    if typed is not None and typed.to_dict() == dict(experiment):
        return LoggedExperiment(typed, finding)
    return LoggedExperiment(finding=finding, recorded=dict(experiment))


def model_section(
    lm: Any, facts: Any, notes: Sequence[str], *, dense: bool = False
) -> ModelSection:
    """report.model of a dense or multi-label diagnosis (a dense one adds its output shape)."""
    from kerasdoctor.sections import ModelInput, ModelSection

    return ModelSection(
        path=lm.path,
        format=lm.format,
        inputs=tuple(ModelInput(s.name, tuple(s.shape)) for s in lm.inputs),
        output=lm.output_name,
        output_shape=tuple(lm.output_shape) if dense else None,
        n_outputs=facts.n_outputs,
        head=facts.head,
        loss=facts.loss,
        loss_from_logits=facts.loss_from_logits,
        optimizer_iterations=facts.optimizer_iterations,
        notes=tuple(notes),
    )
