"""preprocessing-mismatch: the data is not prepared as the model was trained on it (a missing
/255, a double rescaling, a Normalization adapted on other data), found statically and
confirmed by the sweep of restoring transforms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _helpers import (
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    one,
    stats,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import preprocessing_mismatch
from kerasdoctor.checks._data import JudgedInput
from kerasdoctor.experiments import balanced_accuracy, noise_bound
from kerasdoctor.findings import Severity
from kerasdoctor.model_facts import Normalizer

ID = "preprocessing-mismatch"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_preprocessing_sweep_finds_the_missing_division_by_255() -> None:
    report = diagnose_fixture("data_raw_pixels.keras", "data_raw_pixels.npz")
    f = report.finding("preprocessing-mismatch")
    assert f is not None and f.severity is Severity.ERROR
    best = f.evidence["restoring_transform"]
    assert best["transform"] == "/255" and best["balanced_accuracy"] > 0.9
    assert f.evidence["sweep"]["baseline_balanced_accuracy"] < 0.4
    assert f.fixes[0].command and "--cause preprocessing-mismatch" in f.fixes[0].command
    assert f.fixes[1].code == "x = x / 255.0"
    assert report.root_cause is not None and report.root_cause.id == "preprocessing-mismatch"


def test_preprocessing_double_rescaling_found_statically_and_by_the_sweep() -> None:
    f = diagnose_fixture("data_double_rescale.keras", "data_double_rescale.npz").finding(
        "preprocessing-mismatch"
    )
    assert f is not None and f.severity is Severity.ERROR
    static = one(f.evidence["static"])
    assert static["kind"] == "rescaling" and static["scale"] == pytest.approx(1 / 255)
    assert static["range_ratio"] < 0.01
    assert f.evidence["restoring_transform"]["transform"] == "x255"


def test_preprocessing_normalization_adapted_on_other_data() -> None:
    report = diagnose_fixture("data_norm_other.keras", "data_norm_other.npz")
    f = report.finding("preprocessing-mismatch")
    assert f is not None and f.severity is Severity.ERROR  # the output is constant
    static = one(f.evidence["static"])
    assert static["kind"] == "normalization"
    assert static["median_std_after_layer"] < 0.1  # standardised data / raw-data std
    # the data arrives standardised: undoing that with the layer's own adapted mean and
    # variance hands the model what it was trained on, and the experiment shows it
    assert "Normalization statistics" in f.evidence["restoring_transform"]["description"]
    exp = f.evidence["experiment"]
    assert exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"] > 0.3
    assert report.root_cause is not None and report.root_cause.id == "preprocessing-mismatch"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("data_multi_scale.keras", "data_multi_scale.npz"),  # trained on this data: the
        ("data_tabular_thousands.keras", "data_tabular_thousands.npz"),  # sweep only nudges
        ("collapsed.keras", "collapsed.npz"),
    ],
)
def test_preprocessing_quiet_on_models_trained_on_the_data(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding("preprocessing-mismatch") is None


def _sweep(base: float, best: float, noise: float = 0.0) -> dict[str, Any]:
    trial = {"transform": "/255", "inputs": ["x"], "balanced_accuracy": best, "code": "x"}
    return {"baseline_balanced_accuracy": base, "noise": noise, "trials": [trial]}


@pytest.mark.unit
def test_preprocessing_restoring_thresholds_both_sides() -> None:
    spec = preprocessing_mismatch.SPEC.thresholds
    args = (spec["min_gain"].value, spec["noise_z"].value, spec["min_error_removed"].value)
    assert args == (0.10, 3.0, 0.5)
    restore = preprocessing_mismatch.restoring_transform
    # min_error_removed: 0.5 -> 0.75 removes exactly half the error; 0.74 does not
    assert restore(_sweep(0.5, 0.75), *args) is not None
    assert restore(_sweep(0.5, 0.74), *args) is None
    # min_gain: 0.75 -> 0.875 is a 0.125 gain; 0.875 -> 0.9375 only 0.0625 (half the error)
    assert restore(_sweep(0.75, 0.875), *args) is not None
    assert restore(_sweep(0.875, 0.9375), *args) is None
    # noise: the same 0.125 gain is not enough when 3 x noise is 0.15
    assert restore(_sweep(0.75, 0.875, noise=0.041), *args) is not None
    assert restore(_sweep(0.75, 0.875, noise=0.05), *args) is None


def _judged(x: np.ndarray, norm: Normalizer) -> JudgedInput:
    return JudgedInput(0, stats("x", x), norm)


@pytest.mark.unit
def test_rescaling_range_threshold_both_sides() -> None:
    r = Normalizer("rescaling", "Rescaling", {"scale": 1 / 255, "offset": 0.0})
    lin = np.linspace(0, 1, 100)[:, None]
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin, r), 10) is not None  # [0,1]
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 25.5, r), 10) is not None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 26, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 255, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 2549, r), 10) is None
    assert preprocessing_mismatch.rescaling_mismatch(_judged(lin * 2550, r), 10) is not None


@pytest.mark.unit
def test_normalization_thresholds_both_sides() -> None:
    layer = Normalizer(
        "norm", "Normalization", {"mean": np.array([100.0]), "variance": np.array([400.0])}
    )
    z = np.tile([1.0, -1.0], 200)[:, None]  # mean exactly 0, std exactly 1

    def test(x: np.ndarray) -> Any:
        return preprocessing_mismatch.normalization_mismatch(_judged(x, layer), 10, 3)

    assert test(100 + 20 * z) is None  # the data the layer was adapted on
    standardised = test(z)  # already standardised: std 1/20 after the layer
    assert standardised is not None and standardised["median_std_after_layer"] == 0.05
    assert test(160 + 20 * z) is not None  # 3 std away
    assert test(159 + 20 * z) is None
    assert test(100 + 2.0 * z) is not None  # std 0.1 after the layer
    assert test(100 + 2.1 * z) is None


@pytest.mark.unit
def test_balanced_accuracy_and_its_noise() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    bal = balanced_accuracy(y, np.array([0, 0, 1, 1, 1, 1]), 2)
    assert bal == pytest.approx(0.75)
    # the noise of a difference of two balanced accuracies, every recall at the worst 0.5
    assert noise_bound(np.bincount(y)) == pytest.approx(
        np.sqrt(2) * 0.5 * np.sqrt(1 / 4 + 1 / 2) / 2
    )


@pytest.mark.parametrize("name", ["data_raw_pixels", "data_double_rescale", "data_norm_other"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(preprocessing_mismatch.SPEC)
