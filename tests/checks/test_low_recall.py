"""low-recall: each class's recall judged with its binomial bound; too small is 'not judged'."""

from __future__ import annotations

import pytest
from _helpers import context
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import low_recall
from kerasdoctor.findings import Severity

# class 2 has 6 samples, none right, and is still predicted 4 times (not a missing class)
NONE_OF_SIX = [[95, 3, 2], [3, 95, 2], [6, 0, 0]]
ONE_OF_THREE = [[95, 3, 2], [3, 95, 2], [2, 0, 1]]


def _run(conf: list[list[int]], **thresholds: float) -> list:  # type: ignore[type-arg]
    return low_recall.run(context(conf, overrides={"low-recall": thresholds}))


@pytest.mark.unit
def test_zero_of_six_right_is_a_finding_with_its_uncertainty() -> None:
    [f] = _run(NONE_OF_SIX)
    assert f.severity is Severity.WARNING
    [row] = f.evidence["classes"]
    assert (row["class"], row["correct"], row["support"]) == (2, 0, 6)
    assert row["recall_upper_bound"] == pytest.approx(1 - 0.05 ** (1 / 6))  # 39%
    assert "0 of 6" in f.detail and "at most 39%" in f.detail


@pytest.mark.unit
def test_one_of_three_is_not_judged_and_says_so() -> None:
    [f] = _run(ONE_OF_THREE)
    assert f.severity is Severity.INFO
    assert f.evidence["classes"] == []
    assert [(c["class"], c["support"]) for c in f.evidence["not_judged"]] == [(2, 3)]
    assert "1 of 3" in f.detail and "not judged" in f.detail


def test_fires_on_a_real_model() -> None:
    f = diagnose_fixture("scn_resnet_raw.keras", "scn_resnet_raw.npz").finding("low-recall")
    assert f is not None and f.severity is Severity.WARNING


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_models(model: str, data: str) -> None:
    f = diagnose_fixture(model, data).finding("low-recall")
    assert f is None or f.severity is Severity.INFO


@pytest.mark.unit
def test_confidence_threshold_both_sides() -> None:
    # 0 of 6 is low at confidence c while 1 - (1 - c)^(1/6) <= 0.5 x 0.95: c <= 0.979
    assert _run(NONE_OF_SIX, confidence=0.97)[0].severity is Severity.WARNING
    assert _run(NONE_OF_SIX, confidence=0.99)[0].severity is Severity.INFO


@pytest.mark.unit
def test_min_support_threshold_both_sides() -> None:
    assert _run(NONE_OF_SIX, min_support=6)[0].severity is Severity.WARNING
    assert _run(NONE_OF_SIX, min_support=7)[0].severity is Severity.INFO
