"""`fix --threshold` and `fix --repair` on dense models (issue 16): one threshold over the
positions of a one-sigmoid segmenter, the position prior (logit adjustment) of a softmax one,
each fitted on one seeded half of the samples and kept only when, on the other half, both
balanced accuracy over positions and mean IoU rise beyond noise (dense.cure_verdict).

Fixtures (fixtures/recipes_dense.py): dense_binary_collapsed (one sigmoid unit, all-zero masks;
measured 0.500 -> 0.881 balanced accuracy, mIoU 0.478 -> 0.590), dense_unet_collapsed (softmax
U-Net, 95% background; logit adjustment 0.250 -> 0.455 balanced accuracy but mIoU 0.239 ->
0.229: refused), tag_collapsed (BiLSTM tagger with a mask; 0.333 -> 0.594, mIoU 0.306 ->
0.325: repaired).
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.dense import split_samples

_CACHE: dict[str, Any] = {}


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _args(name: str) -> tuple[str, str]:
    return fixture_path(f"{name}.keras"), fixture_path(f"{name}.npz")


def _threshold_json(*args: str) -> Any:
    key = " ".join(args)
    if key not in _CACHE:
        r = run_cli("fix", "--threshold", *args, "-f", "json")
        assert r.exit_code == 0, r.stderr
        _CACHE[key] = r.json()
    return _CACHE[key]


def _balanced_over_positions(y: np.ndarray, pred: np.ndarray, counted: np.ndarray, k: int) -> float:
    yc, pc = y[counted], pred[counted]
    return float(np.mean([(pc[yc == c] == c).mean() for c in range(k) if (yc == c).any()]))


def test_threshold_over_the_positions() -> None:
    r = _threshold_json(*_args("dense_binary_collapsed"))
    assert r["task"] == "dense" and r["validated"] is True
    assert r["fit_samples"] == r["heldout_samples"] == 50
    assert r["positions_heldout"] == 50 * 32 * 32
    assert r["threshold"] == r["threshold_fitted"] == pytest.approx(0.078, abs=0.002)
    assert r["before"]["balanced_accuracy"] == pytest.approx(0.5)
    assert r["after"]["balanced_accuracy"] == pytest.approx(0.881, abs=0.002)
    v = r["verdict"]
    assert v["gain"] > v["noise"] and v["mean_iou_gain"] > v["mean_iou_noise"]
    assert r["after"]["mean_iou"] > r["before"]["mean_iou"]
    # the diagnosis's experiment is the same cut on the same halves
    diag = run_cli("diagnose", *_args("dense_binary_collapsed"), "-f", "json").json()
    exp = next(f for f in diag["findings"] if f["id"] == "decision-threshold")
    exp = exp["evidence"]["experiment"]
    assert exp["threshold"] == pytest.approx(r["threshold_fitted"])
    assert exp["balanced_accuracy_after"] == pytest.approx(
        r["after"]["balanced_accuracy"], abs=2e-3
    )  # histogram bins vs exact `>`
    assert exp["validated"] is True
    table = run_cli("fix", "--threshold", *_args("dense_binary_collapsed"))
    assert table.exit_code == 0 and "mean IoU 0.478 → 0.590" in table.stdout
    assert "validated" in table.stdout and "THRESHOLD = 0.078125" in table.stdout


def test_threshold_respects_the_mask_and_ignore_label(tmp_path: Path) -> None:
    d = np.load(fixture_path("dense_binary_collapsed.npz"))
    mask = np.zeros(d["y"].shape, bool)
    mask[:, :, :20] = True  # the left 20 columns count
    masked = tmp_path / "masked.npz"
    np.savez(masked, x=d["x"], y=d["y"], mask=mask, class_names=d["class_names"])
    void = tmp_path / "void.npz"
    y = d["y"].copy()
    y[~mask] = 255
    np.savez(void, x=d["x"], y=y, class_names=d["class_names"])
    model = fixture_path("dense_binary_collapsed.keras")
    a = _threshold_json(model, str(masked))
    b = _threshold_json(model, str(void), "--ignore-label", "255")
    _, held = split_samples(100, 0)
    assert a["positions_heldout"] == int(mask[held].sum()) == 50 * 32 * 20
    assert a["mask"] is True and b["ignore_label"] == 255
    for key in ("before", "after", "tried"):
        assert a[key] == b[key]
    assert a["threshold_fitted"] == b["threshold_fitted"]
    # without --ignore-label, 255 is no class of the model: one line, exit 2
    r = run_cli("fix", "--threshold", model, str(void))
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--ignore-label" in r.stderr


def test_threshold_refuses_a_softmax_segmenter() -> None:
    r = run_cli("fix", "--threshold", *_args("dense_unet_collapsed"))
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "one sigmoid unit per position" in lines[0]
    assert "--cause class-imbalance" in lines[0]


def test_repair_moves_the_threshold_into_the_bias(tmp_path: Path) -> None:
    import keras

    model, data = _args("dense_binary_collapsed")
    hashes = (_sha(model), _sha(data))
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", model, data, "-o", str(out), "-f", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = r.json()
    assert set(res) >= {"repaired", "cause", "repair", "before", "after", "output"}
    assert res["repaired"] is True and res["cause"] == "decision-threshold"
    assert res["standard_layers_only"] is True and res["verdict"]["validated"] is True
    assert (_sha(model), _sha(data)) == hashes
    assert [p.name for p in tmp_path.iterdir()] == ["fixed.keras"]
    assert res["diagnosis_after"]["verdict"] == "healthy"
    # plain Keras, safe mode, the model's own 0.5 rule, on the held-out samples
    d = np.load(data)
    _, held = split_samples(100, 0)
    fixed = keras.saving.load_model(str(out), safe_mode=True)
    pred = (np.asarray(fixed.predict(d["x"][held], verbose=0))[..., 0] > 0.5).astype(int)
    counted = np.ones(pred.shape, bool)
    assert res["after"]["balanced_accuracy"] == pytest.approx(
        _balanced_over_positions(d["y"][held], pred, counted, 2), abs=1e-9
    )
    assert res["after"]["balanced_accuracy"] == pytest.approx(0.881, abs=0.003)
    r0 = _threshold_json(model, data)
    assert res["after"]["per_class"] == r0["after"]["per_class"]  # = the --threshold figures


def test_logit_adjustment_that_lowers_miou_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", *_args("dense_unet_collapsed"), "-o", str(out), "-f", "json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    res = r.json()
    assert res["repaired"] is False and res["cause"] == "class-imbalance"
    v = res["verdict"]
    assert v["balanced_accuracy_before"] == pytest.approx(0.25)
    assert v["balanced_accuracy_after"] == pytest.approx(0.455, abs=0.002)  # recall rises
    assert v["restores"] is True and v["mean_iou_gain"] < 0  # but mIoU falls
    assert "mean IoU falls" in res["why"] and "sample_weight" in res["why"]
    assert res["instead"] and not any("--repair" in (f["command"] or "") for f in res["instead"])
    assert list(tmp_path.iterdir()) == []
    # the diagnosis does not offer the repair, and carries the prior as a bias initialiser
    diag = run_cli("diagnose", *_args("dense_unet_collapsed"), "-f", "json").json()
    imb = next(f for f in diag["findings"] if f["id"] == "class-imbalance")
    assert imb["evidence"]["experiment"]["validated"] is False
    assert not any("--repair" in (f["command"] or "") for f in imb["fixes"])
    codes = "\n".join(f["code"] or "" for f in imb["fixes"])
    assert "bias_initializer=keras.initializers.Constant(np.log(PRIOR))" in codes
    assert "CategoricalFocalCrossentropy" in codes


def test_tagger_logit_adjustment_is_repaired(tmp_path: Path) -> None:
    import keras

    model, data = _args("tag_collapsed")
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", model, data, "-o", str(out), "-f", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = r.json()
    assert res["cause"] == "class-imbalance" and res["repaired"] is True
    assert res["verdict"]["mean_iou_gain"] > res["verdict"]["mean_iou_noise"]
    d = np.load(data)
    _, held = split_samples(len(d["y"]), 0)
    fixed = keras.saving.load_model(str(out), safe_mode=True)
    pred = np.asarray(fixed.predict(d["x"][held], verbose=0)).argmax(axis=-1)
    assert res["after"]["balanced_accuracy"] == pytest.approx(
        _balanced_over_positions(d["y"][held], pred, d["mask"][held], 3), abs=1e-9
    )
    assert res["after"]["balanced_accuracy"] > 0.55 > 0.34 > res["before"]["balanced_accuracy"]
    assert res["details"]["how"] == "bias" and len(res["details"]["prior"]) == 3


def test_the_commands_the_diagnosis_suggests_run(tmp_path: Path) -> None:
    model, data = _args("dense_binary_collapsed")
    diag = run_cli("diagnose", model, data, "-f", "json").json()
    thr = next(f for f in diag["findings"] if f["id"] == "decision-threshold")
    commands = [f["command"] for f in thr["fixes"] if f["command"]]
    assert commands[0].startswith("kerasdoctor fix --repair ")
    assert "--cause decision-threshold" in commands[0]
    assert any(c.startswith("kerasdoctor fix --threshold ") for c in commands)
    codes = "\n".join(f["code"] or "" for f in thr["fixes"])
    assert "np.log(P / (1 - P))" in codes and "BinaryFocalCrossentropy" in codes
    for command in commands:
        # MODEL / DATA until the dense diagnosis passes its paths to the finding
        argv = [
            model if a == "MODEL" else data if a == "DATA" else a for a in shlex.split(command)[1:]
        ]
        if "--output" in argv:
            i = argv.index("--output") + 1
            argv[i] = str(tmp_path / Path(argv[i]).name)
        r = run_cli(*argv)
        assert r.exit_code == 0, (command, r.stderr)


def test_library_repair_takes_dense_arrays_and_a_mask() -> None:
    import kerasdoctor

    d = np.load(fixture_path("tag_collapsed.npz"))
    fixed, rep = kerasdoctor.repair(
        fixture_path("tag_collapsed.keras"), d["x"], d["y"], mask=d["mask"]
    )
    assert rep.repaired and rep.cause == "class-imbalance" and not isinstance(fixed, str)
    assert rep.before["positions"] == int(d["mask"][split_samples(len(d["y"]), 0)[1]].sum())


def test_logit_shift_inserts_a_layer_when_the_head_has_no_bias(tmp_path: Path) -> None:
    """A sigmoid layer fed by a Dense without bias: a fixed Normalization (z - shift) goes in
    before it; a Softmax layer after a Conv with a bias: the bias moves. Standard layers,
    safe mode, and exactly the shifted logits."""
    import keras

    from kerasdoctor.fix.repair import shift_output_logits
    from kerasdoctor.load import from_keras_model

    keras.utils.set_random_seed(1)
    inp = keras.Input((5,))
    z = keras.layers.Dense(3, use_bias=False)(inp)
    m1 = keras.Model(inp, keras.layers.Activation("sigmoid")(z))
    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    shift = np.array([0.5, -1.0, 2.0])
    new, _, details = shift_output_logits(from_keras_model(m1), shift, ("sigmoid",))
    assert details.how == "normalization" and details.shift == (0.5, -1.0, 2.0)
    new.save(tmp_path / "a.keras")
    back = keras.saving.load_model(str(tmp_path / "a.keras"), safe_mode=True)
    logits = x @ m1.layers[1].get_weights()[0]
    np.testing.assert_allclose(
        back.predict(x, verbose=0), 1 / (1 + np.exp(-(logits - shift))), rtol=1e-5, atol=1e-6
    )
    inp = keras.Input((4, 4, 2))
    z = keras.layers.Conv2D(3, 1)(inp)
    m2 = keras.Model(inp, keras.layers.Softmax()(z))
    new, _, details = shift_output_logits(from_keras_model(m2), shift, ("softmax",))
    assert details.how == "bias"
    xi = np.random.default_rng(2).normal(size=(3, 4, 4, 2)).astype(np.float32)
    ref = np.asarray(keras.Model(m2.inputs, z).predict(xi, verbose=0)) - shift
    ref = np.exp(ref - ref.max(-1, keepdims=True))
    np.testing.assert_allclose(
        new.predict(xi, verbose=0), ref / ref.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(m2.layers[1].get_weights()[1], np.zeros(3))  # untouched
