"""Scale benchmark: kerasdoctor on N samples against what a competent user writes instead.

    python bench/scale.py                # 1,000,000 28x28x1 images, a small CNN (minutes)
    python bench/scale.py --n 20000      # a quick run
    python bench/scale.py --json out.json --dir /tmp/kd-scale

Both sides run in their own fresh Python process, one after the other, on the same files
(x.npy uint8 (N, 28, 28, 1) and y.npy, written once into --dir and reused):
  user:   np.load both files, keras.saving.load_model, model.predict(x, batch_size=1024),
          sklearn.metrics.classification_report(y, argmax)
  doctor: kerasdoctor diagnose model.keras x.npy --labels y.npy --format json --output ...
Wall time (process start to exit, imports included) and peak resident memory (the kernel's
ru_maxrss of that process, from wait4) are reported for each, with the ratios doctor/user.
Targets: time <= 1.3x, peak memory <= 1.2x. --check exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SHAPE = (28, 28, 1)
K = 10
CHUNK = 50_000
TIME_TARGET = 1.3
MEMORY_TARGET = 1.2


def make_images(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """uint8 images: noise, plus a bright 7x7 square whose position is the class."""
    n = y.shape[0]
    x = rng.integers(0, 96, (n, *SHAPE), dtype=np.uint8)
    rows, cols = (y // 4) * 7, (y % 4) * 7
    for dr in range(7):
        for dc in range(7):
            x[np.arange(n), rows + dr, cols + dc, 0] += np.uint8(140)
    return x


def make_data(d: Path, n: int) -> None:
    """x.npy, y.npy and model.keras in d (kept and reused when N matches)."""
    stamp = d / "n.txt"
    if stamp.exists() and stamp.read_text().strip() == str(n) and (d / "model.keras").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = np.lib.format.open_memmap(d / "x.npy", mode="w+", dtype=np.uint8, shape=(n, *SHAPE))
    y = np.lib.format.open_memmap(d / "y.npy", mode="w+", dtype=np.int64, shape=(n,))
    for s in range(0, n, CHUNK):
        yy = rng.integers(0, K, min(CHUNK, n - s))
        x[s: s + yy.shape[0]] = make_images(rng, yy)
        y[s: s + yy.shape[0]] = yy
    x.flush()
    y.flush()
    del x, y
    import keras

    keras.utils.set_random_seed(0)
    yt = rng.integers(0, K, min(n, 20_000))
    xt = make_images(rng, yt)
    model = keras.Sequential([
        keras.Input(SHAPE, name="image"),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(K, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt, yt, epochs=2, batch_size=128, verbose=0)
    model.save(d / "model.keras")
    stamp.write_text(str(n))


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


def run_measured(argv: list[str]) -> dict[str, float]:
    """Run argv in a fresh process; its wall time and peak RSS (wait4's ru_maxrss)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read the pipes in threads so a chatty child cannot block on a full pipe before wait4
    import threading

    out: dict[str, bytes] = {}

    def drain(name: str, pipe: object) -> None:
        out[name] = pipe.read()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=drain, args=(k, getattr(proc, k)))
               for k in ("stdout", "stderr")]
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
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out["stdout"],
            "exit": proc.returncode}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="samples (default 1,000,000)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/kerasdoctor-scale"))
    ap.add_argument("--repeat", type=int, default=1, help="runs per side (the median is kept)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--side", choices=["user"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "user":
        user_side(args.dir)
        return
    t = time.perf_counter()
    make_data(args.dir, args.n)
    print(f"data: {args.n:,} x {SHAPE} uint8 in {args.dir} "
          f"({(args.dir / 'x.npy').stat().st_size / 2**20:,.0f} MiB), "
          f"ready in {time.perf_counter() - t:.1f} s")
    d = args.dir
    user_cmd = [sys.executable, __file__, "--side", "user", "--dir", str(d)]
    doctor_cmd = [sys.executable, "-m", "kerasdoctor.cli", "diagnose", str(d / "model.keras"),
                  str(d / "x.npy"), "--labels", str(d / "y.npy"), "--format", "json",
                  "--output", str(d / "report.json")]
    runs: dict[str, list[dict[str, float]]] = {"user": [], "doctor": []}
    for _ in range(args.repeat):  # alternate, so drift on a shared machine hits both sides
        runs["user"].append(run_measured(user_cmd))
        runs["doctor"].append(run_measured(doctor_cmd))
    med = {side: {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "peak_rss_mb")}
           for side, rs in runs.items()}
    inner = json.loads(runs["user"][-1]["stdout"])  # type: ignore[arg-type]
    report = json.loads((d / "report.json").read_text())
    import keras

    result = {
        "n": args.n,
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "user": {**med["user"], **inner},
        "doctor": {**med["doctor"], "findings": [f["id"] for f in report["findings"]],
                   "n_samples": report["data"]["n_samples"]},
        "time_ratio": med["doctor"]["wall_s"] / med["user"]["wall_s"],
        "memory_ratio": med["doctor"]["peak_rss_mb"] / med["user"]["peak_rss_mb"],
    }
    u, dd = result["user"], result["doctor"]
    print(f"backend {result['backend']}, {result['cpu_count']} CPUs, "
          f"median of {args.repeat} run(s) per side")
    print(f"user   (np.load + model.predict + classification_report): {u['wall_s']:7.1f} s "
          f"{u['peak_rss_mb']:8.0f} MiB peak  [load {u['load_s']:.1f} s, predict "
          f"{u['predict_s']:.1f} s, report {u['report_s']:.1f} s]")
    print(f"doctor (kerasdoctor diagnose x.npy --labels y.npy):       {dd['wall_s']:7.1f} s "
          f"{dd['peak_rss_mb']:8.0f} MiB peak  [findings: {', '.join(dd['findings']) or 'none'}]")
    ok_t = result["time_ratio"] <= TIME_TARGET
    ok_m = result["memory_ratio"] <= MEMORY_TARGET
    print(f"time   {result['time_ratio']:.2f}x (target <= {TIME_TARGET}x) "
          f"{'ok' if ok_t else 'MISSED'}")
    print(f"memory {result['memory_ratio']:.2f}x (target <= {MEMORY_TARGET}x) "
          f"{'ok' if ok_m else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.check and not (ok_t and ok_m):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
