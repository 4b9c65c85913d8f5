"""nonfinite-weights: NaN or Inf in the weights, named per layer (and not mistaken for dead
units)."""

from __future__ import annotations

import pytest
from _helpers import assert_quiet, model, only
from conftest import HEALTHY_FIXTURES, diagnose_fixture

ID = "nonfinite-weights"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_nan_weights_are_an_error_naming_the_layers() -> None:
    report = model("nan_weights")
    f = only(report, "nonfinite-weights")
    assert f is not None and f.severity.value == "error"
    assert {row["layer"] for row in f.evidence["layers"]} == {"hidden", "head"}
    assert f.evidence["n_nan"] > 0
    assert f.evidence["nonfinite_output_rows"] == report.data.n_samples
    # NaN activations are never > 0, but they are not dead units
    assert only(report, "dead-units") is None
