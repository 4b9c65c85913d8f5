"""single-unit-softmax: a softmax over one unit outputs 1.0 whatever the input; the sigmoid
swap is offered without retraining only when the logits separate the classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import assert_quiet, model, only, override
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

ID = "single-unit-softmax"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


@pytest.mark.parametrize("name", ["single_softmax", "softmax_layer"])
def test_single_unit_softmax_fires_for_dense_and_separate_activation(name: str) -> None:
    f = only(model(name), "single-unit-softmax")
    assert f is not None and f.severity.value == "error"
    # 1.0 up to float32 rounding (CPU kernels may return 0.99999994)
    assert f.evidence["output_min"] == pytest.approx(1.0, abs=1e-6)
    assert f.evidence["output_max"] == pytest.approx(1.0, abs=1e-6)
    assert f.evidence["predicted_class_1"] == f.evidence["n_samples"]
    # the head layer is named from the config, not guessed from a name
    assert f.evidence["head_layer"] == ("head" if name == "single_softmax" else "prob")


def test_single_unit_softmax_offers_the_swap_only_when_the_logits_separate() -> None:
    f = only(model("single_softmax"), "single-unit-softmax")
    bacc = f.evidence["sigmoid_balanced_accuracy_on_sample"]
    assert bacc > 0.9  # Keras trained the logits under the softmax
    assert "--cause single-unit-softmax" in (f.fixes[0].command or "")  # the repair first
    assert "no retraining" in f.fixes[1].summary
    assert "activation = keras.activations.sigmoid" in (f.fixes[1].code or "")
    strict = only(
        model("single_softmax", **override("single-unit-softmax", rescue_balanced_accuracy=1.01)),
        "single-unit-softmax",
    )
    assert not any(
        "no retraining" in fx.summary or "without retraining" in fx.summary for fx in strict.fixes
    )


def test_single_unit_softmax_in_a_savedmodel_is_only_a_hint(tmp_path: Path) -> None:
    from kerasdoctor._keras import keras
    from kerasdoctor.core import Options, diagnose_paths

    m = keras().saving.load_model(fixture_path("model_single_softmax.keras"))
    m.export(str(tmp_path / "sm"), verbose=False)
    report = diagnose_paths(
        str(tmp_path / "sm"), fixture_path("model_single_softmax.npz"), Options()
    )
    f = only(report, "single-unit-softmax")
    assert f is not None and f.severity.value == "info"  # a saturated sigmoid looks the same
    assert f.evidence["inferred_from_outputs"] is True
    assert report.finding("constant-output") is not None
