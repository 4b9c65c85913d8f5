"""dead-units: ReLU units at 0 for every sample; an entirely dead layer is an error, a mostly
dead one a warning, each threshold on both sides on the fixture and on built evidence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import COLLAPSED, assert_quiet, context, model, one, only, override
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import dead_units
from kerasdoctor.evidence import ActivationStats
from kerasdoctor.findings import Severity

ID = "dead-units"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_entirely_dead_layer_is_an_error() -> None:
    f = only(model("dead_relu"), "dead-units")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["entirely_dead_layers"] == ["hidden2"]
    assert f.evidence["dead_fraction"] == 1.0
    assert f.evidence["output_spread"] < 1e-6


def test_dead_units_needs_enough_samples() -> None:
    n = model("dead_relu").data.n_samples
    assert only(model("dead_relu", **override("dead-units", min_samples=n)), "dead-units")
    assert (
        only(model("dead_relu", **override("dead-units", min_samples=n + 1)), "dead-units") is None
    )


def test_mostly_dead_layer_threshold_both_sides() -> None:
    f = only(model("relu_head"), "dead-units")  # 4 of 5 relu output units dead
    assert f is not None and f.severity.value == "warning"
    frac = f.evidence["dead_fraction"]
    assert only(model("relu_head", **override("dead-units", mostly_dead=frac)), "dead-units")
    above = override("dead-units", mostly_dead=frac + 0.01)
    assert only(model("relu_head", **above), "dead-units") is None


# -- the thresholds on built evidence (no TensorFlow): one hidden ReLU layer, collapsed output


def _relu(dead: int, units: int, n: int) -> ActivationStats:
    """A ReLU layer of `units` units watched over n samples, the first `dead` never above 0."""
    active = np.r_[np.zeros(dead, np.int64), np.full(units - dead, n // 2, np.int64)]
    return ActivationStats("hidden", "relu", active, np.where(active > 0, 1.0, 0.0), n)


def _built(dead: int, units: int, **thresholds: float) -> list[Any]:
    n = int(np.sum(COLLAPSED))
    ctx = context(
        COLLAPSED, constant=True, activations=[_relu(dead, units, n)], overrides={ID: thresholds}
    )
    return dead_units.run(ctx)


@pytest.mark.unit
def test_min_samples_on_built_evidence_both_sides() -> None:
    n = int(np.sum(COLLAPSED))
    f = one(_built(4, 4, min_samples=n))
    assert f.severity is Severity.ERROR and f.evidence["entirely_dead_layers"] == ["hidden"]
    assert f.evidence["n_samples"] == n
    assert _built(4, 4, min_samples=n + 1) == []


@pytest.mark.unit
def test_mostly_dead_on_built_evidence_both_sides() -> None:
    f = one(_built(3, 4, mostly_dead=0.75))  # 3 of 4 units silent, the predictions collapsed
    assert f.severity is Severity.WARNING and f.evidence["dead_fraction"] == 0.75
    assert f.evidence["entirely_dead_layers"] == []
    assert _built(3, 4, mostly_dead=0.76) == []
