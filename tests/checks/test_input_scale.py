"""input-scale: inputs far from unit scale (raw pixels, unnormalised columns, one feature
dwarfing the others); an error when the output froze, a risk (info) when it predicts well."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    COLLAPSED,
    GOOD,
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
    signs,
    stats,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

from kerasdoctor.checks import input_scale
from kerasdoctor.findings import Severity
from kerasdoctor.model_facts import Normalizer

ID = "input-scale"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_input_scale_fires_on_unnormalised_tabular_fixture() -> None:
    report = diagnose_fixture("data_tabular_thousands.keras", "data_tabular_thousands.npz")
    f = report.finding("input-scale")
    assert f is not None and f.severity is Severity.ERROR  # the output froze
    row = one(f.evidence["inputs"])
    x = np.load(fixture_path("data_tabular_thousands.npz"))["x"].astype(np.float64)
    assert row["rms"] == pytest.approx(float(np.sqrt((x**2).mean())), rel=1e-6)
    assert "magnitude" in row["reasons"] and not row["raw_pixels"]
    assert "constant-output" in f.evidence["symptoms"]
    code = f.fixes[0].code
    assert code is not None and "np.array([" in code and "(x - mean) / std" in code
    assert report.root_cause is not None and report.root_cause.id == "input-scale"


def test_input_scale_names_raw_pixels() -> None:
    f = diagnose_fixture("data_raw_pixels.keras", "data_raw_pixels.npz").finding("input-scale")
    assert f is not None and f.severity is not Severity.INFO
    row = one(f.evidence["inputs"])
    assert row["raw_pixels"] and row["integral"] and row["max"] <= 255
    assert f.fixes[0].code is not None and "/ 255.0" in f.fixes[0].code


def test_input_scale_flags_only_the_unscaled_input_of_a_multi_input_model() -> None:
    f = diagnose_fixture("data_multi_scale.keras", "data_multi_scale.npz").finding("input-scale")
    assert f is not None and f.severity is Severity.WARNING
    assert [r["input"] for r in f.evidence["inputs"]] == ["depth"]


@pytest.mark.unit
def test_input_scale_magnitude_threshold_both_sides() -> None:
    assert input_scale.SPEC.thresholds["max_rms"].value == 10.0
    n = int(np.sum(GOOD))
    at = one(input_scale.run(context(GOOD, [stats("x", signs(n, 4, 10.0))])))
    assert at.severity is Severity.INFO  # the predictions are fine: a risk, not the failure
    assert at.evidence["inputs"][0]["rms"] == pytest.approx(10.0)
    assert input_scale.run(context(GOOD, [stats("x", signs(n, 4, 9.9))])) == []


@pytest.mark.unit
def test_input_scale_spread_threshold_both_sides() -> None:
    n = int(np.sum(GOOD))
    # one feature at 100 among 119 at 1: the pooled RMS stays 9.2 (below max_rms)
    wide = signs(n, 120, np.r_[1.0, 100.0, np.ones(118)])
    f = one(input_scale.run(context(GOOD, [stats("x", wide)])))
    row = f.evidence["inputs"][0]
    assert row["reasons"] == ["feature-spread"] and row["feature_spread"] == 100.0
    assert row["largest_features"][0]["feature"] == 1
    narrow = signs(n, 120, np.r_[1.0, 99.0, np.ones(118)])
    assert input_scale.run(context(GOOD, [stats("x", narrow)])) == []


@pytest.mark.unit
def test_input_scale_severity_follows_the_symptoms() -> None:
    n = int(np.sum(COLLAPSED))
    big = [stats("x", signs(n, 4, 50.0))]
    assert one(input_scale.run(context(COLLAPSED, big))).severity is Severity.WARNING
    frozen = context(COLLAPSED, big, constant=True)
    assert one(input_scale.run(frozen)).severity is Severity.ERROR


@pytest.mark.unit
def test_input_scale_skips_inputs_the_model_normalises_or_reads_as_indices() -> None:
    n = int(np.sum(COLLAPSED))
    big = [stats("x", signs(n, 4, 50.0))]
    rescaled = {"x": Normalizer("rescaling", "Rescaling", {"scale": 0.02, "offset": 0.0})}
    assert input_scale.run(context(COLLAPSED, big, normalizers=rescaled)) == []
    tokens = {"x": ("Embedding",)}
    assert input_scale.run(context(COLLAPSED, big, consumers=tokens)) == []


@pytest.mark.parametrize("name", ["data_raw_pixels", "data_multi_scale", "data_tabular_thousands"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(input_scale.SPEC)
