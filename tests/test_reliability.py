"""Odd but valid inputs, safe loading, no harm to input files, Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, fixture_path, run_cli


def _ok(r) -> None:  # type: ignore[no-untyped-def]
    assert r.exit_code in (0, 1), (r.exit_code, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr


def _npz(tmp_path: Path, **arrays) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return str(path)


def _healthy_xy() -> tuple[np.ndarray, np.ndarray]:
    with np.load(fixture_path("healthy.npz")) as d:
        return d["x"], d["y"]


def test_one_class_only_in_the_labels(tmp_path: Path) -> None:
    x, y = _healthy_xy()
    r = run_cli("diagnose", fixture_path("healthy.keras"), _npz(tmp_path, x=x[y == 0],
                y=y[y == 0]), "-f", "json")
    _ok(r)
    assert r.json()["data"]["label_counts"] == [200, 0, 0]


def test_a_class_with_a_single_sample(tmp_path: Path) -> None:
    x, y = _healthy_xy()
    keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:1]])
    r = run_cli("diagnose", fixture_path("healthy.keras"), _npz(tmp_path, x=x[keep], y=y[keep]),
                "-f", "json")
    _ok(r)
    assert r.json()["data"]["label_counts"][2] == 1


def test_string_labels_with_class_names(tmp_path: Path) -> None:
    x, y = _healthy_xy()
    names = np.array(["apple", "orange", "grape"])
    r = run_cli("diagnose", fixture_path("healthy.keras"),
                _npz(tmp_path, x=x, y=names[y], class_names=names), "-f", "json")
    _ok(r)
    assert r.json()["metrics"]["accuracy"] > 0.95


@pytest.mark.parametrize("dtype", ["float16", "int32"])
def test_integer_and_float16_inputs(tmp_path: Path, dtype: str) -> None:
    x, y = _healthy_xy()
    r = run_cli("diagnose", fixture_path("healthy.keras"),
                _npz(tmp_path, x=np.round(x).astype(dtype), y=y), "-f", "json")
    _ok(r)
    assert r.json()["data"]["inputs"][0]["dtype"] == dtype


def test_a_thousand_classes(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1000, activation="softmax")])
    model.save(tmp_path / "k1000.keras")
    rng = np.random.default_rng(0)
    r = run_cli("diagnose", str(tmp_path / "k1000.keras"),
                _npz(tmp_path, x=rng.normal(size=(3000, 16)).astype("float32"),
                     y=rng.integers(0, 1000, 3000)), "-f", "json")
    _ok(r)
    assert r.json()["data"]["n_classes"] == 1000
    table = run_cli("diagnose", str(tmp_path / "k1000.keras"), str(tmp_path / "d.npz"))
    _ok(table)
    assert "Confusion matrix" not in table.stdout  # too wide for a terminal; it is in the JSON


def _two_output_model(path: Path) -> None:
    import keras

    inp = keras.Input((8,), name="features")
    h = keras.layers.Dense(8, activation="relu")(inp)
    cls = keras.layers.Dense(3, activation="softmax", name="fruit")(h)
    reg = keras.layers.Dense(1, name="weight_grams")(h)
    keras.Model(inp, [cls, reg]).save(path)


def test_several_outputs_need_output_name(tmp_path: Path) -> None:
    _two_output_model(tmp_path / "two.keras")
    r = run_cli("diagnose", str(tmp_path / "two.keras"), fixture_path("healthy.npz"))
    assert r.exit_code == 2
    assert "--output-name" in r.stderr and "fruit" in r.stderr and "weight_grams" in r.stderr
    ok = run_cli("diagnose", str(tmp_path / "two.keras"), fixture_path("healthy.npz"),
                 "--output-name", "fruit", "-f", "json")
    _ok(ok)
    assert ok.json()["model"]["output"] == "fruit"


def test_lambda_layer_is_refused_unless_unsafe(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "lam.keras")
    r = run_cli("diagnose", str(tmp_path / "lam.keras"), fixture_path("healthy.npz"))
    assert r.exit_code == 2
    assert "Lambda" in r.stderr and "--unsafe" in r.stderr
    _ok(run_cli("diagnose", str(tmp_path / "lam.keras"), fixture_path("healthy.npz"),
                "--unsafe", "-f", "json"))


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def test_inputs_are_never_written(tmp_path: Path) -> None:
    inputs = [FIXTURES / "collapsed.keras", FIXTURES / "collapsed.npz"]
    before = _digest(inputs)
    out = tmp_path / "report.json"
    r = run_cli("diagnose", *map(str, inputs), "-f", "json", "-o", str(out))
    assert r.exit_code == 1 and r.stdout == ""
    assert out.exists() and not list(tmp_path.glob(".*.tmp"))
    assert _digest(inputs) == before


def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = dict(os.environ, CI="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasdoctor.cli", "diagnose", fixture_path("collapsed.keras"),
         fixture_path("collapsed.npz"), "-f", "json", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.5)  # inside the TensorFlow import, well before the report is written
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*"))


CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="kdtest")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
'''


def test_custom_layers_load_with_custom_objects(tmp_path: Path) -> None:
    import importlib.util

    import keras

    module = tmp_path / "layers_def.py"
    module.write_text(CUSTOM_LAYER.replace("kdtest", "kdtest_custom"))
    spec = importlib.util.spec_from_file_location("layers_def_build", module)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    model = keras.Sequential([keras.Input((8,)), mod.Doubler(),
                              keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().clear()  # a fresh process would not know the class
    r = run_cli("diagnose", str(tmp_path / "custom.keras"), fixture_path("healthy.npz"))
    assert r.exit_code == 2 and "--custom-objects" in r.stderr, r.stderr
    _ok(run_cli("diagnose", str(tmp_path / "custom.keras"), fixture_path("healthy.npz"),
                "--custom-objects", str(module), "-f", "json"))
    bad = run_cli("diagnose", str(tmp_path / "custom.keras"), fixture_path("healthy.npz"),
                  "--custom-objects", str(tmp_path / "missing.py"))
    assert bad.exit_code == 2 and "not a Python file" in bad.stderr


def test_output_files_get_the_usual_permissions(tmp_path: Path) -> None:
    out = tmp_path / "weights.json"
    r = run_cli("fix", "--class-weights", fixture_path("collapsed.npz"), "-f", "json",
                "-o", str(out))
    assert r.exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
