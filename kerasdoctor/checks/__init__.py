"""The registry: one module per finding id, discovered in this package."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from kerasdoctor.checks.base import CheckSpec, Context
from kerasdoctor.findings import CheckError, Finding, Kind

# The contract's catalogue order; checks added later sort after these.
CATALOGUE_ORDER = (
    "prediction-collapse",
    "missing-classes",
    "low-recall",
    "constant-output",
    "class-imbalance",
    "input-scale",
    "input-scale-mismatch",
    "nonfinite-inputs",
    "nonfinite-weights",
    "single-unit-softmax",
    "output-activation",
    "loss-mismatch",
    "output-units-mismatch",
    "dead-units",
    "batchnorm-statistics",
    "preprocessing-mismatch",
    "decision-threshold",
    "untrained-model",
    "sorted-labels",
    "label-permutation",
)


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
    order = {cid: i for i, cid in enumerate(CATALOGUE_ORDER)}
    checks.sort(
        key=lambda c: (c.spec.kind is not Kind.SYMPTOM, order.get(c.spec.id, 999), c.spec.id)
    )
    return checks


def get(check_id: str) -> Check | None:
    return next((c for c in registry() if c.spec.id == check_id), None)


def run_all(
    ctx: Context, skip: frozenset[str] = frozenset(), only: frozenset[str] | None = None
) -> tuple[list[Finding], list[CheckError]]:
    """Run every check (or just `only`); a crash becomes a CheckError and the others still run."""
    findings: list[Finding] = []
    errors: list[CheckError] = []
    for check in registry():
        if check.spec.id in skip or (only is not None and check.spec.id not in only):
            continue
        try:
            findings.extend(check.run(ctx))
        except Exception as exc:  # habit 4: report, never abort the others
            errors.append(CheckError(check.spec.id, f"{type(exc).__name__}: {exc}"))
    return findings, errors
