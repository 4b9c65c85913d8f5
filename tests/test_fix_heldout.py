"""Training data and evaluation data are different things (issue 19, item 1).

A user diagnosed on `photos/val`, ran the suggested `fix --retrain photos.keras photos/val`,
and re-diagnosed the result on `photos/val`: the rows it had just trained on. These tests
reproduce that on a real image folder through the CLI and check that before/after is measured
only on rows the fine-tuning never saw, that the output says how many and how sure, that the
held-out rows are saved, and that no suggested command points at trained-on rows.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

# data_double_rescale.keras has Rescaling(1/255) inside and was trained on 0-255 terrain
# images: the same 8x8 images as data_raw_pixels.npz, which the folders are written from.
MODEL = "data_double_rescale.keras"


def _folder(root: Path, rows: np.ndarray) -> Path:
    """The rows of data_raw_pixels.npz as PNGs, one subfolder per class (as users keep them)."""
    from PIL import Image

    with np.load(fixture_path("data_raw_pixels.npz")) as d:
        x, y, names = d["x"], d["y"], d["class_names"]
    for i in rows:
        sub = root / str(names[y[i]])
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(sub / f"{i:04d}.png")
    return root


def _per_class(n: int, offset: int = 0, classes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """n rows of each class from data_raw_pixels.npz, skipping the first `offset` of each."""
    with np.load(fixture_path("data_raw_pixels.npz")) as d:
        y = d["y"]
    return np.concatenate([np.flatnonzero(y == c)[offset : offset + n] for c in classes])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """photos/val: 108 images, 36 a class, like the user's; photos/train: 60 others."""
    root = tmp_path_factory.mktemp("photos")
    return {
        "val": _folder(root / "val", _per_class(36)),
        "train": _folder(root / "train", _per_class(20, offset=36)),
    }


class Spy:
    """Records which rows model.fit trained on and which rows the fix measured."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import keras

        import kerasdoctor.fix.common as common

        self.fit_x: list[np.ndarray] = []
        self.measured: list[tuple[str, np.ndarray | None]] = []
        real_fit, real_predict = keras.Model.fit, common.predict_outputs

        def fit(model: Any, x: Any = None, *args: Any, **kwargs: Any) -> Any:
            self.fit_x.append(np.asarray(x, dtype=np.float32))
            return real_fit(model, x, *args, **kwargs)

        def predict(md: Any, indices: Any = None, **kwargs: Any) -> Any:
            self.measured.append((md.raw.path, None if indices is None else indices.copy()))
            return real_predict(md, indices, **kwargs)

        monkeypatch.setattr(keras.Model, "fit", fit)
        monkeypatch.setattr(common, "predict_outputs", predict)


def _row_index(folder: Path) -> tuple[dict[bytes, int], Any]:
    """Each image of the folder by its pixels -> its row, in the order the fix reads it."""
    from kerasdoctor.fix.common import load_model_and_data

    md = load_model_and_data(fixture_path(MODEL), str(folder))
    rows = np.asarray(md.arrays[0], dtype=np.float32)
    index = {r.tobytes(): i for i, r in enumerate(rows)}
    assert len(index) == rows.shape[0]  # no two images alike: pixels identify a row
    return index, md


def _retrain(*args: str) -> Any:
    r = run_cli("fix", "--retrain", fixture_path(MODEL), *args, "--epochs", "1")
    assert r.exit_code == 0, r.stderr
    return r


def test_retrain_on_the_diagnosed_folder_measures_only_rows_it_never_trained_on(
    photos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    val = photos["val"]
    index, md = _row_index(val)
    spy = Spy(monkeypatch)
    out = tmp_path / "photos_fixed.keras"
    r = _retrain(str(val), "-o", str(out), "-f", "json").json()

    # 30% of each class held out (11 of 36), seeded and stratified; the rest trains
    assert (r["n_heldout"], r["n_train"]) == (33, 75)
    assert [c["support"] for c in r["heldout"]["before"]["per_class"]] == [11, 11, 11]
    saved = json.loads((tmp_path / "photos_fixed.heldout.json").read_text())
    assert r["heldout_file"] == str(tmp_path / "photos_fixed.heldout.json")
    held = np.array(saved["heldout"])
    assert saved["n_heldout"] == held.size == 33 and saved["n_samples"] == 108

    # the rows model.fit saw, identified by their pixels
    assert len(spy.fit_x) == 1
    trained = {index[row.tobytes()] for row in spy.fit_x[0]}
    assert len(trained) == 75
    assert trained.isdisjoint(held.tolist())
    assert trained | set(held.tolist()) == set(range(108))
    # before and after were measured on the held-out rows, and on nothing else
    assert len(spy.measured) == 2
    for path, rows in spy.measured:
        assert path == str(val) and rows is not None
        assert rows.tolist() == held.tolist()
    # the saved files are the held-out images, none of them trained on
    assert saved["files"] == [md.row_names[i] for i in held]
    trained_files = {md.row_names[i] for i in trained}
    assert trained_files.isdisjoint(saved["files"])

    for part in ("before", "after"):
        s = r["heldout"][part]
        lo, hi = s["balanced_accuracy_ci95"]
        assert 0.0 <= lo <= s["balanced_accuracy"] <= hi <= 1.0 and hi - lo > 0.05
        assert s["n_samples"] == 33
    assert r["interval"]["level"] == 0.95 and "Wilson" in r["interval"]["method"]
    # the follow-up never re-reads the folder the model trained on
    assert r["evaluated_on"] == "heldout-part" and r["eval_data"] is None
    assert "NEW_DATA" in r["follow_up"] and str(val) not in r["follow_up"]
    assert "spends" in r["spent"] and f"--eval {val}" in r["spent"]


def test_retrain_table_states_heldout_size_interval_and_follow_up(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    val = photos["val"]
    text = _retrain(str(val), "-o", str(tmp_path / "f.keras")).stdout
    assert "33 samples" in text and "30%" in text and "never trained on" in text
    assert "on 33 rows never trained on" in text
    assert "95% Wilson interval" in text
    assert f"TRAIN_DATA {val}" in text
    assert "fine-tuning on evaluation data spends it" in text
    assert str(tmp_path / "f.heldout.json") in text
    follow = [ln for ln in text.splitlines() if ln.startswith("check it: ")]
    assert follow == [f"check it: kerasdoctor diagnose {tmp_path / 'f.keras'} NEW_DATA"]
    # no line suggests diagnosing the fixed model on the folder it was fine-tuned on
    assert not any(f"diagnose {tmp_path / 'f.keras'} {val}" in ln for ln in text.splitlines())


def test_retrain_with_eval_trains_on_all_train_data_and_measures_on_eval(
    photos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, val = photos["train"], photos["val"]
    index, _ = _row_index(train)
    spy = Spy(monkeypatch)
    out = tmp_path / "fixed.keras"
    r = _retrain(str(train), "--eval", str(val), "-o", str(out), "-f", "json").json()
    assert (r["n_train"], r["n_heldout"]) == (60, 108)
    assert r["eval_data"] == str(val) and r["evaluated_on"] == "eval-data"
    assert r["validation_split"] is None and r["heldout_file"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.keras"]  # nothing held out
    assert {index[row.tobytes()] for row in spy.fit_x[0]} == set(range(60))
    assert [path for path, _ in spy.measured] == [str(val), str(val)]
    assert all(rows is None for _, rows in spy.measured)  # every row of EVAL_DATA
    assert r["heldout"]["before"]["n_samples"] == 108
    assert len(r["heldout"]["after"]["balanced_accuracy_ci95"]) == 2
    assert r["follow_up"] == f"kerasdoctor diagnose {out} {val}"
    assert r["spent"] is None


def test_eval_classes_are_matched_by_name(photos: dict[str, Path], tmp_path: Path) -> None:
    """An eval folder without 'road' numbers 'water' 1; it must still count as class 2."""
    few = _folder(tmp_path / "few", _per_class(6, offset=60, classes=(0, 2)))
    r = _retrain(
        str(photos["train"]), "--eval", str(few), "-o", str(tmp_path / "m.keras"), "-f", "json"
    ).json()
    before = r["heldout"]["before"]["per_class"]
    assert [c["support"] for c in before] == [6, 0, 6]
    assert r["heldout"]["before"]["balanced_accuracy"] > 0.9  # a healthy model, classes right
    odd = _folder(tmp_path / "odd", _per_class(2, offset=80))
    (odd / "road").rename(odd / "sand")
    err = run_cli(
        "fix",
        "--retrain",
        fixture_path(MODEL),
        str(photos["train"]),
        "--eval",
        str(odd),
        "-o",
        str(tmp_path / "x.keras"),
    )
    assert err.exit_code == 2 and "sand" in err.stderr and "same classes" in err.stderr


@pytest.mark.unit
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--eval", "T"], "is TRAIN_DATA itself"),
        (["--eval", "E", "--validation-split", "0.3"], "drop one of them"),
        (["--eval-labels", "y.npy"], "add --eval"),
        (["--eval", "E", "-o", "E"], "never overwrites"),
    ],
)
def test_eval_usage_errors(tmp_path: Path, args: list[str], expected: str) -> None:
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 8), np.float32), y=np.array([0, 1, 2, 0]))
    subst = {"T": fixture_path("collapsed.npz"), "E": str(tmp_path / "e.npz")}
    argv = [subst.get(a, a) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "f.keras")]
    r = run_cli("fix", "--retrain", fixture_path("collapsed.keras"), subst["T"], *argv)
    assert r.exit_code == 2 and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.unit
def test_eval_applies_to_retrain_only() -> None:
    r = run_cli("fix", "--class-weights", fixture_path("collapsed.npz"), "--eval", "x.npz")
    assert r.exit_code == 2 and "--eval applies to --retrain" in r.stderr


@pytest.mark.unit
def test_learning_fixes_name_their_data_training_data() -> None:
    data = fixture_path("collapsed.npz")
    weights = run_cli("fix", "--class-weights", data)
    assert f"from the labels of TRAIN_DATA {data}" in weights.stdout
    js = run_cli("fix", "--class-weights", data, "-f", "json").json()
    assert js["train_data"] == data and "TRAIN_DATA" in js["note"]
    assert {"class_weight", "method", "label_counts"} <= set(js)  # the contract's keys stay
    py = run_cli("fix", "--class-weights", data, "-f", "python").stdout
    assert py.startswith("class_weight = {") and "TRAIN_DATA" in py
    assert f"TRAIN_DATA {data}" in run_cli("fix", "--output-bias", data).stdout
    help_text = run_cli("fix", "--help").stdout
    assert "TRAIN_DATA" in help_text and "--eval" in help_text
    usage = run_cli("fix", "--class-weights")
    assert usage.exit_code == 2 and "takes TRAIN_DATA" in usage.stderr


@pytest.mark.unit
def test_balanced_accuracy_interval_is_wilson_at_the_effective_size() -> None:
    from kerasdoctor.fix.common import balanced_accuracy_interval

    def wilson(p: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return c - h, c + h

    # equal classes: the textbook Wilson interval of accuracy
    conf = np.array([[8, 2], [3, 7]])
    lo, hi, n = balanced_accuracy_interval(conf)  # type: ignore[misc]
    assert n == pytest.approx(20) and (lo, hi) == pytest.approx(wilson(0.75, 20))
    # the user's case: 20 held-out rows, one a class, all right: 100% is NOT certain
    lo, hi, n = balanced_accuracy_interval(np.eye(20, dtype=int))  # type: ignore[misc]
    assert n == pytest.approx(20) and hi == 1.0 and lo == pytest.approx(0.839, abs=1e-3)
    # unequal classes: Kish's effective size K^2 / sum(1/n_k), fewer than the rows
    conf = np.array([[90, 10], [2, 8]])
    lo, hi, n = balanced_accuracy_interval(conf)  # type: ignore[misc]
    assert n == pytest.approx(4 / (1 / 100 + 1 / 10))
    assert (lo, hi) == pytest.approx(wilson(0.85, n))
    assert balanced_accuracy_interval(np.zeros((3, 3))) is None


def _suggested(report: dict[str, Any], flag: str) -> str:
    commands = [
        fx["command"]
        for f in report["findings"]
        for fx in f["fixes"]
        if (fx.get("command") or "").startswith(f"kerasdoctor fix {flag} ")
    ]
    assert len(commands) == 1, report["findings"]
    return str(commands[0])


def test_diagnose_suggests_retraining_on_train_data_measured_on_the_diagnosed_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with np.load(fixture_path("collapsed.npz")) as d:
        x, y = d["x"], d["y"]
    np.save("x.npy", x)
    np.save("y.npy", y)
    report = run_cli(
        "diagnose", fixture_path("collapsed.keras"), "x.npy", "--labels", "y.npy", "-f", "json"
    ).json()
    retrain = _suggested(report, "--retrain")
    assert " TRAIN_DATA --labels TRAIN_LABELS --eval x.npy --eval-labels y.npy " in retrain
    assert "--class-weights TRAIN_DATA --labels TRAIN_LABELS" in _suggested(
        report, "--class-weights"
    )
    # the repair fits on half of the diagnosed data and proves itself on the other half: it
    # reads the diagnosed data with its own flags, not TRAIN_DATA
    assert "--repair" in _suggested(report, "--repair") and " x.npy --labels y.npy " in _suggested(
        report, "--repair"
    )
    # as the user runs it: their training data (here: the first 700 rows) in place of
    # TRAIN_DATA; it trains on those only and measures on all of the diagnosed data
    np.save("xt.npy", x[:700])
    np.save("yt.npy", y[:700])
    argv = [
        {"TRAIN_DATA": "xt.npy", "TRAIN_LABELS": "yt.npy"}.get(a, a)
        for a in shlex.split(retrain)[1:]
    ]
    r = run_cli(*argv, "--epochs", "1", "-f", "json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert (out["n_train"], out["n_heldout"]) == (700, 980)
    assert out["follow_up"] == "kerasdoctor diagnose collapsed_fixed.keras x.npy --labels y.npy"
