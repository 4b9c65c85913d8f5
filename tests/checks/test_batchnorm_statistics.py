"""batchnorm-statistics: BatchNorm moving statistics far from what the layer receives,
confirmed by the training-mode and re-estimation experiments on a copy of the model."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import assert_quiet, model, only, override
from conftest import HEALTHY_FIXTURES, diagnose_fixture, fixture_path

ID = "batchnorm-statistics"


@pytest.mark.parametrize(("model_file", "data_file"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model_file: str, data_file: str) -> None:
    assert_quiet(diagnose_fixture(model_file, data_file), ID)


def test_collapsed_fixture_blames_no_model_defect() -> None:
    f = only(diagnose_fixture("collapsed.keras", "collapsed.npz"), ID)
    assert f is None or f.severity.value == "info"


def test_batchnorm_gap_confirmed_by_training_mode() -> None:
    f = only(model("batchnorm"), "batchnorm-statistics")
    assert f is not None and f.severity.value == "error"
    assert f.evidence["layer"] == "bn"
    assert f.evidence["median_gap"] > 1.0
    exp = f.evidence["experiment"]  # the better of the two BatchNorm experiments
    assert exp["balanced_accuracy_after"] > exp["balanced_accuracy_before"] + 0.1
    assert {e["key"] for e in f.evidence["experiments"]} == {"bn-training-mode", "bn-reestimated"}
    assert "BatchNorm" in f.title and "->" in f.title


def test_batchnorm_thresholds_both_sides() -> None:
    f = only(model("batchnorm"), "batchnorm-statistics")
    gap = f.evidence["median_gap"]
    gain = (
        f.evidence["experiment"]["balanced_accuracy_after"]
        - f.evidence["experiment"]["balanced_accuracy_before"]
    )
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
    both = {
        "thresholds": {"batchnorm-statistics": {"confirm_gain": gain + 0.01, "max_gap": gap + 0.01}}
    }
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
