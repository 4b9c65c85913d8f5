"""Quality gates: --min-recall / --min-balanced-accuracy become a `quality-gate` error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import diagnose_fixture, fixture_path, run_cli

from kerasdoctor.checks import get
from kerasdoctor.findings import Kind, Severity

COLLAPSED = (fixture_path("collapsed.keras"), fixture_path("collapsed.npz"))
HEALTHY = (fixture_path("healthy.keras"), fixture_path("healthy.npz"))


def recalls(model: str, data: str) -> dict[int, float]:
    r = diagnose_fixture(model, data)
    return {c.index: c.recall for c in r.metrics.per_class if c.support > 0}


@pytest.mark.unit
def test_quality_gate_is_a_registered_symptom() -> None:
    check = get("quality-gate")
    assert check is not None and check.spec.kind is Kind.SYMPTOM
    assert "min_recall" in check.spec.measures


def test_min_recall_on_the_collapsed_model_names_the_classes_and_exits_1() -> None:
    res = run_cli("diagnose", *COLLAPSED, "--format", "json", "--min-recall", "0.9")
    assert res.exit_code == 1, res.stderr
    gate = next(f for f in res.json()["findings"] if f["id"] == "quality-gate")
    assert gate["severity"] == "error" and gate["kind"] == "symptom"
    rec = recalls("collapsed.keras", "collapsed.npz")
    below = sorted(k for k, v in rec.items() if v < 0.9)
    assert below, "the collapsed fixture has classes under 90% recall"
    assert sorted(c["class"] for c in gate["evidence"]["classes"]) == below
    names = diagnose_fixture("collapsed.keras", "collapsed.npz").data.class_names
    for k in below:
        assert f"{k} ({names[k]})" in gate["title"]
    assert gate["evidence"]["min_recall"] == 0.9


def test_min_recall_on_the_healthy_model_exits_0() -> None:
    rec = recalls("healthy.keras", "healthy.npz")
    assert min(rec.values()) >= 0.9
    res = run_cli("diagnose", *HEALTHY, "-f", "json", "--min-recall", "0.9", "--fail-on", "warning")
    assert res.exit_code == 0, res.stderr
    assert res.json()["findings"] == []


def test_recall_gate_both_sides_of_the_boundary() -> None:
    rec = recalls("collapsed.keras", "collapsed.npz")
    levels = sorted(set(rec.values()))
    assert len(levels) >= 2
    bar = levels[1]  # one class sits exactly on the bar: it passes; those under it fail
    r = diagnose_fixture("collapsed.keras", "collapsed.npz", gates={"min_recall": bar})
    gate = r.finding("quality-gate")
    assert gate is not None
    assert {c["class"] for c in gate.evidence["classes"]} == {k for k in rec if rec[k] < bar}
    r = diagnose_fixture("collapsed.keras", "collapsed.npz", gates={"min_recall": levels[0]})
    assert r.finding("quality-gate") is None


def test_balanced_accuracy_gate_both_sides() -> None:
    r0 = diagnose_fixture("collapsed.keras", "collapsed.npz")
    bacc = r0.metrics.balanced_accuracy
    above = diagnose_fixture(
        "collapsed.keras", "collapsed.npz", gates={"min_balanced_accuracy": bacc + 0.01}
    )
    gate = above.finding("quality-gate")
    assert gate is not None and gate.severity is Severity.ERROR
    assert np.isclose(gate.evidence["balanced_accuracy"], bacc)
    assert "classes" not in gate.evidence  # no recall gate was set
    below = diagnose_fixture(
        "collapsed.keras", "collapsed.npz", gates={"min_balanced_accuracy": bacc - 0.01}
    )
    assert below.finding("quality-gate") is None


def test_no_gate_no_finding_and_flag_bounds() -> None:
    assert diagnose_fixture("collapsed.keras", "collapsed.npz").finding("quality-gate") is None
    res = run_cli("diagnose", *HEALTHY, "--min-recall", "1.5")
    assert res.exit_code == 2


def test_gates_from_the_config_file_and_flags_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.kerasdoctor]\nmin_balanced_accuracy = 0.999\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    res = run_cli("diagnose", *HEALTHY, "-f", "json")
    assert res.exit_code == 1  # 99% balanced accuracy is under the file's 99.9% bar
    assert [f["id"] for f in res.json()["findings"]] == ["quality-gate"]
    res = run_cli("diagnose", *HEALTHY, "-f", "json", "--min-balanced-accuracy", "0.9")
    assert res.exit_code == 0 and res.json()["findings"] == []


def test_the_gate_can_be_ignored_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kerasdoctor]\nignore = {"quality-gate" = "gate is advisory this sprint"}\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    res = run_cli("diagnose", *HEALTHY, "-f", "json", "--min-recall", "1.0")
    assert res.exit_code == 0
    assert res.json()["ignored"] == {"quality-gate": "gate is advisory this sprint"}


def test_gates_through_the_python_api() -> None:
    import kerasdoctor

    d = np.load(COLLAPSED[1])
    r = kerasdoctor.diagnose(COLLAPSED[0], d["x"], d["y"], gates={"min_recall": 0.5})
    gate = r.finding("quality-gate")
    assert gate is not None and r.verdict == "sick"
