"""`fix --threshold` and `fix --repair` on multi-label models (issue 16): one threshold per
label, chosen on one seeded stratified half and checked on the other; the repair moves the
validated ones into the output bias, and plain Keras (safe mode) gives the same figures.

Fixtures (fixtures/recipes_dense.py): ml_collapsed (6 rare tags, the 0.5 cut predicts almost
nothing; measured 0.507 -> 0.861 macro balanced accuracy on the held-out half), ml_ok
(healthy), ml_softmax_multihot (softmax head on multi-hot labels).
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.multilabel import label_cut, split_halves, validate_label_thresholds

_CACHE: dict[tuple[str, ...], Any] = {}


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _threshold(name: str) -> Any:
    key = ("threshold", name)
    if key not in _CACHE:
        r = run_cli(
            "fix",
            "--threshold",
            fixture_path(f"{name}.keras"),
            fixture_path(f"{name}.npz"),
            "-f",
            "json",
        )
        assert r.exit_code == 0, r.stderr
        _CACHE[key] = r.json()
    return _CACHE[key]


def _scores(model_path: str | Path, x: np.ndarray) -> np.ndarray:
    import keras

    model = keras.saving.load_model(str(model_path), safe_mode=True)
    return np.asarray(model.predict(x, verbose=0), np.float64)


def _balanced(y: np.ndarray, pred: np.ndarray) -> float:
    return float((pred[y == 1].mean() + 1 - pred[y == 0].mean()) / 2)


def test_threshold_per_label_chosen_on_one_half_and_checked_on_the_other() -> None:
    r = _threshold("ml_collapsed")
    assert r["task"] == "multilabel" and r["fit_rows"] == r["heldout_rows"] == 500
    assert r["validated_labels"] == ["beach", "snow", "dog", "car", "food", "people"]
    assert all(0 < t < 0.5 for t in r["thresholds"])
    assert r["before"]["macro_balanced_accuracy"] == pytest.approx(0.507, abs=0.002)
    assert r["after"]["macro_balanced_accuracy"] == pytest.approx(0.861, abs=0.002)
    assert r["after"]["no_predicted_label"] < 0.2 < 0.9 < r["before"]["no_predicted_label"]
    # the diagnosis's experiment runs the same cuts on the same halves: the same figure
    diag = run_cli(
        "diagnose",
        fixture_path("ml_collapsed.keras"),
        fixture_path("ml_collapsed.npz"),
        "-f",
        "json",
    ).json()
    exp = next(f for f in diag["findings"] if f["id"] == "decision-threshold")
    assert exp["evidence"]["experiment"]["balanced_accuracy_after"] == pytest.approx(
        r["after"]["macro_balanced_accuracy"], abs=1e-6
    )  # the report rounds to 6 digits
    # by hand: plain Keras, the seeded halves, the printed thresholds, each label's figures
    d = np.load(fixture_path("ml_collapsed.npz"))
    y = d["y"].astype(np.int8)
    _, held = split_halves(y, 0)
    s = _scores(fixture_path("ml_collapsed.keras"), d["x"])[held]
    pred = s > np.asarray(r["thresholds"])
    for j, lab in enumerate(r["labels"]):
        assert lab["after"]["balanced_accuracy"] == pytest.approx(
            _balanced(y[held, j], pred[:, j]), abs=1e-9
        )
        assert lab["before"]["recall"] == pytest.approx(
            float((s[y[held, j] == 1, j] > 0.5).mean()), abs=1e-9
        )
        assert lab["gain"] > lab["noise"]
    # the printed code gives the same predictions
    scope: dict[str, Any] = {
        "model": __import__("keras").saving.load_model(fixture_path("ml_collapsed.keras")),
        "x": d["x"][held],
    }
    exec(r["code"], scope)
    np.testing.assert_array_equal(scope["predicted"], pred)
    assert r["repair_command"].startswith("kerasdoctor fix --repair ")


def test_threshold_keeps_0_5_where_no_cut_beats_it_and_says_so() -> None:
    r = _threshold("ml_ok")
    kept = [lab for lab in r["labels"] if not lab["validated"]]
    assert kept, "ml_ok: most labels are fine at 0.5"
    for lab in kept:
        assert lab["threshold"] == 0.5 and lab["after"] == lab["before"]
        assert "keeps 0.5" in lab["note"] and "not beyond noise" in lab["note"]
    table = run_cli("fix", "--threshold", fixture_path("ml_ok.keras"), fixture_path("ml_ok.npz"))
    assert table.exit_code == 0
    assert "0.5 (kept)" in table.stdout and "keeps 0.5" in table.stdout
    assert "macro balanced accuracy" in table.stdout and "beach" in table.stdout


def test_repair_moves_the_thresholds_into_the_bias(tmp_path: Path) -> None:
    model, data = fixture_path("ml_collapsed.keras"), fixture_path("ml_collapsed.npz")
    hashes = (_sha(model), _sha(data))
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", model, data, "--output", str(out), "-f", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    res = r.json()
    assert set(res) >= {"repaired", "cause", "repair", "before", "after", "output"}
    assert res["repaired"] is True and res["cause"] == "decision-threshold"
    assert res["output"] == str(out) and res["standard_layers_only"] is True
    assert (_sha(model), _sha(data)) == hashes  # the inputs are never written
    assert [p.name for p in tmp_path.iterdir()] == ["fixed.keras"]  # no temporary left
    assert res["details"]["agreement_with_thresholds"] == 1.0
    assert res["diagnosis_after"]["verdict"] == "healthy"
    # plain Keras in safe mode, the model's own 0.5 rule, the held-out half: the after-figures
    d = np.load(data)
    y = d["y"].astype(np.int8)
    _, held = split_halves(y, 0)
    before = _scores(model, d["x"][held]) > 0.5
    after = _scores(out, d["x"][held]) > 0.5
    for j, (pb, pa) in enumerate(zip(res["before"]["per_class"], res["after"]["per_class"])):
        assert pb["balanced_accuracy"] == pytest.approx(_balanced(y[held, j], before[:, j]))
        assert pa["balanced_accuracy"] == pytest.approx(_balanced(y[held, j], after[:, j]))
        assert pa["recall"] > 0.8 > 0.1 > pb["recall"]
    assert res["after"]["balanced_accuracy"] == pytest.approx(
        _threshold("ml_collapsed")["after"]["macro_balanced_accuracy"], abs=1e-9
    )
    import keras

    fixed = keras.saving.load_model(str(out), safe_mode=True)
    assert all(type(layer).__module__.startswith("keras.") for layer in fixed.layers)


def test_repair_table(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    r = run_cli(
        "fix",
        "repair",
        fixture_path("ml_collapsed.keras"),
        fixture_path("ml_collapsed.npz"),
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.stderr
    assert "decision-threshold" in r.stdout and "beach" in r.stdout
    assert "macro balanced accuracy 50.7% → 86.1%" in r.stdout
    assert f"written: {out}" in r.stdout


def test_healthy_model_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    args = (
        "fix",
        "--repair",
        fixture_path("ml_ok.keras"),
        fixture_path("ml_ok.npz"),
        "-o",
        str(out),
    )
    r = run_cli(*args, "-f", "json")
    assert r.exit_code == 0, (r.stdout, r.stderr)  # healthy: nothing to do is no failure
    res = r.json()
    assert res["repaired"] is False and res["cause"] is None and "healthy" in res["why"]
    assert not out.exists()
    # a cause the diagnosis did not find: one line, exit 2
    r = run_cli(*args, "--cause", "decision-threshold")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "did not find this cause" in r.stderr and not out.exists()


def test_no_validated_label_is_exit_1_with_the_reason(tmp_path: Path) -> None:
    """A model whose scores say nothing about its labels: no label's cut beats 0.5 on the
    held-out half, so nothing is moved into the model and nothing is written."""
    import keras

    from kerasdoctor.findings import Finding, Kind, Severity
    from kerasdoctor.fix import per_label
    from kerasdoctor.fix.repair_result import LabelSummary

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (rng.random((600, 3)) < 0.3).astype(np.int8)  # nothing in x says which
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    from kerasdoctor.dataspec import DataSpec

    ld = per_label.load_npz(str(tmp_path / "m.keras"), str(tmp_path / "d.npz"), DataSpec())
    report = __import__("kerasdoctor").diagnose(model, x, y)
    finding = Finding("decision-threshold", Kind.CAUSE, Severity.ERROR, "t", "d")
    out = tmp_path / "fixed.keras"
    res = per_label.repair(ld, report, finding, out, 0)
    assert res.repaired is False and not out.exists()
    assert res.why is not None and "no label's threshold beats 0.5 beyond noise" in res.why
    assert isinstance(res.before, LabelSummary) and res.after is None
    assert res.before.macro_balanced_accuracy is not None
    assert res.to_dict()["before"]["macro_balanced_accuracy"] is not None


def test_class_imbalance_points_to_the_thresholds(tmp_path: Path) -> None:
    out = tmp_path / "fixed.keras"
    r = run_cli(
        "fix",
        "--repair",
        fixture_path("ml_collapsed.keras"),
        fixture_path("ml_collapsed.npz"),
        "--cause",
        "class-imbalance",
        "-o",
        str(out),
        "-f",
        "json",
    )
    assert r.exit_code == 1, (r.stdout, r.stderr)
    res = r.json()
    assert res["repaired"] is False and "--cause decision-threshold" in res["why"]
    assert any(
        (f["command"] or "").startswith("kerasdoctor fix --threshold") for f in res["instead"]
    )
    assert not any("--repair" in (f["command"] or "") for f in res["instead"])
    assert not out.exists()


def test_softmax_head_gets_no_thresholds(tmp_path: Path) -> None:
    args = (fixture_path("ml_softmax_multihot.keras"), fixture_path("ml_softmax_multihot.npz"))
    r = run_cli("fix", "--threshold", *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "softmax" in lines[0] and "compete" in lines[0]
    out = tmp_path / "fixed.keras"
    r = run_cli("fix", "--repair", *args, "-o", str(out), "-f", "json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    res = r.json()
    assert res["cause"] == "output-activation" and "sigmoid" in res["why"]
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--objective", "f1"], "balanced accuracy"),
        (["--ignore-label", "0"], "--ignore-label applies to dense labels"),
    ],
)
def test_bad_options_exit_2_with_one_line(extra: list[str], message: str) -> None:
    r = run_cli(
        "fix",
        "--threshold",
        fixture_path("ml_collapsed.keras"),
        fixture_path("ml_collapsed.npz"),
        *extra,
    )
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_the_commands_the_diagnosis_suggests_run(tmp_path: Path) -> None:
    diag = run_cli(
        "diagnose",
        fixture_path("ml_collapsed.keras"),
        fixture_path("ml_collapsed.npz"),
        "-f",
        "json",
    ).json()
    thr = next(f for f in diag["findings"] if f["id"] == "decision-threshold")
    commands = [f["command"] for f in thr["fixes"] if f["command"]]
    assert commands[0].startswith("kerasdoctor fix --repair ")  # validated: offered first
    assert any(c.startswith("kerasdoctor fix --threshold ") for c in commands)
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--output" in argv:
            i = argv.index("--output") + 1
            argv[i] = str(tmp_path / Path(argv[i]).name)
        r = run_cli(*argv)
        assert r.exit_code == 0, (command, r.stderr)


def test_library_repair_takes_multi_hot_arrays() -> None:
    import keras

    import kerasdoctor

    model = keras.saving.load_model(fixture_path("ml_collapsed.keras"))
    weights = [w.copy() for w in model.get_weights()]
    d = np.load(fixture_path("ml_collapsed.npz"))
    fixed, rep = kerasdoctor.repair(model, d["x"], d["y"])
    assert rep.repaired and rep.cause == "decision-threshold" and fixed is not model
    assert rep.after is not None and rep.after["balanced_accuracy"] > 0.8
    for a, b in zip(model.get_weights(), weights):  # the given model is untouched
        np.testing.assert_array_equal(a, b)
    _, held = split_halves(d["y"].astype(np.int8), 0)
    pred = np.asarray(fixed.predict(d["x"][held], verbose=0)) > 0.5
    assert pred.any(axis=1).mean() > 0.5  # rows get labels again


def test_label_cut_is_the_best_strict_cut_nearest_0_5() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(400) < 0.2).astype(np.int8)
    s = np.round(np.clip(rng.normal(0.2 + 0.2 * y, 0.1), 0, 1), 2)  # ties on purpose
    t = label_cut(y, s)
    cands = np.concatenate([[1.0], np.unique(s) - 1e-9])
    best = max(_balanced(y, (s > c).astype(float)) for c in cands)
    assert _balanced(y, (s > t).astype(float)) == pytest.approx(best)
    assert not np.isin(t, s)  # between two scores, on no row
    assert label_cut(np.zeros(5, np.int8), np.arange(5.0)) == 0.5


def test_uninformative_label_keeps_0_5() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((800, 2)) < 0.3).astype(np.int8)
    probs = np.stack(
        [rng.random(800), np.clip(0.2 + 0.5 * y[:, 1] + rng.normal(0, 0.1, 800), 0, 1)], 1
    )
    probs[:, 1] *= 0.6  # a good ranking under a bad cut
    fit, test = split_halves(y, 0)
    rows = validate_label_thresholds(y, probs, fit, test)
    assert rows[0]["validated"] is False and rows[0]["threshold"] == 0.5
    assert rows[1]["validated"] is True and rows[1]["threshold"] < 0.5
