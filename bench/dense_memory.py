"""Dense memory benchmark: peak RSS and wall time of diagnosing 512x512 masks, against loading
and predicting the same data, for several N: the pass's own memory must not grow with N.

    python bench/dense_memory.py                      # N = 16 and 64, 512x512, K = 21
    python bench/dense_memory.py --n 8 32 --size 256  # a quick run
    python bench/dense_memory.py --naive --format html --json out.json

For each N, data.npz (x uint8 (N, S, S, 3), y uint8 (N, S, S) class indices, about 95%
background) and model.keras (a small fully-convolutional network, Rescaling -> 2 Conv2D ->
1x1 Conv2D softmax over K classes, untrained, its background bias raised so that it predicts
background nearly everywhere: a collapsed model, so every finding and experiment runs) are
written once into --dir/N and reused. Each side then runs in a fresh Python process, one
after the other, on the same files:
  load:   np.load of x and y, keras.saving.load_model (the floor: the data in memory)
  user:   load, then predict in batches of 4 keeping the argmax, a K x K confusion matrix
          (np.bincount) and the per-class IoU: what a careful user writes
  naive:  (--naive) load, then model.predict(x) whole: (N, S, S, K) float32 at once
  doctor: kerasdoctor diagnose model.keras data.npz --format json (or --format html)
  pass:   the same diagnosis through the Python API with the model-level causes ignored
          (preprocessing-mismatch, batchnorm-statistics, single-unit-softmax: experiments that
          re-run the model on a sample of up to 64 samples, so they grow with N up to 64):
          the streaming pass, its findings and the report alone
Wall time (process start to exit, imports included) and peak resident memory (ru_maxrss from
wait4) are reported per side; then, per side, the growth of peak RSS per added sample between
the smallest and largest N, next to the data's own bytes per sample (x and y as loaded).
Bounded memory means the doctor's growth is the data's, as the load floor's is: doctor - load
stays flat across N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MiB = 2**20
BACKGROUND_BIAS = 4.0  # logit added to class 0: the model predicts background nearly always
USER_BATCH = 4


def make_data(d: Path, n: int, size: int, k: int, seed: int) -> dict[str, Any]:
    """data.npz and model.keras in d, reused while (n, size, k, seed) match."""
    key = {"n": n, "size": size, "k": k, "seed": seed, "bias": BACKGROUND_BIAS}
    stamp = d / "meta.json"
    if stamp.exists() and (d / "model.keras").exists() and (d / "data.npz").exists():
        meta: dict[str, Any] = json.loads(stamp.read_text())
        if {name: meta.get(name) for name in key} == key:
            return {**meta, "cached": True}
    d.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 64, (n, size, size, 3), dtype=np.uint8)
    y = np.zeros((n, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):  # a few discs of foreground classes: about 5% of the pixels
        for _ in range(3):
            c = int(rng.integers(1, k))
            r = size * rng.uniform(0.04, 0.09)
            cy, cx = rng.uniform(r, size - r, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            y[i][disc] = c
            x[i][disc] = np.uint8(80 + 8 * c)
    np.savez(d / "data.npz", x=x, y=y)
    del x, y
    import keras

    keras.utils.set_random_seed(seed)
    bias = np.zeros(k, np.float32)
    bias[0] = BACKGROUND_BIAS
    model = keras.Sequential(
        [
            keras.Input((size, size, 3), name="image"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(
                k, 1, activation="softmax", bias_initializer=keras.initializers.Constant(bias)
            ),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(d / "model.keras")
    meta = {
        **key,
        "params": int(model.count_params()),
        "npz_mib": (d / "data.npz").stat().st_size / MiB,
    }
    stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "cached": False}


def _load(d: Path) -> tuple[Any, np.ndarray, np.ndarray]:
    import keras

    with np.load(d / "data.npz") as npz:
        x, y = npz["x"], npz["y"]
    return keras.saving.load_model(d / "model.keras"), x, y


def side_load(d: Path) -> None:
    t0 = time.perf_counter()
    _, x, y = _load(d)
    print(json.dumps({"load_s": time.perf_counter() - t0, "data_mib": (x.nbytes + y.nbytes) / MiB}))


def side_user(d: Path) -> None:
    t0 = time.perf_counter()
    model, x, y = _load(d)
    t1 = time.perf_counter()
    k = int(model.output_shape[-1])
    cm = np.zeros(k * k, np.int64)
    for s in range(0, len(x), USER_BATCH):
        pred = np.argmax(model.predict_on_batch(x[s : s + USER_BATCH]), axis=-1)
        cm += np.bincount(
            y[s : s + USER_BATCH].astype(np.int64).ravel() * k + pred.ravel(), minlength=k * k
        )
    cm = cm.reshape(k, k)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = tp[union > 0] / union[union > 0]
    print(
        json.dumps(
            {
                "load_s": t1 - t0,
                "predict_s": time.perf_counter() - t1,
                "mean_iou": float(iou.mean()),
            }
        )
    )


def side_naive(d: Path) -> None:
    t0 = time.perf_counter()
    model, x, y = _load(d)
    t1 = time.perf_counter()
    probs = model.predict(x, batch_size=USER_BATCH, verbose=0)
    pred = probs.argmax(axis=-1)
    print(
        json.dumps(
            {
                "load_s": t1 - t0,
                "predict_s": time.perf_counter() - t1,
                "accuracy": float((pred == y).mean()),
                "output_mib": probs.nbytes / MiB,
            }
        )
    )


def side_pass(d: Path, fmt: str) -> None:
    t0 = time.perf_counter()
    from kerasdoctor.core import Options, diagnose_paths
    from kerasdoctor.render import render
    from kerasdoctor.task_causes import CAUSES

    opts = Options(ignore={c: "bench: the streaming pass only" for c in CAUSES})
    report = diagnose_paths(d / "model.keras", d / "data.npz", opts)
    text = render(report, fmt)
    print(
        json.dumps(
            {
                "wall_in_s": time.perf_counter() - t0,
                "report_mib": len(text) / MiB,
                "findings": [f.id for f in report.findings],
                "samples": len(getattr(report, "samples", ())),
            }
        )
    )


def run_measured(argv: list[str]) -> dict[str, Any]:
    """Run argv in a fresh process; its wall time, peak RSS (wait4's ru_maxrss), stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}

    def drain(name: str) -> None:
        out[name] = getattr(proc, name).read()

    threads = [threading.Thread(target=drain, args=(k,)) for k in ("stdout", "stderr")]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    for t in threads:
        t.join()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # kerasdoctor exits 1 when it finds an error
        sys.stderr.write(out["stderr"].decode(errors="replace")[-3000:])
        raise SystemExit(f"{argv[:4]} failed with exit code {code}")
    return {
        "wall_s": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "stdout": out["stdout"].decode(errors="replace"),
        "exit": code,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[16, 64],
        help="sample counts to compare (default: 16 64)",
    )
    ap.add_argument("--size", type=int, default=512, help="image and mask side (default 512)")
    ap.add_argument("--classes", type=int, default=21, help="K, classes of the model (21)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/kerasdoctor-dense-memory"))
    ap.add_argument(
        "--format",
        choices=["json", "html"],
        default="json",
        help="the doctor's report format (html also draws the sample masks)",
    )
    ap.add_argument(
        "--naive",
        action="store_true",
        help="also time model.predict(x) holding the whole (N, S, S, K) output",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--side", choices=["load", "user", "naive", "pass"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "pass":
        side_pass(args.dir, args.format)
        return
    if args.side is not None:
        {"load": side_load, "user": side_user, "naive": side_naive}[args.side](args.dir)
        return
    import keras

    sides = ["load", "user", *(["naive"] if args.naive else []), "pass", "doctor"]
    results: dict[int, dict[str, Any]] = {}
    print(
        f"{args.size}x{args.size} masks, K={args.classes}, backend "
        f"{keras.backend.backend()}, {os.cpu_count()} CPUs, doctor --format {args.format}"
    )
    for n in args.n:
        d = args.dir / f"n{n}-s{args.size}-k{args.classes}"
        t = time.perf_counter()
        meta = make_data(d, n, args.size, args.classes, args.seed)
        print(
            f"N={n}: data.npz {meta['npz_mib']:.0f} MiB, model {meta['params']:,} parameters, "
            f"ready in {time.perf_counter() - t:.1f} s{' (cached)' if meta['cached'] else ''}"
        )
        report = d / f"report.{args.format}"
        doctor = [
            sys.executable,
            "-m",
            "kerasdoctor.cli",
            "diagnose",
            str(d / "model.keras"),
            str(d / "data.npz"),
            "--format",
            args.format,
            "--output",
            str(report),
        ]
        row: dict[str, Any] = {"data_mib": None}
        for side in sides:
            argv = (
                doctor
                if side == "doctor"
                else [
                    sys.executable,
                    __file__,
                    "--side",
                    side,
                    "--dir",
                    str(d),
                    "--format",
                    args.format,
                ]
            )
            got = run_measured(argv)
            if side != "doctor":
                got.update(json.loads(got.pop("stdout")))
            else:
                got.pop("stdout")
                if args.format == "json":
                    r = json.loads(report.read_text())
                    got["findings"] = [f["id"] for f in r["findings"]]
                    got["mean_iou"] = r["metrics"]["mean_iou"]
                else:
                    got["html_mib"] = report.stat().st_size / MiB
            if side == "load":
                row["data_mib"] = got["data_mib"]
            row[side] = got
            extra = ""
            if side in ("doctor", "pass") and "findings" in got:
                extra = f"  [findings: {', '.join(got['findings']) or 'none'}]"
            if side == "pass" and args.format == "html":
                extra += f"  [{got['samples']} samples drawn, {got['report_mib']:.2f} MiB]"
            elif side == "doctor" and args.format == "html":
                extra = f"  [report {got['html_mib']:.2f} MiB]"
            print(f"  {side:<7} {got['wall_s']:7.1f} s {got['peak_rss_mib']:8.0f} MiB peak{extra}")
        print(
            "  "
            + ";  ".join(
                f"{side} - load: {row[side]['peak_rss_mib'] - row['load']['peak_rss_mib']:.0f} MiB"
                for side in ("pass", "doctor")
            )
        )
        results[n] = row
    if len(results) > 1:
        lo, hi = min(results), max(results)
        a, b = results[lo], results[hi]
        per = (b["data_mib"] - a["data_mib"]) / (hi - lo)
        print(
            f"growth of peak RSS per added sample, N={lo} -> {hi} (the data itself: "
            f"{per:.2f} MiB per sample):"
        )
        for side in sides:
            g = (b[side]["peak_rss_mib"] - a[side]["peak_rss_mib"]) / (hi - lo)
            print(f"  {side:<7} {g:6.2f} MiB per sample  ({g - per:+.2f} beyond the data)")
        for side in ("pass", "doctor"):
            diff = [
                results[n][side]["peak_rss_mib"] - results[n]["load"]["peak_rss_mib"]
                for n in (lo, hi)
            ]
            print(f"{side} - load: {diff[0]:.0f} MiB at N={lo}, {diff[1]:.0f} MiB at N={hi}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
