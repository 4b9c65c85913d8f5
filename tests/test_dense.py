"""Dense diagnosis (issue 16): per-pixel classifiers (y (N, H, W)) and per-token taggers
(y (N, T)), with a `mask` in the .npz or --ignore-label for the positions that do not count.

Fixtures (fixtures/recipes_dense.py, measured in the issue's notes): dense_unet_collapsed (U-Net
predicting all background, mIoU 0.238), dense_unet_ok (mIoU 0.658), dense_binary_collapsed (one
sigmoid unit, all-zero masks, AUC 0.945), tag_collapsed (BiLSTM answering O everywhere), tag_ok.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.dense import hist_auc, split_samples, youden_bin

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


def _quiet(r: Any) -> list[Any]:
    return [f for f in r["findings"] if f["severity"] != "info"]


def test_unet_collapsed_root_cause_is_the_position_prior() -> None:
    code, r = diagnosis("dense_unet_collapsed")
    assert code == 1
    assert r["verdict"] == "sick"
    m = r["metrics"]
    assert m["task"] == "dense"
    assert m["positions"] == 100 * 32 * 32
    assert m["mean_iou"] == pytest.approx(0.238, abs=0.002)
    assert m["majority_baseline"] == pytest.approx(0.953, abs=0.001)
    assert m["balanced_accuracy"] == pytest.approx(0.25)
    assert [c["iou"] for c in m["per_class"]][1:] == [0.0, 0.0, 0.0]
    assert m["per_sample"] == {
        "samples": 100,
        "no_predicted_foreground": 1.0,
        "no_true_foreground": 0.0,
    }
    assert all(c["auc"] > 0.9 for c in m["per_class"])  # the scores still rank
    assert r["root_cause"] == "class-imbalance"
    ids = [f["id"] for f in r["findings"]]
    assert ids[:2] == ["prediction-collapse", "missing-classes"]  # symptoms first
    collapse = r["findings"][0]
    assert collapse["evidence"]["predicted_share"] == pytest.approx(1.0)
    assert collapse["evidence"]["label_share"] == pytest.approx(0.953, abs=0.001)
    missing = r["findings"][1]
    assert missing["evidence"]["classes"] == ["disc", "square", "bar"]
    imb = next(f for f in r["findings"] if f["id"] == "class-imbalance")
    assert imb["severity"] == "error"
    exp = imb["evidence"]["experiment"]
    assert set(exp) >= {"what", "balanced_accuracy_before", "balanced_accuracy_after", "rows"}
    assert exp["rows"] == 50
    assert exp["balanced_accuracy_before"] == pytest.approx(0.25)
    assert exp["balanced_accuracy_after"] > 0.4  # measured 0.25 -> 0.455
    assert exp["restores"] is True
    codes = "\n".join(f["code"] or "" for f in imb["fixes"])
    assert "sample_weight=sample_weight" in codes and "class_weight[y_train]" in codes
    assert "keras.losses.Dice()" in codes and "CategoricalFocalCrossentropy" in codes
    assert "np.log(PRIOR)" in codes
    assert r["experiments"][0]["balanced_accuracy_after"] == exp["balanced_accuracy_after"]


def test_unet_ok_stays_quiet() -> None:
    code, r = diagnosis("dense_unet_ok")
    assert code == 0
    assert r["verdict"] == "healthy"
    assert r["metrics"]["task"] == "dense"
    assert _quiet(r) == []
    assert r["metrics"]["mean_iou"] == pytest.approx(0.658, abs=0.002)
    assert r["metrics"]["per_sample"]["no_predicted_foreground"] == 0.0


def test_binary_mask_root_cause_is_the_threshold() -> None:
    code, r = diagnosis("dense_binary_collapsed")
    assert code == 1
    m = r["metrics"]
    assert m["task"] == "dense" and m["decision_rule"] == "score > 0.5"
    assert r["data"]["n_classes"] == 2
    assert m["mean_iou"] == pytest.approx(0.477, abs=0.002)
    assert m["per_class"][1]["auc"] == pytest.approx(0.945, abs=0.003)
    assert r["root_cause"] == "decision-threshold"
    thr = next(f for f in r["findings"] if f["id"] == "decision-threshold")
    assert thr["severity"] == "error"
    assert 0 < thr["evidence"]["threshold"] < 0.5
    exp = thr["evidence"]["experiment"]
    assert exp["balanced_accuracy_before"] == pytest.approx(0.5)
    assert exp["balanced_accuracy_after"] > 0.8  # measured 0.5 -> 0.881
    # validated (balanced accuracy and mIoU up beyond noise): the repair comes first
    assert exp["validated"] is True
    assert thr["fixes"][0]["command"].startswith("kerasdoctor fix --repair ")
    assert "THRESHOLD = 0." in thr["fixes"][1]["code"]


def test_tagger_collapsed_counts_the_masked_tokens() -> None:
    code, r = diagnosis("tag_collapsed")
    mask = np.load(fixture_path("tag_collapsed.npz"))["mask"]
    assert code == 1
    m = r["metrics"]
    assert m["positions"] == int(mask.sum())  # padding left out
    assert r["data"]["positions_excluded"] == int((~mask).sum())
    assert [round(c["share"], 3) for c in m["per_class"]] == [0.911, 0.05, 0.039]
    assert m["per_sample"]["no_predicted_foreground"] == 1.0
    assert m["per_sample"]["no_true_foreground"] == pytest.approx(0.3125)
    assert r["root_cause"] == "class-imbalance"
    exp = r["experiments"][0]
    assert exp["rows"] == 200 and exp["balanced_accuracy_after"] > 0.5  # measured 0.333 -> 0.594


def test_tagger_ok_stays_quiet() -> None:
    code, r = diagnosis("tag_ok")
    assert code == 0
    assert _quiet(r) == []
    assert r["metrics"]["mean_iou"] == pytest.approx(0.938, abs=0.002)


def test_ignore_label_matches_the_mask(tmp_path: Any) -> None:
    data = np.load(fixture_path("tag_ok.npz"))
    y = data["y"].copy()
    y[~data["mask"]] = 255
    path = tmp_path / "void.npz"
    np.savez(path, x=data["x"], y=y, class_names=data["class_names"])
    model = fixture_path("tag_ok.keras")
    res = run_cli("diagnose", model, str(path), "-f", "json", "--ignore-label", "255")
    assert res.exit_code == 0, res.stderr
    _, ref = diagnosis("tag_ok")
    got = res.json()
    assert got["metrics"]["confusion_matrix"] == ref["metrics"]["confusion_matrix"]
    assert got["data"]["ignore_label"] == 255
    # without it, 255 is no class of the model: one line, exit 2, naming the option
    res = run_cli("diagnose", model, str(path))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--ignore-label" in lines[0]


def test_without_the_mask_padding_counts(tmp_path: Any) -> None:
    data = np.load(fixture_path("tag_ok.npz"))
    path = tmp_path / "nomask.npz"
    np.savez(path, x=data["x"], y=data["y"])
    res = run_cli("diagnose", fixture_path("tag_ok.keras"), str(path), "-f", "json")
    assert res.exit_code in (0, 1), res.stderr
    assert res.json()["metrics"]["positions"] == data["y"].size


def test_every_format_renders_a_dense_report() -> None:
    args = (
        fixture_path("dense_unet_collapsed.keras"),
        fixture_path("dense_unet_collapsed.npz"),
        "--sample",
        "40",
    )
    for fmt in ("table", "json", "markdown", "junit", "html"):
        res = run_cli("diagnose", *args, "--format", fmt)
        assert res.exit_code == 1, (fmt, res.stderr)
        assert "class-imbalance" in res.stdout, fmt


def test_api_with_dense_arrays() -> None:
    import keras

    import kerasdoctor

    data = np.load(fixture_path("dense_unet_collapsed.npz"))
    model = keras.models.load_model(fixture_path("dense_unet_collapsed.keras"), compile=True)
    report = kerasdoctor.diagnose(model, data["x"], data["y"], sample=60, seed=1)
    assert report.metrics.task == "dense"
    assert report.data.n_samples == 60 and report.data.sampled_from == 100
    assert report.root_cause is not None and report.root_cause.id == "class-imbalance"
    assert not report.passed
    # one-hot (N, H, W, K) labels read the same
    onehot = np.eye(4, dtype=np.float32)[data["y"][:30]]
    report = kerasdoctor.diagnose(model, data["x"][:30], onehot)
    assert report.data.label_encoding == "dense one-hot"
    assert report.metrics.positions == 30 * 32 * 32


def test_labels_of_the_wrong_shape_are_exit_2(tmp_path: Any) -> None:
    data = np.load(fixture_path("dense_unet_ok.npz"))
    path = tmp_path / "small.npz"
    np.savez(path, x=data["x"], y=data["y"][:, :16, :16])
    res = run_cli("diagnose", fixture_path("dense_unet_ok.keras"), str(path))
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "(N, 16, 16)" in lines[0] and "(N, 32, 32, 4)" in lines[0]


def test_statistics() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(20000) < 0.1
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    bins = np.minimum((s * 256).astype(int), 255)
    neg = np.bincount(bins[~y], minlength=256)
    pos = np.bincount(bins[y], minlength=256)
    assert hist_auc(neg, pos) == pytest.approx(roc_auc_score(y, s), abs=0.002)
    assert hist_auc(neg, np.zeros(256)) is None
    assert 0.35 < youden_bin(neg, pos) / 256 < 0.55  # the crossing of the two normals: 0.45
    a, b = split_samples(11, seed=0)
    assert len(a) == 5 and len(b) == 6 and not set(a) & set(b)


def test_diagnose_api_takes_the_mask() -> None:
    """kerasdoctor.diagnose(model, x, y, mask=...) counts what the .npz's `mask` counts."""
    import kerasdoctor

    data = np.load(fixture_path("tag_collapsed.npz"))
    model = fixture_path("tag_collapsed.keras")
    report = kerasdoctor.diagnose(model, data["x"], data["y"], mask=data["mask"]).to_dict()
    _, ref = diagnosis("tag_collapsed")
    assert report["metrics"]["positions"] == int(data["mask"].sum())
    assert report["metrics"]["confusion_matrix"] == ref["metrics"]["confusion_matrix"]
    assert report["root_cause"] == ref["root_cause"] == "class-imbalance"
    with pytest.raises(TypeError, match="mask= goes with x and y"):
        kerasdoctor.diagnose(model, fixture_path("tag_collapsed.npz"), mask=data["mask"])
    single = np.load(fixture_path("collapsed.npz"))
    with pytest.raises(kerasdoctor.InputError, match="not dense"):
        kerasdoctor.diagnose(
            fixture_path("collapsed.keras"),
            single["x"],
            single["y"],
            mask=np.ones(len(single["y"]), bool),
        )
