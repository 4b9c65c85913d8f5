"""decision-threshold: a binary model whose scores separate the classes (AUC) but whose 0.5
cut starves one class; a better cut, confirmed on held-out rows."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import assert_quiet, model, only, override
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

ID = "decision-threshold"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


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
    assert f.fixes[0].command == (
        f"kerasdoctor fix --repair {model_arg} {data_arg} --cause "
        "decision-threshold --output model_threshold_repaired.keras"
    )
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
        at = min(
            ev["balanced_accuracy_at_threshold"] - ev["balanced_accuracy_at_0_5"],
            exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"],
        )
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
