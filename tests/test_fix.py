"""`kerasdoctor fix`: every mode end to end on real fixtures, its maths, and its bad input."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_error_line(r: Any) -> str:
    """Exit 2 with exactly one 'kerasdoctor: error:' line on stderr and nothing on stdout."""
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("kerasdoctor: error: "), lines
    assert "Traceback" not in r.stderr and r.stdout == ""
    return lines[0]


# ---------------------------------------------------------------- --class-weights


LABELS = np.array([0] * 70 + [1] * 20 + [2] * 10)


@pytest.mark.parametrize("encoding", ["index", "one-hot", "binary", "bool"])
def test_class_weights_equal_sklearn_balanced(tmp_path: Path, encoding: str) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    rng = np.random.default_rng(0)
    y_idx = rng.permutation(LABELS if encoding in ("index", "one-hot") else LABELS.clip(0, 1))
    y: np.ndarray = {
        "index": y_idx,
        "one-hot": np.eye(3, dtype=np.float32)[y_idx],
        "binary": y_idx.reshape(-1, 1).astype(np.float32),
        "bool": y_idx.astype(bool),
    }[encoding]
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(y_idx.size, 2)), y=y)
    r = run_cli("fix", "--class-weights", str(path), "--format", "json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    classes = np.unique(y_idx)
    expected = compute_class_weight("balanced", classes=classes, y=y_idx)
    assert out["method"] == "balanced"
    assert out["label_counts"] == np.bincount(y_idx).tolist()
    assert list(out["class_weight"]) == [str(c) for c in classes]
    np.testing.assert_allclose(list(out["class_weight"].values()), expected, rtol=1e-12)


def test_class_weights_on_the_collapsed_fixture_and_python_format() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.load(fixture_path("collapsed.npz"))["y"]
    r = run_cli("fix", "--class-weights", fixture_path("collapsed.npz"), "-f", "python")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("class_weight = {")
    scope: dict[str, Any] = {}
    exec(r.stdout, scope)  # the line is pasteable Python
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose([scope["class_weight"][k] for k in range(3)], expected, rtol=1e-5)
    table = run_cli("fix", "--class-weights", fixture_path("collapsed.npz"))
    assert table.exit_code == 0 and "orange" in table.stdout and "2.7222" in table.stdout


@pytest.mark.unit
def test_effective_number_weights_follow_cui_et_al() -> None:
    r = run_cli(
        "fix",
        "--class-weights",
        fixture_path("collapsed.npz"),
        "--method",
        "effective-number",
        "--beta",
        "0.99",
        "-f",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    out = r.json()
    counts = np.array(out["label_counts"], dtype=float)
    raw = (1 - 0.99) / (1 - 0.99**counts)
    w = np.array(list(out["class_weight"].values()))
    np.testing.assert_allclose(w, raw * 3 / raw.sum(), rtol=1e-9)
    assert w[2] > w[1] > w[0] and out["beta"] == 0.99


# ---------------------------------------------------------------- --output-bias


def test_output_bias_softmax_is_the_log_prior_and_its_snippet_sets_it() -> None:
    import keras

    r = run_cli("fix", "--output-bias", fixture_path("collapsed.npz"), "-f", "json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    soft = next(h for h in out["heads"] if h["head"] == "softmax")
    np.testing.assert_allclose(np.exp(soft["bias"]), np.array([800, 120, 60]) / 980, rtol=1e-9)
    # the printed snippet runs, and an untrained head with that bias outputs the label prior
    scope: dict[str, Any] = {}
    exec(soft["code"].split("# or the output layer")[0], scope)
    layer = scope["output"]
    model = keras.Sequential([keras.Input((4,)), layer])
    layer.kernel.assign(np.zeros((4, 3), np.float32))
    probs = model.predict(np.ones((2, 4), np.float32), verbose=0)
    np.testing.assert_allclose(probs[0], np.array([800, 120, 60]) / 980, rtol=1e-5)


def test_output_bias_binary_sigmoid_is_log_pos_over_neg_and_sets_an_existing_layer() -> None:
    import keras

    r = run_cli("fix", "--output-bias", fixture_path("fix_rare_binary.npz"), "-f", "json")
    assert r.exit_code == 0, r.stderr
    sig = next(h for h in r.json()["heads"] if h["head"] == "sigmoid")
    assert sig["units"] == 1
    assert sig["bias"][0] == pytest.approx(np.log(60 / 1140))
    model = keras.saving.load_model(fixture_path("fix_rare_binary.keras"))
    scope: dict[str, Any] = {"model": model}
    existing = sig["code"].split("(before training it further)\n")[1]
    exec("import numpy as np\n" + existing, scope)
    assert float(np.asarray(model.layers[-1].bias)[0]) == pytest.approx(np.log(60 / 1140), 1e-6)


@pytest.mark.unit
def test_output_bias_table_python_and_absent_class(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    names = np.array(["a", "b", "c", "d"])
    np.savez(path, x=np.zeros((10, 2)), y=np.array([0] * 6 + [1] * 3 + [2]), class_names=names)
    out = run_cli("fix", "--output-bias", str(path), "-f", "json").json()
    assert out["absent_classes"] == [3] and out["label_counts"] == [6, 3, 1, 0]
    soft = next(h for h in out["heads"] if h["head"] == "softmax")
    assert np.all(np.isfinite(soft["bias"])) and soft["bias"][3] < soft["bias"][2]
    table = run_cli("fix", "--output-bias", str(path))
    assert table.exit_code == 0 and "softmax bias" in table.stdout and "Constant(" in table.stdout
    py = run_cli("fix", "--output-bias", str(path), "-f", "python")
    assert py.exit_code == 0
    compile(py.stdout, "<snippet>", "exec")  # valid Python


# ---------------------------------------------------------------- --threshold


def test_threshold_turns_the_all_negative_binary_model_into_one_predicting_both() -> None:
    r = run_cli(
        "fix",
        "--threshold",
        fixture_path("fix_rare_binary.keras"),
        fixture_path("fix_rare_binary.npz"),
        "-f",
        "json",
    )
    assert r.exit_code == 0, r.stderr
    out = r.json()
    before, after = out["before"], out["after"]
    assert out["roc_auc"] > 0.9
    assert before["predicted_counts"][1] <= 0.01 * sum(before["predicted_counts"])
    assert min(after["predicted_counts"]) > 0 and after["recall"][1] > 0.5
    assert after["balanced_accuracy"] > before["balanced_accuracy"] + 0.3
    assert 0 < out["threshold"] < 0.5
    assert np.sum(after["confusion_matrix"]) == np.sum(before["confusion_matrix"]) == 1200
    assert out["cross_check"]["objective"] > 0.75  # it holds on the half it was not chosen on
    # the printed code applied to the model gives the 'after' confusion matrix
    import keras

    model = keras.saving.load_model(fixture_path("fix_rare_binary.keras"))
    data = np.load(fixture_path("fix_rare_binary.npz"))
    scope: dict[str, Any] = {"model": model, "x": data["x"]}
    exec(out["code"], scope)
    conf = np.zeros((2, 2), int)
    np.add.at(conf, (data["y"], scope["pred"]), 1)
    assert conf.tolist() == after["confusion_matrix"]


def test_threshold_warns_when_the_model_does_not_rank(tmp_path: Path) -> None:
    data = np.load(fixture_path("fix_rare_binary.npz"))
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, x=data["x"], y=np.random.default_rng(0).permutation(data["y"]))
    model = fixture_path("fix_rare_binary.keras")
    good = run_cli("fix", "--threshold", model, fixture_path("fix_rare_binary.npz"), "-f", "json")
    assert good.json()["warning"] is None
    bad = run_cli("fix", "--threshold", model, str(shuffled), "-f", "json").json()
    assert bad["roc_auc"] < 0.7 and "ranks the classes poorly" in bad["warning"]
    assert "warning:" in run_cli("fix", "--threshold", model, str(shuffled)).stdout


def test_threshold_f1_objective_and_table() -> None:
    args = (
        "fix",
        "--threshold",
        fixture_path("fix_rare_binary.keras"),
        fixture_path("fix_rare_binary.npz"),
    )
    f1 = run_cli(*args, "--objective", "f1", "-f", "json").json()
    bal = run_cli(*args, "-f", "json").json()
    assert f1["objective"] == "f1" and f1["after"]["f1"] >= bal["after"]["f1"]
    table = run_cli(*args)
    assert table.exit_code == 0
    assert "before" in table.stdout and "after" in table.stdout and "ROC AUC" in table.stdout


def _binary_variants(tmp_path: Path) -> dict[str, str]:
    """The rare-binary model re-expressed with a 2-unit softmax and with a logit head: the same
    function, so the same threshold must come out."""
    import keras

    base = keras.saving.load_model(fixture_path("fix_rare_binary.keras"))
    hidden, out = base.layers[0], base.layers[1]
    w, b = out.get_weights()
    paths = {}
    for name, units, act in (
        ("softmax2", 2, "softmax"),
        ("logits", 1, "linear"),
        ("logits2", 2, "linear"),
    ):
        m = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(units, activation=act),
            ]
        )
        m.layers[0].set_weights(hidden.get_weights())
        if units == 2:  # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]
            m.layers[1].set_weights([np.concatenate([np.zeros_like(w), w], 1), np.r_[0.0, b]])
        else:
            m.layers[1].set_weights([w, b])
        paths[name] = str(tmp_path / f"{name}.keras")
        m.save(paths[name])
    return paths


def test_threshold_is_the_same_for_a_2_unit_softmax_and_a_logit_head(tmp_path: Path) -> None:
    import keras

    data = fixture_path("fix_rare_binary.npz")
    ref = run_cli("fix", "--threshold", fixture_path("fix_rare_binary.keras"), data, "-f", "json")
    arrays = np.load(data)
    for name, path in _binary_variants(tmp_path).items():
        out = run_cli("fix", "--threshold", path, data, "-f", "json").json()
        assert out["after"]["confusion_matrix"] == ref.json()["after"]["confusion_matrix"], name
        assert out["threshold"] == pytest.approx(ref.json()["threshold"], abs=1e-4), name
        if name.startswith("logits"):
            t = out["threshold"]
            assert out["logit_threshold"] == pytest.approx(np.log(t / (1 - t)))
        else:
            assert out["head"] == "2-unit softmax" and "[:, 1]" in out["code"]
        # the printed code reproduces the 'after' predictions
        scope: dict[str, Any] = {"model": keras.saving.load_model(path), "x": arrays["x"]}
        exec(out["code"], scope)
        conf = np.zeros((2, 2), int)
        np.add.at(conf, (arrays["y"], scope["pred"]), 1)
        assert conf.tolist() == out["after"]["confusion_matrix"], name


@pytest.mark.unit
def test_threshold_sweep_matches_brute_force() -> None:
    from kerasdoctor.fix.threshold import _side, sweep

    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.15).astype(np.int64)
    scores = np.round(rng.random(300) * 0.4 + 0.3 * y, 2)  # ties on purpose
    for objective in ("balanced-accuracy", "f1"):
        t, value = sweep(y, scores, objective)
        cands = np.concatenate([[1.0], np.unique(scores) - 1e-9])
        brute = max(_side(y, scores, c, objective).objective for c in cands)
        assert value == pytest.approx(brute)
        assert _side(y, scores, t, objective).objective == pytest.approx(value)


@pytest.mark.unit
def test_threshold_separable_scores_give_perfect_balanced_accuracy() -> None:
    from kerasdoctor.fix.threshold import sweep

    y = np.array([0, 0, 0, 0, 1, 1])
    t, value = sweep(y, np.array([0.01, 0.02, 0.03, 0.1, 0.2, 0.3]), "balanced-accuracy")
    assert value == 1.0 and 0.1 < t < 0.2


def test_threshold_refuses_a_multiclass_model() -> None:
    line = _one_error_line(
        run_cli(
            "fix", "--threshold", fixture_path("collapsed.keras"), fixture_path("collapsed.npz")
        )
    )
    assert "binary model" in line and "3 units" in line


def test_threshold_refuses_multiclass_labels_and_a_single_class(tmp_path: Path) -> None:
    x = np.load(fixture_path("fix_rare_binary.npz"))["x"]
    np.savez(tmp_path / "three.npz", x=x, y=np.arange(x.shape[0]) % 3)
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(x.shape[0], int))
    model = fixture_path("fix_rare_binary.keras")
    assert "3 classes" in _one_error_line(
        run_cli("fix", "--threshold", model, str(tmp_path / "three.npz"))
    )
    assert "both classes" in _one_error_line(
        run_cli("fix", "--threshold", model, str(tmp_path / "one.npz"))
    )


# ---------------------------------------------------------------- --oversample / --undersample


def _traceable(tmp_path: Path) -> Path:
    """Two inputs whose rows carry their own index, one-hot labels, names, a scalar."""
    n = 60
    y = np.array([0] * 40 + [1] * 15 + [2] * 5)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        a=np.stack([np.arange(n), 2 * np.arange(n)], 1).astype(np.float32),
        b=-np.arange(n, dtype=np.float64).reshape(n, 1, 1),
        y=np.eye(3, dtype=np.float32)[y],
        class_names=np.array(["x", "y", "z"]),
        version=np.array(3),
    )
    return path


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["oversample", "undersample"])
def test_resampling_keeps_every_input_aligned(tmp_path: Path, mode: str) -> None:
    src = _traceable(tmp_path)
    dst = tmp_path / "balanced.npz"
    r = run_cli("fix", f"--{mode}", str(src), "--output", str(dst), "-f", "json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    target = 40 if mode == "oversample" else 5
    assert out["label_counts_before"] == [40, 15, 5]
    assert out["label_counts_after"] == [target] * 3
    orig = np.load(src)
    new = np.load(dst)
    assert set(new.files) == set(orig.files)
    rows = new["a"][:, 0].astype(int)  # which original row each new row is
    assert np.array_equal(new["a"][:, 1], 2 * rows)
    assert np.array_equal(new["b"][:, 0, 0], -rows)
    assert np.array_equal(new["y"], orig["y"][rows])
    assert new["class_names"].tolist() == ["x", "y", "z"] and int(new["version"]) == 3
    assert np.bincount(new["y"].argmax(1)).tolist() == [target] * 3
    assert not np.all(np.diff(new["y"].argmax(1)) >= 0)  # shuffled, not sorted by class
    if mode == "undersample":
        assert np.unique(rows).size == rows.size  # no duplicates
    else:
        assert set(rows.tolist()) == set(range(60))  # every original row kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["balanced.npz", "data.npz"]


@pytest.mark.unit
def test_resampling_is_seeded_and_reports_a_table(tmp_path: Path) -> None:
    src = fixture_path("fix_rare_class.npz")
    outs = []
    for i, seed in enumerate(("1", "1", "2")):
        dst = tmp_path / f"o{i}.npz"
        r = run_cli("fix", "--oversample", src, "--output", str(dst), "--seed", seed)
        assert r.exit_code == 0, r.stderr
        assert "broken" in r.stdout and "600" in r.stdout and "1800" in r.stdout
        outs.append(np.load(dst)["sensor"])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


@pytest.mark.unit
def test_resampling_refuses_to_overwrite_its_input_and_needs_output(tmp_path: Path) -> None:
    src = _traceable(tmp_path)
    before = _sha(src)
    line = _one_error_line(run_cli("fix", "--oversample", str(src), "--output", str(src)))
    assert "never overwrites" in line
    # the same file through another spelling of its path
    alias = tmp_path / "sub" / ".." / "data.npz"
    (tmp_path / "sub").mkdir()
    _one_error_line(run_cli("fix", "--undersample", str(src), "--output", str(alias)))
    assert _sha(src) == before
    assert "--output" in _one_error_line(run_cli("fix", "--oversample", str(src)))
    assert "does not exist" in _one_error_line(
        run_cli("fix", "--oversample", str(src), "--output", str(tmp_path / "no" / "b.npz"))
    )


@pytest.mark.unit
def test_resampling_refuses_a_misaligned_array(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((10, 2)), y=np.arange(10) % 2, extra=np.zeros(7))
    line = _one_error_line(run_cli("fix", "--oversample", str(path), "-o", str(tmp_path / "o.npz")))
    assert "'extra'" in line and not (tmp_path / "o.npz").exists()


# ---------------------------------------------------------------- --retrain


def _retrain(model: str, data: str, out: Path, *extra: str) -> dict[str, Any]:
    r = run_cli("fix", "--retrain", model, data, "--output", str(out), "-f", "json", *extra)
    assert r.exit_code == 0, r.stderr
    assert out.exists()
    return dict(r.json())


def test_retrain_brings_back_the_class_the_collapsed_model_never_predicts(tmp_path: Path) -> None:
    model, data = fixture_path("collapsed.keras"), fixture_path("collapsed.npz")
    before_sha = _sha(model)
    out = _retrain(model, data, tmp_path / "fixed.keras", "--epochs", "3")
    held = out["heldout"]
    orange_before = held["before"]["per_class"][1]
    orange_after = held["after"]["per_class"][1]
    assert orange_before["predicted"] == 0 and orange_after["predicted"] > 0
    assert orange_after["recall"] > 0
    assert held["after"]["balanced_accuracy"] > held["before"]["balanced_accuracy"]
    assert out["n_train"] + out["n_heldout"] == 980
    # stratified held-out part (30% by default): each class in proportion
    assert [c["support"] for c in held["before"]["per_class"]] == [240, 36, 18]
    assert out["loss"] == "sparse_categorical_crossentropy" and out["loss_source"] == "compiled"
    assert out["optimizer"] == "SGD"
    assert out["class_weight"]["2"] > out["class_weight"]["1"] > out["class_weight"]["0"]
    assert _sha(model) == before_sha  # the input model is untouched
    # no temporary left; the held-out rows saved next to the model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.heldout.json", "fixed.keras"]


@pytest.mark.slow
def test_diagnose_no_longer_reports_the_class_missing_after_retrain(tmp_path: Path) -> None:
    model, data = fixture_path("collapsed.keras"), fixture_path("collapsed.npz")
    old = run_cli("diagnose", model, data, "-f", "json").json()
    missing = next(f for f in old["findings"] if f["id"] == "missing-classes")
    assert "orange" in missing["title"]
    fixed = tmp_path / "fixed.keras"
    _retrain(model, data, fixed)
    new = run_cli("diagnose", str(fixed), data, "-f", "json")
    assert new.exit_code in (0, 1), new.stderr
    ids = [f["id"] for f in new.json()["findings"]]
    assert "missing-classes" not in ids and "prediction-collapse" not in ids
    assert all(c["predicted"] > 0 for c in new.json()["metrics"]["per_class"])


def test_retrain_a_multi_input_model_with_one_hot_labels(tmp_path: Path) -> None:
    import keras

    out = _retrain(
        fixture_path("fix_rare_class.keras"),
        fixture_path("fix_rare_class.npz"),
        tmp_path / "f.h5",
        "--epochs",
        "2",
        "--seed",
        "1",
        "--batch-size",
        "64",
    )
    broken_before, broken_after = (out["heldout"][s]["per_class"][2] for s in ("before", "after"))
    assert broken_before["predicted"] == 0 and broken_after["recall"] > 0.5
    assert out["bias"]["applied"]
    assert out["bias"]["balanced_loss_refit"] < out["bias"]["balanced_loss_before"]
    m = keras.saving.load_model(tmp_path / "f.h5", compile=False)  # the legacy format works too
    assert [t.name for t in m.inputs] == ["sensor", "meta"]


def test_retrain_compiles_an_uncompiled_logit_model_with_from_logits(tmp_path: Path) -> None:
    import keras

    base = keras.saving.load_model(fixture_path("collapsed.keras"))
    m = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    for new, old in zip(m.layers, base.layers):
        new.set_weights(old.get_weights())
    src = tmp_path / "logits.keras"
    m.save(src)  # never compiled: no loss, no optimizer in the file
    out = _retrain(
        str(src),
        fixture_path("collapsed.npz"),
        tmp_path / "f.keras",
        "--epochs",
        "2",
        "--learning-rate",
        "0.003",
    )
    assert out["loss_source"] == "chosen" and out["loss_from_logits"] is True
    assert out["optimizer"] == "Adam" and out["learning_rate"] == pytest.approx(0.003)
    assert any("no optimizer" in n for n in out["notes"])
    assert out["heldout"]["after"]["per_class"][1]["predicted"] > 0


def test_retrain_keeps_the_bias_of_a_model_that_is_already_balanced(tmp_path: Path) -> None:
    out = _retrain(
        fixture_path("healthy.keras"),
        fixture_path("healthy.npz"),
        tmp_path / "h.keras",
        "--epochs",
        "0",
    )
    assert out["bias"]["applied"] is False and "kept" in out["bias"]["reason"]
    assert out["heldout"]["after"] == out["heldout"]["before"]  # nothing changed the model
    off = _retrain(
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        tmp_path / "c.keras",
        "--epochs",
        "0",
        "--no-bias-reset",
    )
    assert off["bias"]["applied"] is False
    assert off["heldout"]["after"] == off["heldout"]["before"]


def test_retrain_table_shows_recall_before_and_after(tmp_path: Path) -> None:
    r = run_cli(
        "fix",
        "--retrain",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--output",
        str(tmp_path / "t.keras"),
        "--epochs",
        "1",
    )
    assert r.exit_code == 0, r.stderr
    assert "recall before" in r.stdout and "recall after" in r.stdout and "orange" in r.stdout
    assert "kerasdoctor diagnose" in r.stdout
    assert r.stderr == ""  # no progress bar when stderr is not a terminal


@pytest.mark.unit
def test_balanced_bias_refit_without_features_is_uniform() -> None:
    """With no information in the features, each class counting the same means equal odds."""
    from scipy.optimize import minimize

    from kerasdoctor.fix.retrain import balanced_loss

    y = np.array([0] * 80 + [1] * 15 + [2] * 5)
    for kind, units in (("softmax", 3), ("sigmoid", 1)):
        yy = y if units == 3 else (y > 0).astype(np.int64)
        z0 = np.zeros((y.size, units))
        b0 = np.log(np.bincount(yy) / yy.size) if units == 3 else np.array([2.0])
        # the gradient is right
        _, g = balanced_loss(z0, yy, b0, kind)
        eps = 1e-6
        num = [
            (
                balanced_loss(z0, yy, b0 + eps * e, kind)[0]
                - balanced_loss(z0, yy, b0 - eps * e, kind)[0]
            )
            / (2 * eps)
            for e in np.eye(units)
        ]
        np.testing.assert_allclose(g, num, atol=1e-7)
        b = minimize(partial(balanced_loss, z0, yy, kind=kind), b0, jac=True).x
        if units == 3:
            assert np.ptp(b) < 1e-4
        else:
            assert abs(b[0]) < 1e-4


@pytest.mark.unit
def test_retrain_refuses_to_overwrite_its_inputs(tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "m.keras"
    shutil.copy(fixture_path("collapsed.keras"), model)
    before = _sha(model)
    line = _one_error_line(
        run_cli("fix", "--retrain", str(model), fixture_path("collapsed.npz"), "-o", str(model))
    )
    assert "never overwrites" in line and "MODEL" in line
    assert _sha(model) == before


@pytest.mark.unit
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--output", "fixed.txt"], "must end in .keras"),
        ([], "--output"),
        (["--output", "f.keras", "--validation-split", "1.5"], "--validation-split"),
        (["--output", "f.keras", "--epochs", "-1"], "--epochs"),
        (["--output", "f.keras", "--learning-rate", "0"], "--learning-rate"),
        (["--output", "f.keras", "--format", "python"], "--format python"),
    ],
)
def test_retrain_bad_options(tmp_path: Path, args: list[str], expected: str) -> None:
    args = [str(tmp_path / a) if a.startswith(("fixed", "f.")) else a for a in args]
    r = run_cli(
        "fix", "--retrain", fixture_path("collapsed.keras"), fixture_path("collapsed.npz"), *args
    )
    assert expected in _one_error_line(r)
    assert list(tmp_path.iterdir()) == []


def test_retrain_refuses_models_it_cannot_fine_tune(tmp_path: Path) -> None:
    out = str(tmp_path / "f.keras")
    line = _one_error_line(
        run_cli(
            "fix",
            "--retrain",
            fixture_path("healthy_savedmodel"),
            fixture_path("healthy.npz"),
            "-o",
            out,
        )
    )
    assert "SavedModel" in line
    x = np.load(fixture_path("healthy.npz"))["x"]
    np.savez(tmp_path / "five.npz", x=x, y=np.arange(x.shape[0]) % 5)
    line = _one_error_line(
        run_cli(
            "fix", "--retrain", fixture_path("healthy.keras"), str(tmp_path / "five.npz"), "-o", out
        )
    )
    assert "3 output unit(s)" in line and "5 classes" in line
    assert not Path(out).exists()


# ---------------------------------------------------------------- usage errors


@pytest.mark.unit
@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "choose a remedy"),
        (["--class-weights", "--output-bias", "D"], "one remedy at a time"),
        (["--class-weights"], "takes TRAIN_DATA"),
        (["--threshold", "D"], "takes MODEL DATA"),
        (["--class-weights", "D", "--epochs", "3"], "--epochs applies to --retrain"),
        (["--output-bias", "D", "--objective", "f1"], "--objective applies to --threshold"),
        (["--oversample", "D", "-o", "x.npz", "--method", "balanced"], "--method applies"),
        (["--threshold", "M", "D", "-f", "python"], "--format python does not apply"),
        (["--class-weights", "D", "--method", "nope"], "--method must be one of"),
        (["--class-weights", "D", "--beta", "1.5"], "--beta must be in"),
        (["--threshold", "M", "D", "--objective", "auc"], "--objective must be one of"),
        (["--output-bias", "missing.npz"], "no such file"),
        (["--threshold", "missing.keras", "D"], "no such file"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], expected: str) -> None:
    subst = {"D": fixture_path("collapsed.npz"), "M": fixture_path("fix_rare_binary.keras")}
    line = _one_error_line(run_cli("fix", *[subst.get(a, a) for a in args]))
    assert expected in line, line


def test_json_modes_print_only_json(tmp_path: Path) -> None:
    for args in (
        ["--class-weights", fixture_path("collapsed.npz")],
        ["--output-bias", fixture_path("collapsed.npz")],
        ["--undersample", fixture_path("collapsed.npz"), "-o", str(tmp_path / "u.npz")],
        ["--threshold", fixture_path("fix_rare_binary.keras"), fixture_path("fix_rare_binary.npz")],
    ):
        r = run_cli("fix", *args, "--format", "json")
        assert r.exit_code == 0, r.stderr
        json.loads(r.stdout)
        assert r.stderr == ""


@pytest.mark.unit
def test_result_can_go_to_a_file(tmp_path: Path) -> None:
    dst = tmp_path / "weights.json"
    r = run_cli(
        "fix", "--class-weights", fixture_path("collapsed.npz"), "-f", "json", "-o", str(dst)
    )
    assert r.exit_code == 0 and r.stdout == ""
    assert json.loads(dst.read_text())["method"] == "balanced"
    line = _one_error_line(
        run_cli(
            "fix",
            "--output-bias",
            fixture_path("collapsed.npz"),
            "-o",
            fixture_path("collapsed.npz"),
        )
    )
    assert "never overwrites" in line


def test_retrain_a_keras2_h5_model_with_its_compiled_loss(tmp_path: Path) -> None:
    """A Keras 2-era file: inputs fed with an extra axis, the optimizer rebuilt from its config."""
    out = _retrain(
        fixture_path("legacy_keras2.h5"),
        fixture_path("legacy_keras2.npz"),
        tmp_path / "l.keras",
        "--epochs",
        "1",
    )
    assert out["loss"] == "categorical_crossentropy" and out["loss_source"] == "compiled"
    assert out["heldout"]["after"]["balanced_accuracy"] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("name", ["collapsed", "fix_rare_binary"])
def test_every_fix_command_diagnose_suggests_runs(tmp_path: Path, name: str) -> None:
    """The commands in diagnose's fixes are the real CLI: each one runs as printed."""
    import shlex

    report = run_cli(
        "diagnose", fixture_path(f"{name}.keras"), fixture_path(f"{name}.npz"), "-f", "json"
    ).json()
    commands = {
        fx["command"]
        for f in report["findings"]
        for fx in f["fixes"]
        if (fx.get("command") or "").startswith("kerasdoctor fix ")
    }
    assert any("--class-weights" in c for c in commands)
    # the user puts their training data in place of TRAIN_DATA: here 700 of the rows, in a
    # file of its own (--retrain refuses to be measured on the file it trains on)
    with np.load(fixture_path(f"{name}.npz")) as d:
        np.savez(
            tmp_path / "train.npz",
            **{k: d[k] if k == "class_names" else d[k][:700] for k in d.files},
        )
    for command in sorted(commands):
        argv = [
            str(tmp_path / "train.npz") if a == "TRAIN_DATA" else a
            for a in shlex.split(command)[1:]
        ]
        if "--output" in argv:  # write into the test's directory, not the working tree
            i = argv.index("--output") + 1
            argv[i] = str(tmp_path / Path(argv[i]).name)
        r = run_cli(*argv)
        assert r.exit_code == 0, (command, r.stderr)


def test_retrain_refuses_nan_weights_and_a_relu_head(tmp_path: Path) -> None:
    import keras

    base = keras.saving.load_model(fixture_path("collapsed.keras"))
    for name, act, poison in (("nan", "softmax", True), ("relu", "relu", False)):
        m = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(3, activation=act),
            ]
        )
        for new, old in zip(m.layers, base.layers):
            new.set_weights(old.get_weights())
        if poison:
            w, b = m.layers[0].get_weights()
            w[0, 0] = np.nan
            m.layers[0].set_weights([w, b])
        src = tmp_path / f"{name}.keras"
        m.save(src)
        out = tmp_path / f"{name}_fixed.keras"
        line = _one_error_line(
            run_cli("fix", "--retrain", str(src), fixture_path("collapsed.npz"), "-o", str(out))
        )
        assert ("NaN/Inf weights" if poison else "'relu'") in line
        assert not out.exists()


def test_suggested_fixes_run_on_npy_and_csv_data(tmp_path: Path) -> None:
    """diagnose suggests fix commands with the flags that read the data; they run as pasted."""
    import shlex

    from conftest import fixture_path, run_cli

    with np.load(fixture_path("collapsed.npz")) as d:
        x, y = d["x"], d["y"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
    rows = [",".join([*(f"{v:.6g}" for v in row), str(int(t))]) for row, t in zip(x, y)]
    (tmp_path / "d.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    for data_args in (["x.npy", "--labels", "y.npy"], ["d.csv", "--label-column", "label"]):
        args = [str(tmp_path / data_args[0]), *data_args[1:]]
        if data_args[1] == "--labels":
            args[2] = str(tmp_path / data_args[2])
        r = run_cli("diagnose", fixture_path("collapsed.keras"), *args, "-f", "json")
        assert r.exit_code == 1, r.stderr
        weights = "kerasdoctor fix --class-weights"
        commands = [
            fx["command"]
            for f in r.json()["findings"]
            for fx in f["fixes"]
            if fx["command"] and fx["command"].startswith(weights)
        ]
        assert commands, r.json()["findings"]
        assert data_args[1] in commands[0] and " TRAIN_DATA" in commands[0]
        over = [
            fx["command"]
            for f in r.json()["findings"]
            for fx in f["fixes"]
            if "--oversample" in (fx["command"] or "")
        ]
        if data_args[0] == "x.npy":  # fix --oversample cannot rewrite an x.npy: no command
            assert not over
        else:  # a table is rewritten as a table: the command runs as pasted
            assert len(over) == 1 and over[0].endswith("--output balanced.csv"), over
            argv = [args[0] if a == "TRAIN_DATA" else a for a in shlex.split(over[0])[1:]]
            argv[-1] = str(tmp_path / argv[-1])
            done = run_cli(*argv, "-f", "json")
            assert done.exit_code == 0, done.stderr
            assert done.json()["label_counts_after"] == [800, 800, 800]
        # the user names their training data (here the same rows) in place of TRAIN_DATA
        train = {"TRAIN_DATA": args[0], "TRAIN_LABELS": str(tmp_path / "y.npy")}
        out = run_cli(*[train.get(a, a) for a in shlex.split(commands[0])[1:]], "-f", "json")
        assert out.exit_code == 0, out.stderr
        assert out.json()["label_counts"] == [800, 120, 60]
        bias = run_cli("fix", "--output-bias", *args, "-f", "json")
        assert bias.exit_code == 0, bias.stderr
