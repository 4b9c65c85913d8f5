"""Odd but valid inputs, safe loading, no harm to input files, Ctrl-C."""

from __future__ import annotations

import hashlib
import importlib.util
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
    r = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        _npz(tmp_path, x=x[y == 0], y=y[y == 0]),
        "-f",
        "json",
    )
    _ok(r)
    assert r.json()["data"]["label_counts"] == [200, 0, 0]


def test_a_class_with_a_single_sample(tmp_path: Path) -> None:
    x, y = _healthy_xy()
    keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:1]])
    r = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        _npz(tmp_path, x=x[keep], y=y[keep]),
        "-f",
        "json",
    )
    _ok(r)
    assert r.json()["data"]["label_counts"][2] == 1


def test_string_labels_with_class_names(tmp_path: Path) -> None:
    x, y = _healthy_xy()
    names = np.array(["apple", "orange", "grape"])
    r = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        _npz(tmp_path, x=x, y=names[y], class_names=names),
        "-f",
        "json",
    )
    _ok(r)
    assert r.json()["metrics"]["accuracy"] > 0.95


@pytest.mark.parametrize("dtype", ["float16", "int32"])
def test_integer_and_float16_inputs(tmp_path: Path, dtype: str) -> None:
    x, y = _healthy_xy()
    r = run_cli(
        "diagnose",
        fixture_path("healthy.keras"),
        _npz(tmp_path, x=np.round(x).astype(dtype), y=y),
        "-f",
        "json",
    )
    _ok(r)
    assert r.json()["data"]["inputs"][0]["dtype"] == dtype


def test_a_thousand_classes(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(1000, activation="softmax")])
    model.save(tmp_path / "k1000.keras")
    rng = np.random.default_rng(0)
    r = run_cli(
        "diagnose",
        str(tmp_path / "k1000.keras"),
        _npz(
            tmp_path, x=rng.normal(size=(3000, 16)).astype("float32"), y=rng.integers(0, 1000, 3000)
        ),
        "-f",
        "json",
    )
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
    ok = run_cli(
        "diagnose",
        str(tmp_path / "two.keras"),
        fixture_path("healthy.npz"),
        "--output-name",
        "fruit",
        "-f",
        "json",
    )
    _ok(ok)
    assert ok.json()["model"]["output"] == "fruit"


def test_lambda_layer_is_refused_unless_unsafe(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Lambda(lambda t: t * 2.0),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(tmp_path / "lam.keras")
    r = run_cli("diagnose", str(tmp_path / "lam.keras"), fixture_path("healthy.npz"))
    assert r.exit_code == 2
    assert "Lambda" in r.stderr and "--unsafe" in r.stderr
    _ok(
        run_cli(
            "diagnose",
            str(tmp_path / "lam.keras"),
            fixture_path("healthy.npz"),
            "--unsafe",
            "-f",
            "json",
        )
    )


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


# -- Ctrl-C (issue 18): one line and exit 130 wherever it lands. A fixed sleep finds the race
# only by luck, so each ^C is sent at a phase of the run read from /proc: the entry point has
# started its watcher thread (the CLI is parsing), TensorFlow's library is mapped (its import
# runs for seconds), h5py's (the model loads), jaxlib's (`import keras` loads it when it is
# installed: a ^C in its initialisation aborted the process, or was lost), scikit-learn's
# (the checks run).

INTERRUPTED = "kerasdoctor: interrupted"
HAS_JAX = importlib.util.find_spec("jaxlib") is not None
CTRL_C_PHASES = [  # (what must be in the process first, seconds after it, ^C count)
    ("threads", 0.0, 1),
    ("libtensorflow_framework", 0.0, 1),
    ("libtensorflow_framework", 0.3, 1),
    ("libtensorflow_framework", 1.0, 2),  # a second ^C while the first unwinds
    ("h5py", 0.2, 1),
    ("libjax_common", 0.0, 1),
    ("libjax_common", 0.25, 1),
    ("sklearn", 0.0, 1),
]


def _reached(pid: int, marker: str) -> bool:
    try:
        if marker == "threads":  # main() starts its ^C watcher before anything heavy
            return len(os.listdir(f"/proc/{pid}/task")) >= 2
        with open(f"/proc/{pid}/maps") as maps:
            return marker in maps.read()
    except OSError:
        return False


def _sigint_ignored(pid: int) -> bool:
    """main() has finished the run and ignores SIGINT: a ^C now comes too late."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the phase from /proc")
@pytest.mark.parametrize(
    ("marker", "after", "presses"),
    CTRL_C_PHASES,
    ids=[f"{m.split('_')[0]}+{a}s" + "x2" * (n > 1) for m, a, n in CTRL_C_PHASES],
)
def test_ctrl_c_exits_130_and_leaves_no_output(
    tmp_path: Path, marker: str, after: float, presses: int
) -> None:
    if marker == "libjax_common" and not HAS_JAX:
        pytest.skip("jax is not installed")
    out = tmp_path / "report.json"
    env = dict(os.environ, CI="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kerasdoctor",
            "diagnose",
            fixture_path("collapsed.keras"),
            fixture_path("collapsed.npz"),
            "-f",
            "json",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        while not _reached(proc.pid, marker):
            assert proc.poll() is None, f"the run ended before {marker}: {proc.communicate()}"
            time.sleep(0.005)
        time.sleep(after)
        assert not _sigint_ignored(proc.pid), f"the run was over before {marker}+{after}s"
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.1)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert [ln for ln in err.splitlines() if ln.strip()] == [INTERRUPTED], err
    assert not out.exists() and not list(tmp_path.glob(".*"))


# The ways Python itself loses a ^C, each in a small child without TensorFlow, run as
# `python -m` as the test above runs kerasdoctor: the ^C is raised where Python can only print
# it (a __del__, as in jax's gc callback); a library catches and drops it; it escapes code run
# by exec() of a string (dataclasses and namedtuple build their methods so), which under -m
# made CPython kill itself with SIGINT at exit after the line was written.
SWALLOWED = r"""
import sys, time
from kerasdoctor import _signals
HOW = sys.argv[1]
_signals.DEADLINE_S = float(sys.argv[2])

def ready():
    sys.stderr.write("READY\n"); sys.stderr.flush()

def busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))

class Slow:
    def __del__(self):  # the ^C lands here
        ready()
        busy(1.0)

def run():
    if HOW == "del":
        Slow()  # dropped at once: __del__ runs
    elif HOW == "exec":
        exec("ready()\nbusy(5.0)")
    else:
        ready()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except BaseException:  # a library that drops every KeyboardInterrupt
                pass
    busy(5.0)  # the rest of a run that must not happen
    sys.stdout.write("REPORT\n")

from kerasdoctor import cli
cli._light_command = lambda args: run
sys.argv = ["kerasdoctor", "checks"]
cli.main()
"""


@pytest.mark.parametrize(
    ("how", "deadline", "within"),
    [("del", 15.0, 2.5), ("exec", 15.0, 2.5), ("dropped-always", 1.0, 4.0)],
)
def test_a_lost_ctrl_c_still_exits_130(
    tmp_path: Path, how: str, deadline: float, within: float
) -> None:
    (tmp_path / "kd_swallowed.py").write_text(SWALLOWED)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kd_swallowed", how, str(deadline)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == "READY\n"
        time.sleep(0.1)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert time.monotonic() - start < within
    assert out == "" and [ln for ln in err.splitlines() if ln.strip()] == [INTERRUPTED], err


# -- a reader that closes stdout early (`| head -1`): a quiet exit 1, never 3 or a traceback


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: EPIPE every time
    try:
        return subprocess.run(
            [sys.executable, "-m", "kerasdoctor", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ("checks",),
        ("explain", "missing-classes"),
        ("--version",),
        ("--help",),
        ("diagnose", "--help"),
    ],
)
def test_closed_stdout_ends_quietly(args: tuple[str, ...]) -> None:
    r = _into_closed_pipe(*args)
    assert (r.returncode, r.stderr) == (1, ""), r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_closed_stdout_ends_a_diagnosis_quietly(fmt: str) -> None:
    # healthy: its own exit code is 0, so the 1 is the closed pipe's
    r = _into_closed_pipe(
        "diagnose", fixture_path("healthy.keras"), fixture_path("healthy.npz"), "-f", fmt
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr, r.stderr


def test_head_reads_one_line() -> None:
    head = subprocess.run(
        f"'{sys.executable}' -m kerasdoctor checks | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert head.returncode == 0 and head.stderr == ""
    assert len(head.stdout.splitlines()) == 1


CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="kdtest")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
"""


def test_custom_layers_load_with_custom_objects(tmp_path: Path) -> None:
    import importlib.util

    import keras

    module = tmp_path / "layers_def.py"
    module.write_text(CUSTOM_LAYER.replace("kdtest", "kdtest_custom"))
    spec = importlib.util.spec_from_file_location("layers_def_build", module)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    model = keras.Sequential(
        [keras.Input((8,)), mod.Doubler(), keras.layers.Dense(3, activation="softmax")]
    )
    model.save(tmp_path / "custom.keras")
    keras.saving.get_custom_objects().clear()  # a fresh process would not know the class
    r = run_cli("diagnose", str(tmp_path / "custom.keras"), fixture_path("healthy.npz"))
    assert r.exit_code == 2 and "--custom-objects" in r.stderr, r.stderr
    _ok(
        run_cli(
            "diagnose",
            str(tmp_path / "custom.keras"),
            fixture_path("healthy.npz"),
            "--custom-objects",
            str(module),
            "-f",
            "json",
        )
    )
    bad = run_cli(
        "diagnose",
        str(tmp_path / "custom.keras"),
        fixture_path("healthy.npz"),
        "--custom-objects",
        str(tmp_path / "missing.py"),
    )
    assert bad.exit_code == 2 and "not a Python file" in bad.stderr


def test_output_files_get_the_usual_permissions(tmp_path: Path) -> None:
    out = tmp_path / "weights.json"
    r = run_cli(
        "fix", "--class-weights", fixture_path("collapsed.npz"), "-f", "json", "-o", str(out)
    )
    assert r.exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
