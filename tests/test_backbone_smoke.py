"""End-to-end: the collapsed fixture is sick (exit 1), the healthy one clean (exit 0)."""

from __future__ import annotations

from conftest import fixture_path, run_cli


def test_collapsed_fixture_exits_1_with_symptoms() -> None:
    r = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "json",
    )
    assert r.exit_code == 1
    ids = [f["id"] for f in r.json()["findings"]]
    assert "prediction-collapse" in ids and "missing-classes" in ids


def test_healthy_fixture_exits_0_without_findings() -> None:
    r = run_cli(
        "diagnose", fixture_path("healthy.keras"), fixture_path("healthy.npz"), "--format", "json"
    )
    assert r.exit_code == 0, r.stderr
    assert r.json()["findings"] == []
    assert r.json()["verdict"] == "healthy"
