"""output-activation: a head activation that does not fit the loss (ReLU under a probability
loss, softmax with from_logits=True, sigmoid over several units under a categorical loss)."""

from __future__ import annotations

import pytest
from _helpers import assert_quiet, model, only
from conftest import HEALTHY_FIXTURES, diagnose_fixture

ID = "output-activation"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_relu_head_under_probability_loss_is_an_error_with_symptoms() -> None:
    report = model("relu_head")
    f = only(report, "output-activation")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["mismatch"] == "not-a-probability"
    assert f.evidence["head"] == "relu" and f.evidence["from_logits"] is None
    assert "missing-classes" in f.evidence["symptoms"]


def test_softmax_with_from_logits_is_info_when_predictions_are_fine() -> None:
    f = only(model("logits_softmax"), "output-activation")
    assert f is not None and f.severity.value == "info"
    assert f.evidence["mismatch"] == "double-squash" and f.evidence["from_logits"] is True
    assert "from_logits=False" in (f.fixes[0].code or "")


def test_sigmoid_over_several_units_under_categorical_loss_is_info() -> None:
    f = only(model("sigmoid_multi"), "output-activation")
    assert f is not None and f.severity.value == "info"
    assert f.evidence["mismatch"] == "sigmoid-categorical" and f.evidence["units"] == 3


def test_output_activation_leaves_one_unit_softmax_to_its_own_check() -> None:
    assert only(model("single_softmax"), "output-activation") is None
