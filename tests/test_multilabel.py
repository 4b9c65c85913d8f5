"""Multi-label diagnosis (issue 16): multi-hot y (N, K) and K sigmoid units.

Fixtures (fixtures/recipes_dense.py, measured in the issue's notes): ml_collapsed (6 rare tags,
98% of the rows predicted with no tag, AUC 0.86-0.94), ml_ok (healthy), ml_softmax_multihot
(softmax head and categorical cross-entropy on multi-hot labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.errors import InputError
from kerasdoctor.load import decode_labels, is_multi_hot
from kerasdoctor.multilabel import hanley_mcneil_lower, split_halves, wilson_lower

_JSON: dict[str, Any] = {}


def diagnosis(name: str) -> Any:
    """The JSON report of one fixture, through the CLI, once per session."""
    if name not in _JSON:
        res = run_cli(
            "diagnose",
            fixture_path(f"{name}.keras"),
            fixture_path(f"{name}.npz"),
            "--format",
            "json",
        )
        _JSON[name] = (res.exit_code, res.json())
    return _JSON[name]


def test_ml_collapsed_root_cause_is_the_decision_threshold() -> None:
    code, r = diagnosis("ml_collapsed")
    assert code == 1
    assert r["verdict"] == "sick"
    assert r["metrics"]["task"] == "multilabel"
    assert r["data"]["label_encoding"] == "multi-hot"
    assert r["data"]["class_names"] == ["beach", "snow", "dog", "car", "food", "people"]
    assert r["root_cause"] == "decision-threshold"
    ids = [f["id"] for f in r["findings"]]
    assert ids[0] == "prediction-collapse"  # symptoms first
    assert ids.index("decision-threshold") < ids.index("class-imbalance")
    per_sample = r["metrics"]["per_sample"]
    assert per_sample["no_predicted_label"] == pytest.approx(0.982, abs=0.002)
    assert per_sample["no_true_label"] == pytest.approx(0.660, abs=0.002)
    per = r["metrics"]["per_class"]
    assert [round(c["prevalence"], 3) for c in per] == [0.031, 0.047, 0.048, 0.071, 0.089, 0.108]
    assert all(0.85 < c["auc"] < 0.95 for c in per)
    thr = next(f for f in r["findings"] if f["id"] == "decision-threshold")
    assert thr["severity"] == "error"
    exp = thr["evidence"]["experiment"]
    assert set(exp) >= {"what", "balanced_accuracy_before", "balanced_accuracy_after", "rows"}
    assert exp["rows"] == 500
    assert exp["balanced_accuracy_before"] < 0.55
    assert exp["balanced_accuracy_after"] > 0.8  # measured: 0.507 -> 0.861
    assert len(thr["evidence"]["thresholds"]) == 6
    assert all(0 < t < 0.5 for t in thr["evidence"]["thresholds"])
    # the cure was validated: the repair comes first, then the code, then fix --threshold
    assert thr["fixes"][0]["command"].startswith("kerasdoctor fix --repair ")
    assert "--cause decision-threshold" in thr["fixes"][0]["command"]
    assert "THRESHOLDS = np.array([" in thr["fixes"][1]["code"]
    assert thr["fixes"][2]["command"].startswith("kerasdoctor fix --threshold ")
    imb = next(f for f in r["findings"] if f["id"] == "class-imbalance")
    assert imb["severity"] == "info"
    assert r["experiments"][0]["balanced_accuracy_after"] == exp["balanced_accuracy_after"]


def test_ml_ok_stays_quiet() -> None:
    code, r = diagnosis("ml_ok")
    assert code == 0
    assert r["verdict"] == "healthy"
    assert r["metrics"]["task"] == "multilabel"
    assert [f for f in r["findings"] if f["severity"] != "info"] == []
    assert r["metrics"]["per_sample"]["no_predicted_label"] == pytest.approx(0.696, abs=0.002)


def test_softmax_head_on_multi_hot_labels_is_the_root_cause() -> None:
    code, r = diagnosis("ml_softmax_multihot")
    assert code == 1
    assert r["metrics"]["task"] == "multilabel"
    assert r["root_cause"] == "output-activation"
    f = next(f for f in r["findings"] if f["id"] == "output-activation")
    assert f["severity"] == "error"
    assert f["evidence"]["loss"] == "categorical_crossentropy"
    assert "sigmoid" in f["fixes"][0]["code"] and "binary_crossentropy" in f["fixes"][0]["code"]


def test_table_and_other_formats_render() -> None:
    for fmt in ("table", "markdown", "junit", "html"):
        res = run_cli(
            "diagnose",
            fixture_path("ml_collapsed.keras"),
            fixture_path("ml_collapsed.npz"),
            "--format",
            fmt,
            "--sample",
            "400",
        )
        assert res.exit_code in (0, 1), (fmt, res.stderr)
        assert res.stdout.strip()
    assert "decision-threshold" in res.stdout or "prediction-collapse" in res.stdout


def test_api_with_multi_hot_arrays() -> None:
    import keras

    import kerasdoctor

    data = np.load(fixture_path("ml_collapsed.npz"))
    model = keras.models.load_model(fixture_path("ml_collapsed.keras"), compile=True)
    report = kerasdoctor.diagnose(model, data["x"], data["y"], sample=600, seed=1)
    assert report.metrics.task == "multilabel"
    assert report.data.n_samples == 600
    assert report.data.sampled_from == 1000
    assert report.root_cause is not None and report.root_cause.id == "decision-threshold"
    assert not report.passed


def test_multi_label_flag_forces_it(tmp_path: Any) -> None:
    data = np.load(fixture_path("ml_ok.npz"))
    one = data["y"].sum(axis=1) == 1  # rows with exactly one tag: y looks one-hot
    path = tmp_path / "one_tag.npz"
    np.savez(path, x=data["x"][one], y=data["y"][one])
    res = run_cli(
        "diagnose", fixture_path("ml_ok.keras"), str(path), "--format", "json", "--multi-label"
    )
    assert res.exit_code in (0, 1), res.stderr
    r = res.json()
    assert r["metrics"]["task"] == "multilabel"
    assert r["data"]["n_samples"] == int(one.sum())


def test_wrong_number_of_units_is_exit_2(tmp_path: Any) -> None:
    data = np.load(fixture_path("ml_ok.npz"))
    path = tmp_path / "four_tags.npz"
    np.savez(path, x=data["x"], y=data["y"][:, :4])
    res = run_cli("diagnose", fixture_path("ml_ok.keras"), str(path))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "4 columns" in lines[0] and "(N, 6)" in lines[0]


@pytest.mark.unit
def test_multi_label_flag_needs_an_npz(tmp_path: Any) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,0\n2,1\n")
    res = run_cli("diagnose", fixture_path("ml_ok.keras"), str(path), "--multi-label")
    assert res.exit_code == 2
    assert ".npz" in res.stderr


@pytest.mark.unit
def test_multi_hot_detection() -> None:
    assert is_multi_hot(np.array([[1, 1, 0], [0, 0, 0]]))
    assert not is_multi_hot(np.array([[1, 0], [0, 1]]))  # one-hot
    assert not is_multi_hot(np.array([[0.2, 0.8], [1, 0]]))  # soft
    assert not is_multi_hot(np.array([0, 1, 1]))
    with pytest.raises(InputError, match="multi-label"):
        decode_labels(np.array([[1, 1, 0], [0, 1, 0]]), None)


@pytest.mark.unit
def test_statistics() -> None:
    # ml_ok's empty rows (0.696 predicted vs 0.698 true) are no collapse; ml_collapsed's are
    assert wilson_lower(696, 1000) < 0.698
    assert wilson_lower(982, 1000) > 0.66
    assert 0.6 < hanley_mcneil_lower(0.86, 30, 970) < 0.86
    y = np.zeros((100, 3), np.int8)
    y[:6, 0] = 1
    y[10:30, 1] = 1
    a, b = split_halves(y, seed=0)
    assert len(a) + len(b) == 100 and not set(a) & set(b)
    assert y[a, 0].sum() == 3 and y[b, 0].sum() == 3


def test_headers_speak_of_labels() -> None:
    """A multi-label report says labels, per-label majority baseline and macro balanced
    accuracy in the table, markdown and HTML headers, not classes."""
    args = (fixture_path("ml_collapsed.keras"), fixture_path("ml_collapsed.npz"))
    table = run_cli("diagnose", *args).stdout
    assert "6 labels" in table and "macro balanced accuracy 50.7%" in table
    assert "per-label majority baseline" in table and "6 classes" not in table
    md = run_cli("diagnose", *args, "-f", "markdown").stdout
    assert "6 labels" in md and "macro balanced accuracy" in md
    html = run_cli("diagnose", *args, "-f", "html").stdout
    assert "macro balanced accuracy" in html and "per-label majority baseline" in html
