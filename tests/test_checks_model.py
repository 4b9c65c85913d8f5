"""Model-side cause checks: each fires on the fixture built for it, stays quiet on the healthy
fixtures, and every threshold is tested on both sides (through the configuration overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

MODEL_CHECKS = (
    "single-unit-softmax",
    "output-activation",
    "loss-mismatch",
    "output-units-mismatch",
    "nonfinite-weights",
    "dead-units",
    "batchnorm-statistics",
    "untrained-model",
    "decision-threshold",
)
HEALTHY = [
    *HEALTHY_FIXTURES,
]


def model(name: str, **options: Any) -> Any:
    """The report of fixture model_<name>.keras on model_<name>.npz."""
    return diagnose_fixture(f"model_{name}.keras", f"model_{name}.npz", **options)


def only(report: Any, finding_id: str) -> Any:
    found = [f for f in report.findings if f.id == finding_id]
    assert len(found) <= 1
    return found[0] if found else None


def override(check: str, **values: float) -> dict[str, Any]:
    return {"thresholds": {check: values}}


# ----------------------------------------------------------------- quiet where healthy


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY)
def test_model_checks_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    report = diagnose_fixture(model_file, data_file)
    fired = [f.id for f in report.findings if f.id in MODEL_CHECKS]
    assert fired == [], fired
    assert report.errors == ()


def test_collapsed_fixture_blames_no_model_defect() -> None:
    report = diagnose_fixture("collapsed.keras", "collapsed.npz")
    loud = [f.id for f in report.findings if f.id in MODEL_CHECKS and f.severity.value != "info"]
    assert loud == []


# ----------------------------------------------------------------- single-unit-softmax


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
    assert not any("no retraining" in fx.summary or "without retraining" in fx.summary
                   for fx in strict.fixes)


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


# ----------------------------------------------------------------- output-activation


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


# ----------------------------------------------------------------- loss-mismatch


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
    assert report.model["loss"] is None
    assert any("no compiled loss" in n for n in report.model["notes"])
    assert only(report, "loss-mismatch") is None
    assert report.model["optimizer_iterations"] is None


# ----------------------------------------------------------------- output-units-mismatch


def test_fewer_units_than_classes_is_an_error() -> None:
    f = only(model("units_fewer"), "output-units-mismatch")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["unreachable_classes"] == [2]
    assert f.evidence["unreachable_samples"] == 200


def test_one_unit_for_three_classes_is_an_error() -> None:
    f = only(model("bce_multiclass"), "output-units-mismatch")
    assert f is not None and f.evidence["units"] == 1
    assert f.evidence["classes_the_head_can_output"] == 2


# ----------------------------------------------------------------- nonfinite-weights


def test_nan_weights_are_an_error_naming_the_layers() -> None:
    report = model("nan_weights")
    f = only(report, "nonfinite-weights")
    assert f is not None and f.severity.value == "error"
    assert {row["layer"] for row in f.evidence["layers"]} == {"hidden", "head"}
    assert f.evidence["n_nan"] > 0
    assert f.evidence["nonfinite_output_rows"] == report.data["n_samples"]
    # NaN activations are never > 0, but they are not dead units
    assert only(report, "dead-units") is None


# ----------------------------------------------------------------- dead-units


def test_entirely_dead_layer_is_an_error() -> None:
    f = only(model("dead_relu"), "dead-units")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["entirely_dead_layers"] == ["hidden2"]
    assert f.evidence["dead_fraction"] == 1.0
    assert f.evidence["output_spread"] < 1e-6


def test_dead_units_needs_enough_samples() -> None:
    n = model("dead_relu").data["n_samples"]
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


# ----------------------------------------------------------------- batchnorm-statistics


def test_batchnorm_gap_confirmed_by_training_mode() -> None:
    f = only(model("batchnorm"), "batchnorm-statistics")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["layer"] == "bn"
    assert f.evidence["median_gap"] > 1.0
    exp = f.evidence["experiment"]  # the better of the two BatchNorm experiments
    assert exp["balanced_accuracy_after"] > exp["balanced_accuracy_before"] + 0.1
    assert {e["key"] for e in f.evidence["experiments"]} == {"bn-training-mode",
                                                             "bn-reestimated"}
    assert "BatchNorm" in f.title and "->" in f.title


def test_batchnorm_thresholds_both_sides() -> None:
    f = only(model("batchnorm"), "batchnorm-statistics")
    gap = f.evidence["median_gap"]
    gain = (f.evidence["experiment"]["balanced_accuracy_after"]
            - f.evidence["experiment"]["balanced_accuracy_before"])
    # the gap never gates the experiment: above max_gap the cure still decides
    above_gap = override("batchnorm-statistics", max_gap=gap + 0.01)
    f = only(model("batchnorm", **above_gap), "batchnorm-statistics")
    assert f is not None and f.severity.value == "error"
    # the cure must gain confirm_gain: just below the measured gain it is an error, just
    # above it the gap alone is info, and with neither nothing is said
    at = override("batchnorm-statistics", confirm_gain=gain - 0.01)
    assert only(model("batchnorm", **at), "batchnorm-statistics").severity.value == "error"
    over = override("batchnorm-statistics", confirm_gain=gain + 0.01)
    f = only(model("batchnorm", **over), "batchnorm-statistics")
    assert f is not None and f.severity.value == "info"
    both = {"thresholds": {"batchnorm-statistics": {"confirm_gain": gain + 0.01,
                                                    "max_gap": gap + 0.01}}}
    assert only(model("batchnorm", **both), "batchnorm-statistics") is None
    # too few rows for batch statistics: no experiment, the gap alone is info
    few = override("batchnorm-statistics", min_confirm_samples=100000)
    f = only(model("batchnorm", **few), "batchnorm-statistics")
    assert f is not None and f.severity.value == "info" and f.evidence["experiments"] == []


def test_batchnorm_confirmation_leaves_the_model_unchanged() -> None:
    from kerasdoctor import core
    from kerasdoctor._keras import keras

    k = keras()
    m = k.saving.load_model(fixture_path("model_batchnorm.keras"))
    data = np.load(fixture_path("model_batchnorm.npz"))
    bn = m.get_layer("bn")
    before = (np.array(bn.moving_mean), np.array(bn.moving_variance))
    p_before = m.predict(data["x"][:64], verbose=0)
    report = core.diagnose_arrays(m, data["x"], data["y"])
    assert report.finding("batchnorm-statistics") is not None
    assert np.array_equal(np.array(bn.moving_mean), before[0])
    assert np.array_equal(np.array(bn.moving_variance), before[1])
    assert "call" not in bn.__dict__  # the training-mode override is gone
    assert np.allclose(m.predict(data["x"][:64], verbose=0), p_before)


# ----------------------------------------------------------------- untrained-model


def test_compiled_but_never_fitted_model_is_untrained() -> None:
    report = model("untrained")
    assert report.model["optimizer_iterations"] == 0
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
    assert report.model["optimizer_iterations"] == 0
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


# ----------------------------------------------------------------- decision-threshold


def test_decision_threshold_reports_the_better_cut() -> None:
    f = only(model("threshold"), "decision-threshold")
    assert f is not None and f.severity.value == "error"
    ev = f.evidence
    assert ev["auc"] >= 0.8 and ev["starved_class"] == 1
    assert ev["balanced_accuracy_at_threshold"] >= ev["balanced_accuracy_at_0_5"] + 0.1
    assert 0.0 < ev["threshold"] < 0.5
    from kerasdoctor.core import _shell_path

    model_arg = _shell_path(fixture_path("model_threshold.keras"))
    data_arg = _shell_path(fixture_path("model_threshold.npz"))
    assert f.fixes[0].command == (f"kerasdoctor fix --repair {model_arg} {data_arg} --cause "
                                  "decision-threshold --output model_threshold_repaired.keras")
    assert f.fixes[1].command == f"kerasdoctor fix --threshold {model_arg} {data_arg}"


@pytest.mark.parametrize(
    ("name", "delta"), [("min_auc", 0.001), ("min_gain", 0.001), ("max_predicted_ratio", -0.001)]
)
def test_decision_threshold_thresholds_both_sides(name: str, delta: float) -> None:
    ev = only(model("threshold"), "decision-threshold").evidence
    if name == "min_auc":
        at = ev["auc"]
    elif name == "min_gain":  # both the cut on all rows and the held-out cut must gain it
        exp = ev["experiment"]
        at = min(ev["balanced_accuracy_at_threshold"] - ev["balanced_accuracy_at_0_5"],
                 exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"])
    else:
        at = ev["predicted_at_0_5"][1] / ev["label_counts"][1]
    fires = override("decision-threshold", **{name: at - delta if delta > 0 else at})
    quiet = override("decision-threshold", **{name: at + delta})
    assert only(model("threshold", **fires), "decision-threshold") is not None
    assert only(model("threshold", **quiet), "decision-threshold") is None


def test_decision_threshold_on_a_two_unit_softmax_head() -> None:
    """The threshold fixture rebuilt with 2 softmax units computing the same P(class 1):
    softmax([-z/2, z/2])[1] = sigmoid(z). The same finding, the same numbers."""
    from kerasdoctor._keras import keras
    from kerasdoctor.core import diagnose_arrays

    k = keras()
    one = k.saving.load_model(fixture_path("model_threshold.keras"))
    head = one.get_layer("head")
    w, b = np.asarray(head.kernel), np.asarray(head.bias)
    two_head = k.layers.Dense(2, activation="softmax")
    two = k.Model(one.inputs, two_head(one.get_layer("hidden").output))
    two_head.set_weights([np.concatenate([-w / 2, w / 2], axis=1), np.array([-b[0] / 2, b[0] / 2])])
    data = np.load(fixture_path("model_threshold.npz"))
    report = diagnose_arrays(two, data["x"], data["y"])
    f = report.finding("decision-threshold")
    ref = only(model("threshold"), "decision-threshold")
    assert f is not None and f.evidence["score_of"].endswith("softmax unit 1")
    assert f.evidence["auc"] == pytest.approx(ref.evidence["auc"], abs=1e-3)
    assert f.evidence["predicted_at_0_5"] == ref.evidence["predicted_at_0_5"]


def test_decision_threshold_quiet_on_healthy_binary() -> None:
    assert only(diagnose_fixture("binary.keras", "binary.npz"), "decision-threshold") is None
