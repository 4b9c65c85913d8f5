"""loss-mismatch: a loss that does not fit the head or the labels (categorical on one unit,
binary on several classes); quiet when only the evaluation encoding differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import assert_quiet, model, only
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

ID = "loss-mismatch"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_categorical_loss_on_one_unit_is_an_error_confirmed_by_unmoved_biases() -> None:
    f = only(model("cce_one_unit"), "loss-mismatch")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["loss"] == "categorical_crossentropy" and f.evidence["units"] == 1
    assert f.evidence["optimizer_iterations"] > 0
    assert f.evidence["biases_still_zero"] is True


def test_binary_crossentropy_on_three_classes_is_an_error() -> None:
    f = only(model("bce_multiclass"), "loss-mismatch")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["samples_with_label_above_1"] == 200


def test_loss_mismatch_quiet_when_loss_fits_even_if_eval_encoding_differs() -> None:
    # trained with one-hot categorical_crossentropy, evaluated here with one-hot labels;
    # the legacy file was trained one-hot and its npz is one-hot too, healthy_imbalanced is
    # sparse-trained but evaluated with one-hot labels: neither is a mismatch
    for m, d in (
        ("healthy_imbalanced.keras", "healthy_imbalanced.npz"),
        ("model_sigmoid_multi.keras", "model_sigmoid_multi.npz"),
    ):
        assert only(diagnose_fixture(m, d), "loss-mismatch") is None


def test_unknown_loss_is_noted_not_reported(tmp_path: Path) -> None:
    from kerasdoctor._keras import keras
    from kerasdoctor.core import Options, diagnose_paths

    k = keras()
    src = k.saving.load_model(fixture_path("healthy.keras"), compile=False)
    path = tmp_path / "uncompiled.keras"
    src.save(path)
    report = diagnose_paths(str(path), fixture_path("healthy.npz"), Options())
    assert report.model.loss is None
    assert any("no compiled loss" in n for n in report.model.notes)
    assert only(report, "loss-mismatch") is None
    assert report.model.optimizer_iterations is None
