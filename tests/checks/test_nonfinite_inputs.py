"""nonfinite-inputs: NaN or Inf in the data, counted exactly per input and feature; one value
is enough."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    GOOD,
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
    stats,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

from kerasdoctor.checks import nonfinite_inputs
from kerasdoctor.findings import Severity

ID = "nonfinite-inputs"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_nonfinite_inputs_fires_on_nan_fixture_with_exact_counts() -> None:
    report = diagnose_fixture("data_nan.keras", "data_nan.npz")
    f = report.finding("nonfinite-inputs")
    assert f is not None and f.severity is Severity.ERROR
    x = np.load(fixture_path("data_nan.npz"))["x"]
    row = one(f.evidence["inputs"])
    assert row["n_nan"] == int(np.isnan(x).sum()) and row["n_inf"] == int(np.isinf(x).sum())
    assert row["features"][0]["feature"] == 2  # the column that lost its values
    bad_rows = int((~np.isfinite(x)).any(axis=1).sum())
    assert row["rows_affected_at_least"] <= bad_rows <= row["rows_affected_at_most"]
    assert report.root_cause is not None and report.root_cause.id == "nonfinite-inputs"


@pytest.mark.unit
def test_nonfinite_inputs_one_value_is_enough() -> None:
    n = int(np.sum(GOOD))
    x = np.random.default_rng(0).normal(size=(n, 3))
    assert nonfinite_inputs.run(context(GOOD, [stats("x", x)])) == []
    x[7, 1] = np.inf
    f = one(nonfinite_inputs.run(context(GOOD, [stats("x", x)])))
    assert f.severity is Severity.ERROR and f.evidence["n_nonfinite"] == 1
    assert f.evidence["inputs"][0]["features"] == [{"feature": 1, "n_nan": 0, "n_inf": 1}]


@pytest.mark.parametrize("name", ["data_nan"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(nonfinite_inputs.SPEC)
