"""The registry: one module per finding id, discovered in this package."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from kerasdoctor.checks.base import CheckSpec, Context
from kerasdoctor.findings import CheckError, Finding, Kind, Severity


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


def get(check_id: str) -> Check | None:
    return next((c for c in registry() if c.spec.id == check_id), None)


def run_all(
    ctx: Context, skip: frozenset[str] = frozenset(), only: frozenset[str] | None = None
) -> tuple[list[Finding], list[CheckError]]:
    """Run the checks in two phases; a crash becomes a CheckError and the others still run.

    Phase 1 runs the symptom checks on the evidence. Phase 2 runs the cause checks, which
    receive phase 1's findings above info in ctx.symptoms. No check runs another.
    """
    checks = [c for c in registry()
              if c.spec.id not in skip and (only is None or c.spec.id in only)]
    findings, errors = _run_phase(ctx, checks, Kind.SYMPTOM)
    ctx.symptoms = symptoms_of(findings)
    more, more_errors = _run_phase(ctx, checks, Kind.CAUSE)
    return findings + more, errors + more_errors


def symptoms_of(findings: list[Finding]) -> dict[str, Finding]:
    """What phase 2 receives: the symptom findings above info, by id."""
    return {f.id: f for f in findings if f.kind is Kind.SYMPTOM and f.severity is not Severity.INFO}


def run_symptoms(ctx: Context) -> list[Finding]:
    """Phase 1 alone, filling ctx.symptoms (for a cause check run by itself, as in tests)."""
    findings, _ = _run_phase(ctx, registry(), Kind.SYMPTOM)
    ctx.symptoms = symptoms_of(findings)
    return findings


def _run_phase(ctx: Context, checks: list[Check],
               phase: Kind) -> tuple[list[Finding], list[CheckError]]:
    findings: list[Finding] = []
    errors: list[CheckError] = []
    for check in (c for c in checks if c.spec.kind is phase):
        try:
            findings.extend(check.run(ctx))
        except Exception as exc:  # habit 4: report, never abort the others
            errors.append(CheckError(check.spec.id, f"{type(exc).__name__}: {exc}"))
    return findings, errors
