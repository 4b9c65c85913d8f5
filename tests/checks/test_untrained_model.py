"""untrained-model: weights still at their initial values, or an optimizer that never
stepped, with predictions at chance; and the optimizer step count it reads from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers import assert_quiet, context, model, one, only, override
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

from kerasdoctor.checks import untrained_model

ID = "untrained-model"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_compiled_but_never_fitted_model_is_untrained() -> None:
    report = model("untrained")
    assert report.model.optimizer_iterations == 0
    f = only(report, "untrained-model")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["weights_at_initial_values"] is True
    # both signs: fires whatever the accuracy
    strict = override("untrained-model", max_chance_gain=-1.0)
    assert only(model("untrained", **strict), "untrained-model") is not None


def test_initial_weights_after_steps_need_chance_level_predictions() -> None:
    f = only(model("cce_one_unit"), "untrained-model")
    assert f is not None and f.evidence["optimizer_iterations"] > 0
    gain = f.evidence["chance_gain"]
    quiet = override("untrained-model", max_chance_gain=gain - 0.01)
    assert only(model("cce_one_unit", **quiet), "untrained-model") is None


def test_trained_then_recompiled_model_is_not_untrained(tmp_path: Path) -> None:
    from kerasdoctor._keras import keras
    from kerasdoctor.core import Options, diagnose_paths

    k = keras()
    m = k.saving.load_model(fixture_path("healthy.keras"))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")  # a fresh optimizer
    path = tmp_path / "recompiled.keras"
    m.save(path)
    report = diagnose_paths(str(path), fixture_path("healthy.npz"), Options())
    assert report.model.optimizer_iterations == 0
    assert report.finding("untrained-model") is None


@pytest.mark.parametrize(
    ("model_file", "expected"),
    [("legacy_keras2.h5", 450), ("healthy.keras", 570), ("model_untrained.keras", 0)],
)
def test_optimizer_iterations_read_from_files(model_file: str, expected: int) -> None:
    from kerasdoctor.load import load_model
    from kerasdoctor.model_facts import read_facts

    assert read_facts(load_model(fixture_path(model_file))).optimizer_iterations == expected


def test_optimizer_iterations_none_when_h5_holds_no_optimizer(tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras", reason="writes a Keras 2 .h5: pip install tf-keras")

    from kerasdoctor.load import load_model
    from kerasdoctor.model_facts import read_facts

    m = tf_keras.Sequential([tf_keras.layers.Dense(3, input_dim=4, activation="softmax")])
    m.compile("adam", "categorical_crossentropy")
    x = np.zeros((8, 4), np.float32)
    m.fit(x, np.eye(3, dtype=np.float32)[np.arange(8) % 3], epochs=1, verbose=0)
    with_opt, without = tmp_path / "with.h5", tmp_path / "without.h5"
    m.save(with_opt)
    m.save(without, include_optimizer=False)
    assert read_facts(load_model(with_opt)).optimizer_iterations == 1
    assert read_facts(load_model(without)).optimizer_iterations is None


@pytest.mark.unit
def test_max_chance_gain_on_built_evidence_both_sides() -> None:
    """No TensorFlow. An optimizer at 0 steps and no bias or BatchNorm to look at: the
    predictions decide. 75% balanced accuracy on two classes is half the way from chance
    (50%) to perfect, a chance gain of exactly 0.5."""
    conf = [[75, 25], [25, 75]]
    never = {"optimizer_iterations": 0, "compiled": True, "optimizer": "adam"}

    def run(gain: float) -> list[Any]:
        return untrained_model.run(
            context(conf, facts=never, overrides={ID: {"max_chance_gain": gain}})
        )

    f = one(run(0.5))
    assert f.evidence["chance_gain"] == pytest.approx(0.5)
    assert f.evidence["weights_at_initial_values"] is None
    assert run(0.49) == []
