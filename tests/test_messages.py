"""Every sentence agrees with its evidence: each class a finding names in its title or detail
is named with the index its evidence holds, under the report's own class names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import diagnose_fixture, single_label_models


def _pairs() -> list[tuple[str, str]]:
    return [(m.name, m.with_suffix(".npz").name) for m in single_label_models()]


def _ints(value: Any) -> set[int]:
    """Every integer anywhere in an evidence structure (class indices among them)."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_ints(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_ints(v) for v in value)) if value else set()
    return set()


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_every_class_named_is_the_one_the_evidence_holds(model: str, data: str) -> None:
    report = diagnose_fixture(model, data)
    names = report.data.class_names
    for f in report.findings:
        text = f"{f.title}\n{f.detail}"
        for idx, name in re.findall(r"\b(\d+) \(([^()]+)\)", text):
            k = int(idx)
            if name not in names:
                continue  # "(3 samples)", "(95%)": not a class
            assert k < len(names) and names[k] == name, (f.id, idx, name)
            assert k in _ints(dict(f.evidence)), (
                f.id,
                f"class {k} ({name}) is named but the evidence does not hold it",
            )
