"""Golden tests: the CLI's JSON report and exit code per fixture.

Regenerate after an intended change with `python -m pytest tests/test_golden.py --update-golden`
and review the diff; never edit the golden files by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, run_cli

GOLDEN = Path(__file__).resolve().parent / "golden"

CASES = {
    # name: (arguments after `diagnose`, expected exit code)
    "collapsed": (["fixtures/collapsed.keras", "fixtures/collapsed.npz"], 1),
    "healthy": (["fixtures/healthy.keras", "fixtures/healthy.npz"], 0),
    "healthy_imbalanced": (
        ["fixtures/healthy_imbalanced.keras", "fixtures/healthy_imbalanced.npz"],
        0,
    ),
    "multi_input": (["fixtures/multi_input.keras", "fixtures/multi_input.npz"], 0),
    "binary": (["fixtures/binary.keras", "fixtures/binary.npz"], 0),
    "legacy_h5": (["fixtures/legacy_input_dim.h5", "fixtures/legacy_keras2.npz"], 0),
    "savedmodel": (["fixtures/healthy_savedmodel", "fixtures/healthy.npz"], 0),
    "collapsed_sample": (
        ["fixtures/collapsed.keras", "fixtures/collapsed.npz", "--sample", "300", "--seed", "7"],
        1,
    ),
    "collapsed_fail_never": (
        ["fixtures/collapsed.keras", "fixtures/collapsed.npz", "--fail-on", "never"],
        0,
    ),
}


def _normalise(value: Any) -> Any:
    """Floats to 4 significant digits: the golden file pins facts, not the last ulp."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if k != "kerasdoctor_version"}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_report(name: str, update_golden: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES.parent)  # paths in the report are as the user typed them
    args, expected_exit = CASES[name]
    r = run_cli("diagnose", *args, "--format", "json")
    assert r.exit_code == expected_exit, r.stderr
    got = {"exit_code": r.exit_code, "report": _normalise(json.loads(r.stdout))}
    path = GOLDEN / f"{name}.json"
    if update_golden:
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
        return
    assert path.exists(), f"no golden file {path.name}: run pytest --update-golden"
    assert got == json.loads(path.read_text())


@pytest.mark.unit
def test_same_command_gives_byte_identical_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES.parent)
    args = [
        "diagnose",
        "fixtures/collapsed.keras",
        "fixtures/collapsed.npz",
        "-f",
        "json",
        "--sample",
        "500",
        "--seed",
        "3",
    ]
    assert run_cli(*args).stdout == run_cli(*args).stdout
