"""Scale benchmark: kerasdoctor on N samples against what a competent user writes instead.

    python bench/scale.py                # 1,000,000 28x28x1 images, a small CNN (minutes)
    python bench/scale.py --n 20000      # a quick run
    python bench/scale.py --json out.json --dir /tmp/kd-scale
    python bench/scale.py --preset mid --dir /tmp/kd-mid          # 8,000 64x64x3, ~1M params
    python bench/scale.py --preset mid --sick --dir /tmp/kd-mid-sick

Both sides run in their own fresh Python process, one after the other, on the same files
(x.npy uint8 (N, H, W, C) and y.npy, written once into --dir and reused while the preset, N
and --sick match):
  user:   np.load both files, keras.saving.load_model, model.predict(x, batch_size=1024),
          sklearn.metrics.classification_report(y, argmax)
  doctor: kerasdoctor diagnose model.keras x.npy --labels y.npy --format json --output ...
Wall time (process start to exit, imports included) and peak resident memory (the kernel's
ru_maxrss of that process, from wait4) are reported for each, with the ratios doctor/user.
Targets: time <= 1.3x, peak memory <= 1.2x. --check exits 1 when a target is missed.

Presets: 'default' (N 28x28x1 images, a small CNN) and 'mid' (8,000 64x64x3 images, a CNN of
about 1M parameters). Both models are trained briefly and work, so a diagnosis is one pass and
no experiment runs. --sick writes y.npy permuted (fixed seed): the labels no longer belong to
the images, the predictions are at chance, and kerasdoctor runs its experiments (probes,
cures) on the bounded sample; the user side reads the same y.npy. --timings also reports the
seconds of each experiment, from one more (unmeasured) diagnosis through the Python API.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

K = 10
CHUNK = 50_000
TIME_TARGET = 1.3
MEMORY_TARGET = 1.2
SICK_SEED = 1  # the permutation of y.npy under --sick


@dataclass(frozen=True)
class Preset:
    shape: tuple[int, int, int]
    n: int  # default N
    train_rows: int  # the model is fitted on this many fresh images (at most N)
    epochs: int


PRESETS = {
    "default": Preset((28, 28, 1), 1_000_000, 20_000, 2),
    "mid": Preset((64, 64, 3), 8_000, 2_000, 2),  # one epoch already gets 100% held out
}


def make_images(rng: np.random.Generator, y: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images: noise, plus a bright square (a quarter of the side, in every channel)
    whose position on a 4x4 grid is the class."""
    n = y.shape[0]
    x = rng.integers(0, 96, (n, *shape), dtype=np.uint8)
    cell = shape[0] // 4
    rows, cols = (y // 4) * cell, (y % 4) * cell
    for dr in range(cell):
        for dc in range(cell):
            x[np.arange(n), rows + dr, cols + dc, :] += np.uint8(140)
    return x


def build_model(preset: str, shape: tuple[int, int, int]) -> Any:
    import keras

    if preset == "default":
        return keras.Sequential(
            [
                keras.Input(shape, name="image"),
                keras.layers.Rescaling(1.0 / 255),
                keras.layers.Conv2D(16, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(K, activation="softmax"),
            ]
        )
    # mid: 64x64x3 -> 6x6x128 = 4608 features -> Dense(192): about 0.98M parameters
    return keras.Sequential(
        [
            keras.Input(shape, name="image"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(128, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(192, activation="relu"),
            keras.layers.Dense(K, activation="softmax"),
        ]
    )


def make_data(d: Path, preset: str, n: int, sick: bool) -> dict[str, Any]:
    """x.npy, y.npy and model.keras in d, kept and reused while preset, N and sick match;
    returns the stamp (meta.json: the key plus the model's parameter count and fit)."""
    p = PRESETS[preset]
    # the preset's definition is part of the key: editing it regenerates the files
    key = {
        "preset": preset,
        "n": n,
        "sick": sick,
        "shape": list(p.shape),
        "train_rows": min(n, p.train_rows),
        "epochs": p.epochs,
    }
    stamp = d / "meta.json"
    if stamp.exists() and (d / "model.keras").exists():
        meta: dict[str, Any] = json.loads(stamp.read_text())
        if {k: meta.get(k) for k in key} == key:
            return {**meta, "cached": True}
    d.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(d / "x.npy", mode="w+", dtype=np.uint8, shape=(n, *p.shape))
    y = np.lib.format.open_memmap(d / "y.npy", mode="w+", dtype=np.int64, shape=(n,))
    for s in range(0, n, CHUNK):
        yy = rng.integers(0, K, min(CHUNK, n - s))
        x[s : s + yy.shape[0]] = make_images(rng, yy, p.shape)
        y[s : s + yy.shape[0]] = yy
    if sick:  # labels that do not belong to the images: the same counts, rows shuffled
        y[:] = np.random.default_rng(SICK_SEED).permutation(np.asarray(y))
    x.flush()
    y.flush()
    del x, y
    import keras

    t = time.perf_counter()
    keras.utils.set_random_seed(0)
    yt = rng.integers(0, K, min(n, p.train_rows))
    xt = make_images(rng, yt, p.shape)
    model = build_model(preset, p.shape)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(xt, yt, epochs=p.epochs, batch_size=128, verbose=0)
    model.save(d / "model.keras")
    meta = {
        **key,
        "params": int(model.count_params()),
        "train_accuracy": float(hist.history["accuracy"][-1]),
        "train_s": time.perf_counter() - t,
    }
    stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "cached": False}


def user_side(d: Path) -> None:
    """What a competent user writes: load, predict, classification report."""
    t0 = time.perf_counter()
    import keras
    from sklearn.metrics import classification_report

    x = np.load(d / "x.npy")
    y = np.load(d / "y.npy")
    model = keras.saving.load_model(d / "model.keras")
    t1 = time.perf_counter()
    probs = model.predict(x, batch_size=1024, verbose=0)
    t2 = time.perf_counter()
    report = classification_report(y, probs.argmax(axis=1), digits=3)
    t3 = time.perf_counter()
    sys.stderr.write(report)
    print(json.dumps({"load_s": t1 - t0, "predict_s": t2 - t1, "report_s": t3 - t2}))


def timings_side(d: Path) -> None:
    """The same diagnosis through the Python API, whose Report keeps each experiment's
    seconds (the CLI's JSON leaves them out so that its output is reproducible)."""
    t0 = time.perf_counter()
    import kerasdoctor

    x = np.load(d / "x.npy")
    y = np.load(d / "y.npy")
    report = kerasdoctor.diagnose(str(d / "model.keras"), x, y)
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - t0,
                "experiments": [{"key": e.key, "seconds": e.seconds} for e in report.experiments],
            }
        )
    )


def run_measured(argv: list[str]) -> dict[str, float]:
    """Run argv in a fresh process; its wall time and peak RSS (wait4's ru_maxrss)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read the pipes in threads so a chatty child cannot block on a full pipe before wait4
    import threading

    out: dict[str, bytes] = {}

    def drain(name: str, pipe: object) -> None:
        out[name] = pipe.read()  # type: ignore[attr-defined]

    threads = [
        threading.Thread(target=drain, args=(k, getattr(proc, k))) for k in ("stdout", "stderr")
    ]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # kerasdoctor exits 1 when it finds an error
        sys.stderr.write(out["stderr"].decode(errors="replace")[-3000:])
        raise SystemExit(f"{argv[:3]} failed with exit code {proc.returncode}")
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "stdout": out["stdout"],
        "exit": proc.returncode,
    }  # type: ignore[dict-item]


def describe(e: dict[str, Any]) -> str:
    """One experiment of the report's log, on one line."""
    if "balanced_accuracy" in e:  # a probe
        ba = e["balanced_accuracy"]
        got = "failed" if ba is None else f"balanced accuracy {ba:.3f}"
        got += f" (signal bar {e['signal_bar']:.3f}, {e['dims']} dims)" if ba is not None else ""
    else:  # a cure or a measurement
        before, after = e["balanced_accuracy_before"], e["balanced_accuracy_after"]
        got = f"balanced accuracy {before:.3f} -> " + ("n/a" if after is None else f"{after:.3f}")
    if e.get("error"):
        got += f" [{e['error']}]"
    return f"{e['key']}: {e['what']}; {got}, {e['rows']} rows"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="default: 28x28x1 images, a small CNN; mid: 64x64x3, ~1M parameters",
    )
    ap.add_argument("--n", type=int, help="samples (default: the preset's, 1,000,000 / 8,000)")
    ap.add_argument(
        "--sick",
        action="store_true",
        help="labels permuted: predictions at chance, so the experiments run",
    )
    ap.add_argument("--dir", type=Path, default=Path("/tmp/kerasdoctor-scale"))
    ap.add_argument("--repeat", type=int, default=1, help="runs per side (the median is kept)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument(
        "--timings",
        action="store_true",
        help="also time each experiment (one more, unmeasured diagnosis)",
    )
    ap.add_argument("--side", choices=["user", "timings"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "user":
        user_side(args.dir)
        return
    if args.side == "timings":
        timings_side(args.dir)
        return
    preset = PRESETS[args.preset]
    n = args.n if args.n is not None else preset.n
    t = time.perf_counter()
    meta = make_data(args.dir, args.preset, n, args.sick)
    print(
        f"data: {n:,} x {preset.shape} uint8 in {args.dir} "
        f"({(args.dir / 'x.npy').stat().st_size / 2**20:,.0f} MiB), preset {args.preset}, "
        f"{'sick (labels permuted)' if args.sick else 'healthy'}, "
        f"ready in {time.perf_counter() - t:.1f} s{' (cached)' if meta['cached'] else ''}"
    )
    print(
        f"model: {meta['params']:,} parameters, fitted {meta['epochs']} epochs on "
        f"{meta['train_rows']:,} images in {meta['train_s']:.1f} s "
        f"(train accuracy {meta['train_accuracy']:.3f})"
    )
    d = args.dir
    user_cmd = [sys.executable, __file__, "--side", "user", "--dir", str(d)]
    doctor_cmd = [
        sys.executable,
        "-m",
        "kerasdoctor.cli",
        "diagnose",
        str(d / "model.keras"),
        str(d / "x.npy"),
        "--labels",
        str(d / "y.npy"),
        "--format",
        "json",
        "--output",
        str(d / "report.json"),
    ]
    runs: dict[str, list[dict[str, float]]] = {"user": [], "doctor": []}
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both sides
        runs["user"].append(run_measured(user_cmd))
        runs["doctor"].append(run_measured(doctor_cmd))
    med = {
        side: {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "peak_rss_mb")}
        for side, rs in runs.items()
    }
    inner = json.loads(runs["user"][-1]["stdout"])  # type: ignore[arg-type]
    report = json.loads((d / "report.json").read_text())
    experiments = report.get("experiments", [])
    import keras

    result: dict[str, Any] = {
        "preset": args.preset,
        "sick": args.sick,
        "n": n,
        "shape": list(preset.shape),
        "params": meta["params"],
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "user": {**med["user"], **inner},
        "doctor": {
            **med["doctor"],
            "findings": [f["id"] for f in report["findings"]],
            "verdict": report.get("verdict"),
            "n_samples": report["data"]["n_samples"],
            "experiments": [e["key"] for e in experiments],
        },
        "time_ratio": med["doctor"]["wall_s"] / med["user"]["wall_s"],
        "memory_ratio": med["doctor"]["peak_rss_mb"] / med["user"]["peak_rss_mb"],
    }
    u, dd = result["user"], result["doctor"]
    print(
        f"backend {result['backend']}, {result['cpu_count']} CPUs, "
        f"median of {args.repeat} run(s) per side"
    )
    print(
        f"user   (np.load + model.predict + classification_report): {u['wall_s']:7.1f} s "
        f"{u['peak_rss_mb']:8.0f} MiB peak  [load {u['load_s']:.1f} s, predict "
        f"{u['predict_s']:.1f} s, report {u['report_s']:.1f} s]"
    )
    print(
        f"doctor (kerasdoctor diagnose x.npy --labels y.npy):       {dd['wall_s']:7.1f} s "
        f"{dd['peak_rss_mb']:8.0f} MiB peak  [findings: {', '.join(dd['findings']) or 'none'}]"
    )
    print(
        f"experiments: {len(experiments)} ran on the bounded sample"
        + (f" ({', '.join(dd['experiments'])})" if experiments else " (one pass only)")
    )
    for e in experiments:
        print(f"  {describe(e)}")
    if args.timings:
        timed = run_measured([sys.executable, __file__, "--side", "timings", "--dir", str(d)])
        tj = json.loads(timed["stdout"])  # type: ignore[arg-type]
        secs = {e["key"]: e["seconds"] for e in tj["experiments"]}
        result["experiment_seconds"] = secs
        print(
            f"timings (one more diagnosis, Python API, {tj['wall_s']:.1f} s): "
            f"experiments took {sum(v or 0.0 for v in secs.values()):.1f} s  ["
            + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items() if v is not None)
            + "]"
        )
    ok_t = result["time_ratio"] <= TIME_TARGET
    ok_m = result["memory_ratio"] <= MEMORY_TARGET
    print(
        f"time   {result['time_ratio']:.2f}x (target <= {TIME_TARGET}x) "
        f"{'ok' if ok_t else 'MISSED'}"
    )
    print(
        f"memory {result['memory_ratio']:.2f}x (target <= {MEMORY_TARGET}x) "
        f"{'ok' if ok_m else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.check and not (ok_t and ok_m):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
