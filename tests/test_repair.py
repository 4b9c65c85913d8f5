"""`kerasdoctor fix --repair`: each repairable cause cured on a fixture trained as users
train, measured by plain Keras in safe mode on the held-out half; unrepairable causes and bad
output paths refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _heldout_balanced_accuracy(model_path: str | Path, data: str) -> float:
    """Balanced accuracy on the second seeded half, by plain Keras (safe mode) and numpy."""
    import keras

    from kerasdoctor.experiments import balanced_accuracy, split_halves

    d = np.load(data)
    y = np.asarray(d["y"])
    y = y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)  # one-hot labels
    _, held = split_halves(y, 0)
    model = keras.saving.load_model(str(model_path), safe_mode=True)
    names = [t.name for t in model.inputs]  # multi-input fixtures name their arrays
    xs = [d[n] if n in d.files else d["x"] for n in names]
    xs = [np.asarray(x[held], np.float32) for x in xs]
    out = np.asarray(model.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    out = out.reshape(out.shape[0], -1)
    pred = (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else out.argmax(axis=1)
    return balanced_accuracy(y[held], pred, int(y.max()) + 1)


def _standard_layers_only(model_path: str | Path) -> bool:
    import keras

    model = keras.saving.load_model(str(model_path), safe_mode=True)
    stack: list[Any] = [model]
    while stack:
        layer = stack.pop()
        if not type(layer).__module__.startswith("keras.") or type(layer).__name__ == "Lambda":
            return False
        stack.extend(getattr(layer, "layers", []))
    return True


# fixture, cause, smallest held-out balanced accuracy the repaired model must reach
REPAIRABLE = [
    ("scn_bn_short", "batchnorm-statistics", 0.90),  # a BN CNN with unsettled statistics
    ("model_batchnorm", "batchnorm-statistics", 0.95),
    ("scn_bgr", "preprocessing-mismatch", 0.95),  # BGR input to an RGB model
    ("scn_norm_double", "preprocessing-mismatch", 0.90),  # standardised, then Normalization
    ("data_double_rescale", "preprocessing-mismatch", 0.95),  # /255 twice
    ("data_permuted", "label-permutation", 0.95),
    ("model_threshold", "decision-threshold", 0.80),  # a rare positive and a bad cut
    ("fix_rare_class", "class-imbalance", 0.90),  # imbalanced; the features know the class
]


@pytest.mark.parametrize("name,cause,floor", REPAIRABLE, ids=[r[0] for r in REPAIRABLE])
def test_repair_cures_the_cause(tmp_path: Path, name: str, cause: str, floor: float) -> None:
    model, data = fixture_path(f"{name}.keras"), fixture_path(f"{name}.npz")
    hashes = (_sha(model), _sha(data))
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", model, data, "--output", str(out), "--format", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = r.json()
    assert res["repaired"] is True and res["cause"] == cause and res["output"] == str(out)
    assert (_sha(model), _sha(data)) == hashes  # the inputs are never written
    assert _standard_layers_only(out)
    before = _heldout_balanced_accuracy(model, data)
    after = _heldout_balanced_accuracy(out, data)
    # what plain Keras measures is what the command reported
    assert after == pytest.approx(res["after"]["balanced_accuracy"], abs=1e-9)
    assert before == pytest.approx(res["before"]["balanced_accuracy"], abs=1e-9)
    assert after >= floor and after - before >= 0.15, (before, after)
    assert res["diagnosis_after"]["verdict"] == "healthy", res["diagnosis_after"]
    assert not [p for p in tmp_path.iterdir() if p.name != "fixed.keras"]  # no temp left


def test_repair_table_shows_before_and_after(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"  # the subcommand form: fix repair MODEL DATA
    r = run_cli(
        "fix",
        "repair",
        fixture_path("data_permuted.keras"),
        fixture_path("data_permuted.npz"),
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.stderr
    assert "label-permutation" in r.stdout and "recall after" in r.stdout
    assert "balanced accuracy 33.3%" in r.stdout and "→ 100.0%" in r.stdout
    assert f"written: {out}" in r.stdout


def test_unrepairable_cause_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    r = run_cli(
        "fix",
        "--repair",
        fixture_path("scn_noise_blog.keras"),
        fixture_path("scn_noise_blog.npz"),
        "-o",
        str(out),
        "--format",
        "json",
    )
    assert r.exit_code == 1, (r.stdout, r.stderr)
    res = r.json()
    assert res["repaired"] is False and res["cause"] == "no-signal" and res["output"] is None
    assert "no information about the labels" in res["why"]
    # the cause's own remedy; no class-weight retraining for a cause it cannot cure
    assert res["instead"] and "paired" in res["instead"][0]["summary"]
    assert not any("class weights" in f["summary"] for f in res["instead"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_repair_writing_over_the_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    shutil.copy(fixture_path("data_permuted.keras"), model)
    before = _sha(model)
    r = run_cli(
        "fix", "--repair", str(model), fixture_path("data_permuted.npz"), "--output", str(model)
    )
    assert r.exit_code == 2 and "never overwrites its inputs" in r.stderr
    assert _sha(model) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--output", "fixed.h5"], "FIXED.keras"),
        ([], "--output"),
        (["--output", "x.keras", "--cause", "dead-units"], "did not find this cause"),
        (["--output", "nodir/x.keras"], "does not exist"),
    ],
)
def test_repair_bad_input_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.endswith((".h5", ".keras")) else a for a in args]
    r = run_cli(
        "fix",
        "--repair",
        fixture_path("data_permuted.keras"),
        fixture_path("data_permuted.npz"),
        *args,
    )
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_repair_on_a_healthy_model_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    r = run_cli(
        "fix",
        "--repair",
        fixture_path("healthy.keras"),
        fixture_path("healthy.npz"),
        "-o",
        str(out),
        "--format",
        "json",
    )
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = json.loads(r.stdout)
    assert res["repaired"] is False and res["cause"] is None and "healthy" in res["why"]
    assert not out.exists()


def test_batchnorm_reestimation_reaches_nested_models(tmp_path: Path) -> None:
    """A BatchNormalization inside a nested sub-model gets the fitting half's mean and
    variance (cumulative average over batches), and no other weight moves."""
    import keras

    from kerasdoctor.findings import Finding, Kind, Severity
    from kerasdoctor.fix.common import load_model_and_data, predict_outputs
    from kerasdoctor.fix.repair import _batchnorm, _Job

    inner = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, use_bias=False, kernel_initializer="identity"),
            keras.layers.BatchNormalization(),
        ]
    )
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inner(inp)))
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(600, 4)).astype(np.float32)
    y = rng.integers(0, 2, 600)
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    md = load_model_and_data(str(tmp_path / "m.keras"), str(tmp_path / "d.npz"))
    fit = np.arange(0, 600, 2)
    job = _Job(
        md,
        Finding("batchnorm-statistics", Kind.CAUSE, Severity.ERROR, "", ""),
        fit,
        np.arange(1, 600, 2),
        predict_outputs(md),
        2,
        0,
    )
    repaired, _, details = _batchnorm(job)
    bn = repaired.layers[1].layers[-1]
    assert details.rows == 300 and bn.momentum == 0.99  # the saved setting is kept
    np.testing.assert_allclose(np.asarray(bn.moving_mean), x[fit].mean(axis=0), atol=1e-4)
    # the average of per-batch (biased) variances: just under the variance of all rows
    np.testing.assert_allclose(np.asarray(bn.moving_variance), x[fit].var(axis=0), rtol=0.05)
    for a, b in zip(repaired.layers[-1].get_weights(), model.layers[-1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_appended_softmax_is_swapped_for_a_sigmoid(tmp_path: Path) -> None:
    """`keras.Sequential([model, keras.layers.Softmax()])` on a one-logit binary model: the
    sigmoid on the same logit is the model that trained."""
    model = fixture_path("fix_softmax_appended.keras")
    data = fixture_path("fix_softmax_appended.npz")
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", model, data, "-o", str(out), "--format", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = r.json()
    assert res["cause"] == "single-unit-softmax" and "sigmoid" in res["repair"]
    assert _standard_layers_only(out)
    assert res["before"]["balanced_accuracy"] == pytest.approx(0.5)
    assert _heldout_balanced_accuracy(out, data) >= 0.95
    assert res["diagnosis_after"]["verdict"] == "healthy"


def test_untrained_one_unit_softmax_is_not_repaired(tmp_path: Path) -> None:
    """A logit that never learned (labels unrelated to it) is not swapped: CannotRepair, with
    the figure the decision rests on."""
    import keras

    from kerasdoctor.findings import Finding, Kind, Severity
    from kerasdoctor.fix.common import load_model_and_data, predict_outputs
    from kerasdoctor.fix.repair import CannotRepair, _Job, _single_unit_softmax

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = rng.integers(0, 2, 400)  # nothing in x says which
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    md = load_model_and_data(str(tmp_path / "m.keras"), str(tmp_path / "d.npz"))
    job = _Job(
        md,
        Finding("single-unit-softmax", Kind.CAUSE, Severity.ERROR, "", ""),
        np.arange(0, 400, 2),
        np.arange(1, 400, 2),
        predict_outputs(md),
        2,
        0,
    )
    with pytest.raises(CannotRepair, match="not above chance"):
        _single_unit_softmax(job)


def test_h5_model_is_repaired_to_keras(tmp_path: Path) -> None:
    import keras

    h5 = tmp_path / "permuted.h5"
    keras.saving.load_model(fixture_path("data_permuted.keras")).save(h5)
    out = tmp_path / "fixed.keras"
    r = run_cli(
        "fix",
        "--repair",
        str(h5),
        fixture_path("data_permuted.npz"),
        "-o",
        str(out),
        "--format",
        "json",
    )
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert r.json()["cause"] == "label-permutation"
    assert _heldout_balanced_accuracy(out, fixture_path("data_permuted.npz")) >= 0.95


def test_library_repair_returns_a_new_model_and_its_report() -> None:
    import keras

    import kerasdoctor

    model = keras.saving.load_model(fixture_path("scn_bgr.keras"))
    weights = [w.copy() for w in model.get_weights()]
    d = np.load(fixture_path("scn_bgr.npz"))
    fixed, rep = kerasdoctor.repair(model, d["x"], d["y"])
    assert isinstance(rep, kerasdoctor.RepairReport)
    assert rep.repaired and rep.cause == "preprocessing-mismatch" and fixed is not model
    assert rep.after is not None and rep.after["balanced_accuracy"] >= 0.95
    assert rep.to_dict()["repaired"] is True
    for a, b in zip(model.get_weights(), weights):  # the given model is untouched
        np.testing.assert_array_equal(a, b)
    _, held = __import__("kerasdoctor.experiments", fromlist=["x"]).split_halves(d["y"], 0)
    pred = fixed.predict(d["x"][held], verbose=0).argmax(axis=1)
    assert float((pred == d["y"][held]).mean()) >= 0.95
    # a healthy model comes back as it was
    same, rep2 = kerasdoctor.repair(
        fixture_path("healthy.keras"), *(np.load(fixture_path("healthy.npz"))[k] for k in "xy")
    )
    assert not rep2.repaired and rep2.cause is None and isinstance(same, str)


def test_padding_side_is_cured_in_the_data_not_the_model(tmp_path: Path) -> None:
    """Sequences padded 'post' fed to a model trained on 'pre' padding: no edit of the model
    moves the padding of its inputs, so nothing is written, exit 1, and the result says to
    re-pad the data as in training (pad_sequences(..., padding="pre"))."""
    out = tmp_path / "fixed.keras"
    args = (fixture_path("seq_pad_post.keras"), fixture_path("seq_pad_post.npz"), "-o", str(out))
    r = run_cli("fix", "--repair", *args, "--format", "json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    res = r.json()
    assert res["repaired"] is False and res["cause"] == "padding-side" and res["output"] is None
    assert 'pad_sequences(sequences, padding="pre")' in res["why"]
    assert "no change inside the model" in res["why"] and "'post'" in res["why"]
    assert 'padding="pre"' in (res["instead"][0]["code"] or "")
    table = run_cli("fix", "--repair", *args)
    assert table.exit_code == 1
    assert "not repaired: the sequences are padded at the end ('post')" in table.stdout
    assert "instead: Pad the sequences 'pre', as in training" in table.stdout
    assert list(tmp_path.iterdir()) == []
