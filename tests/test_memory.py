"""Scale: an .npy dataset larger than the memory limit it runs under is diagnosed within that
limit; the probe's activation taps do not recompute the network; the scale benchmark runs end
to end (smoke size).

What is ENFORCED: the child process runs under RLIMIT_DATA (setrlimit; on Linux >= 4.7 it caps
the private writable memory a process maps: heap, anonymous mmaps, thread stacks), so any
attempt to hold a copy of the data makes an allocation fail. The limit is the data segment
the same command needs on a tiny file (TensorFlow, the model, the code) plus BUDGET; the
dataset is 4x BUDGET, larger than the whole limit. RLIMIT_AS cannot be used: TensorFlow and
XLA reserve far more address space than they touch.
What is MEASURED: the peak resident set (ru_maxrss from wait4) of the big run against the
tiny run; it includes file-backed pages (shared libraries), the same in both.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
BUDGET = 256 * MiB  # data-dependent memory allowed on top of the start-up footprint
ROWS, WIDTH = 65536, 4096  # float32: 1 GiB, 4x BUDGET

# Runs the CLI, then reports this process's data segment (VmData) on stderr.
CHILD = """
import re, sys
from kerasdoctor.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code
status = open("/proc/self/status").read()
sys.stderr.write("VMDATA %s\\n" % re.search(r"VmData:\\s+(\\d+)", status).group(1))
sys.exit(code)
"""


def _run(argv: list[str], data_limit: int | None = None) -> dict[str, Any]:
    """Run argv; exit code, output, and peak RSS (bytes) from wait4's rusage."""

    def limit() -> None:
        if data_limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit, env=env, cwd=ROOT
    )
    out: dict[str, bytes] = {}
    threads = [
        threading.Thread(target=lambda k=k: out.__setitem__(k, getattr(proc, k).read()))
        for k in ("stdout", "stderr")
    ]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = out["stderr"].decode(errors="replace")
    found = re.search(r"VMDATA (\d+)", stderr)
    return {
        "code": proc.returncode,
        "stdout": out["stdout"].decode(),
        "stderr": stderr,
        "peak_rss": usage.ru_maxrss * 1024,
        "vmdata": int(found.group(1)) * 1024 if found else None,
    }


def _write_npy(path: Path, rows: int, seed: int) -> np.ndarray:
    """x.npy of (rows, WIDTH) float32 written in chunks (never whole in memory); its labels."""
    rng = np.random.default_rng(seed)
    labels = []
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, WIDTH)}
        )
        for start in range(0, rows, 4096):
            y, chunk = _rows(rng, min(4096, rows - start))
            labels.append(y)
            chunk.tofile(fh)
    return np.concatenate(labels)


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise, plus 0.3 on every third feature of the first 1536 for class 0, 1 or 2."""
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, WIDTH), dtype=np.float32)
    x[:, :1536] += np.float32(0.3) * (np.arange(1536) % 3 == y[:, None])
    return y.astype(np.int64), x


def _model(path: Path) -> None:
    """A small real classifier trained on rows like the data's."""
    from kerasdoctor._keras import keras

    k = keras()
    k.utils.set_random_seed(0)
    y, x = _rows(np.random.default_rng(1), 2048)
    model = k.Sequential(
        [
            k.Input((WIDTH,)),
            k.layers.Dense(16, activation="relu"),
            k.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    model.save(path)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA and /proc are Linux's")
def test_npy_larger_than_the_memory_limit_is_diagnosed_within_it(tmp_path: Path) -> None:
    _model(tmp_path / "m.keras")
    small_y = _write_npy(tmp_path / "small.npy", 2048, seed=2)
    np.save(tmp_path / "small_y.npy", small_y)
    big = tmp_path / "big.npy"
    try:
        np.save(tmp_path / "big_y.npy", _write_npy(big, ROWS, seed=3))
        assert big.stat().st_size > 4 * BUDGET

        def cli(x: str, y: str, data_limit: int | None = None) -> dict[str, Any]:
            return _run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    "diagnose",
                    str(tmp_path / "m.keras"),
                    str(tmp_path / x),
                    "--labels",
                    str(tmp_path / y),
                    "--format",
                    "json",
                ],
                data_limit,
            )

        small = cli("small.npy", "small_y.npy")
        assert small["code"] in (0, 1), small["stderr"][-2000:]
        limit = small["vmdata"] + BUDGET
        assert big.stat().st_size > limit  # the file is larger than the whole data limit

        # a plain np.load of the file cannot run under this limit: the limit is real
        control = _run([sys.executable, "-c", f"import numpy as np; np.load({str(big)!r})"], limit)
        assert control["code"] != 0 and "MemoryError" in control["stderr"], control["stderr"]

        res = cli("big.npy", "big_y.npy", limit)
        assert res["code"] in (0, 1), res["stderr"][-2000:]
        import json

        report = json.loads(res["stdout"])
        assert report["data"]["n_samples"] == ROWS
        assert report["metrics"]["accuracy"] > 0.9  # it really ran the model on the rows
        growth = res["peak_rss"] - small["peak_rss"]
        print(
            f"\ndata {big.stat().st_size / MiB:.0f} MiB; RLIMIT_DATA {limit / MiB:.0f} MiB "
            f"(start-up {small['vmdata'] / MiB:.0f} + {BUDGET / MiB:.0f}); peak RSS "
            f"{res['peak_rss'] / MiB:.0f} MiB vs {small['peak_rss'] / MiB:.0f} MiB on "
            f"2,048 rows (growth {growth / MiB:.0f} MiB)"
        )
        assert growth < BUDGET
    finally:
        big.unlink(missing_ok=True)  # 1 GiB: do not leave it in pytest's kept temp dirs


@pytest.mark.slow
def test_scale_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            "--n",
            "3000",
            "--dir",
            str(tmp_path / "data"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    figures = json.loads(out.read_text())
    assert figures["doctor"]["n_samples"] == 3000
    for side in ("user", "doctor"):
        assert figures[side]["wall_s"] > 0 and figures[side]["peak_rss_mb"] > 100
    assert "time" in res.stdout and "memory" in res.stdout


@pytest.mark.parametrize(
    "fixture", ["healthy", "model_batchnorm", "model_dead_relu", "multi_input", "legacy_keras2"]
)
def test_probe_taps_reuse_the_network_instead_of_recomputing_it(fixture: str) -> None:
    """Each layer of the model runs once per batch in the tapped probe model. (A loaded
    Sequential model's layer.output belongs to an earlier call of the layer: tapping it made
    the probe recompute the network once per tap, 2-3x the time of a plain predict.)

    Counted through the probe model's public config: a layer called n times in a functional
    graph lists n inbound nodes there."""
    from conftest import fixture_path

    from kerasdoctor.load import load_model
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.probe import Predictor

    ext = ".h5" if fixture.startswith("legacy") else ".keras"
    lm = load_model(fixture_path(fixture + ext))
    predictor = Predictor(lm, read_facts(lm))
    probe = predictor.probe_model
    assert probe is not None and predictor.relu_layers  # there are taps to check
    calls = {layer["name"]: len(layer["inbound_nodes"]) for layer in probe.get_config()["layers"]}
    network = {layer.name for layer in lm.keras_model.layers}
    assert network <= set(calls), (network, calls)
    assert all(calls[name] <= 1 for name in network), calls
