"""The registry: one module per finding id, discovered in this package.

Listing the specs (`kerasdoctor checks`, `explain ID`) imports every check module, so a check
module imports nothing heavy at its top: numpy through kerasdoctor._lazy, and the kerasdoctor
modules that import numpy (experiments, metrics, probe, model_facts) inside the functions that
use them. tests/test_startup.py keeps it so."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from kerasdoctor.checks.base import SINGLE_LABEL, TASKS, CheckSpec, Context, NotApplicable
from kerasdoctor.findings import CheckError, Finding, Kind, Outcome, Severity


@dataclass(frozen=True)
class Check:
    """A registered check: its catalogue entry and its pure function."""

    spec: CheckSpec
    run: Callable[[Context], list[Finding]]


def _modules() -> list[ModuleType]:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return mods


def registry() -> list[Check]:
    """Every check, symptoms first, in catalogue order."""
    checks = []
    for mod in _modules():
        spec = getattr(mod, "SPEC", None)
        if isinstance(spec, CheckSpec):
            checks.append(Check(spec, mod.run))
    checks.sort(key=lambda c: (c.spec.kind is not Kind.SYMPTOM, c.spec.order, c.spec.id))
    return checks


def for_task(task: str) -> list[Check]:
    """The checks a diagnosis of this task reports (their specs declare it), symptoms first:
    single-label in catalogue order, dense and multi-label in their task order."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: one of {', '.join(TASKS)}")
    checks = [c for c in registry() if task in c.spec.tasks]
    if task != SINGLE_LABEL:
        checks.sort(key=lambda c: (c.spec.kind is not Kind.SYMPTOM, c.spec.task_order, c.spec.id))
    return checks


def every_epoch(task: str) -> frozenset[str]:
    """The ids the training callback (DoctorCallback) runs each epoch for a model of this task:
    the checks whose spec declares it (CheckSpec.every_epoch). They read only the single pass
    and the model's configuration; the causes that re-run the model on a sample wait for
    `kerasdoctor.diagnose`."""
    return frozenset(c.spec.id for c in for_task(task) if task in c.spec.every_epoch)


def get(check_id: str) -> Check | None:
    return next((c for c in registry() if c.spec.id == check_id), None)


@dataclass(frozen=True)
class CheckRun:
    """One run of the registry: the findings, the crashes, and each check's outcome."""

    findings: list[Finding]
    errors: list[CheckError]
    outcomes: list[Outcome]


def run_checks(
    ctx: Context,
    skip: Mapping[str, str] | frozenset[str] = frozenset(),
    only: frozenset[str] | None = None,
) -> CheckRun:
    """Run the checks in two phases; a crash becomes a CheckError and the others still run.

    Phase 1 runs the symptom checks on the evidence. Phase 2 runs the cause checks, which
    receive phase 1's findings above info in ctx.symptoms. No check runs another. Checks
    in `skip` (id -> reason, e.g. ignored in the config) or outside `only` are skipped, and
    a check that raises NotApplicable is skipped with its reason.
    """
    reasons = dict(skip) if isinstance(skip, Mapping) else {cid: "" for cid in skip}
    run = CheckRun([], [], [])
    checks = for_task(SINGLE_LABEL)
    for phase in (Kind.SYMPTOM, Kind.CAUSE):
        if phase is Kind.CAUSE:
            ctx.symptoms = symptoms_of(run.findings)
        for check in (c for c in checks if c.spec.kind is phase):
            cid = check.spec.id
            if cid in reasons:
                why = reasons[cid]
                run.outcomes.append(
                    Outcome(cid, phase, "skipped", f"ignored: {why}" if why else "ignored")
                )
                continue
            if only is not None and cid not in only:
                run.outcomes.append(Outcome(cid, phase, "skipped", "not selected"))
                continue
            try:
                found = check.run(ctx)
            except NotApplicable as na:
                run.outcomes.append(Outcome(cid, phase, "skipped", str(na)))
                continue
            except Exception as exc:  # habit 4: report, never abort the others
                msg = f"{type(exc).__name__}: {exc}"
                run.errors.append(CheckError(cid, msg))
                run.outcomes.append(Outcome(cid, phase, "errored", msg))
                continue
            run.findings.extend(found)
            run.outcomes.append(Outcome(cid, phase, "found" if found else "passed"))
    return run


def run_all(
    ctx: Context, skip: frozenset[str] = frozenset(), only: frozenset[str] | None = None
) -> tuple[list[Finding], list[CheckError]]:
    """run_checks, findings and crashes only."""
    run = run_checks(ctx, skip, only)
    return run.findings, run.errors


def symptoms_of(findings: list[Finding]) -> dict[str, Finding]:
    """What phase 2 receives: the symptom findings above info, by id."""
    return {f.id: f for f in findings if f.kind is Kind.SYMPTOM and f.severity is not Severity.INFO}


def run_symptoms(ctx: Context) -> list[Finding]:
    """Phase 1 alone, filling ctx.symptoms (for a cause check run by itself, as in tests)."""
    findings: list[Finding] = []
    for check in (c for c in for_task(SINGLE_LABEL) if c.spec.kind is Kind.SYMPTOM):
        try:
            findings.extend(check.run(ctx))
        except NotApplicable:
            continue
    ctx.symptoms = symptoms_of(findings)
    return findings
