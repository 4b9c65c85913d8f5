"""The sharded diagnosis on Beam's DirectRunner: 1 worker against 2, and the single process.

    python bench/beam_workers.py [--rows N] [--shards S] [--repeats R]

A small CNN (28x28x1 inputs, 10 classes, ReLU taps) on N random rows, written as S TFRecord
shards by the converter. Times, wall clock, for the whole diagnosis (model load, pass,
checks, report): `kerasdoctor diagnose` on the .npz; the pipeline in the in-process
DirectRunner; the DirectRunner in multi-processing mode with 1 and with 2 worker processes
(each worker process imports TensorFlow and loads the model once, in DoFn.setup). Prints the
median of R runs of each, the rows each worker predicted, and whether every run gave the same
findings and confusion matrix. docs/beam.md quotes the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def build(workdir: Path, rows: int, shards: int) -> tuple[str, str, str]:
    import keras

    from kerasdoctor.beam.convert import convert_npz

    rng = np.random.default_rng(0)
    x = rng.random((rows, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, rows)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model_path, npz = workdir / "model.keras", workdir / "data.npz"
    model.save(model_path)
    np.savez(npz, x=x, y=y)
    start = time.perf_counter()
    convert_npz(npz, workdir / "shards", shards=shards)
    print(
        f"converter: {rows} rows -> {shards} TFRecord shards in {time.perf_counter() - start:.1f} s"
    )
    return str(model_path), str(npz), str(workdir / "shards" / "shard-*.tfrecord")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    import keras

    from kerasdoctor.beam import pipeline as beam_pipeline
    from kerasdoctor.core import Options, diagnose_paths

    workdir = Path(tempfile.mkdtemp(prefix="kd-bench-"))
    model, npz, pattern = build(workdir, args.rows, args.shards)
    seen_rows: dict[str, dict[str, int]] = {}
    original_probe = beam_pipeline.probe_shards

    def probe_and_note(*a: Any, **k: Any) -> Any:  # keep the rows each worker predicted
        ev, data = original_probe(*a, **k)
        seen_rows[current] = data.worker_rows
        return ev, data

    beam_pipeline.probe_shards = probe_and_note
    runs: dict[str, Any] = {
        "single process, .npz": lambda: diagnose_paths(model, npz, Options()),
        "Beam DirectRunner, in-process": lambda: beam_pipeline.diagnose_shards(
            model, pattern, Options()
        ),
    }
    for n in (1, 2):
        args_n = [f"--direct_num_workers={n}", "--direct_running_mode=multi_processing"]
        runs[f"Beam DirectRunner, {n} worker process{'es' if n > 1 else ''}"] = lambda a=args_n: (
            beam_pipeline.diagnose_shards(model, pattern, Options(), pipeline_args=a)
        )
    results: dict[str, list[float]] = {name: [] for name in runs}
    reports: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            current = name
            start = time.perf_counter()
            reports[name] = fn()
            results[name].append(time.perf_counter() - start)
    print(
        f"{args.rows} rows, {args.shards} shards, small CNN (28x28x1, 10 classes), backend "
        f"{keras.backend.backend()}, {os.cpu_count()} cores; median of {args.repeats}:"
    )
    base = statistics.median(results["single process, .npz"])
    for name, times in results.items():
        t = statistics.median(times)
        rows = seen_rows.get(name)
        extra = f"  rows per worker: {sorted(rows.values())}" if rows else ""
        print(
            f"  {name:<40} {t:7.2f} s  (min {min(times):.2f}, max {max(times):.2f}; "
            f"{t / base:4.2f}x single){extra}"
        )
    ref = reports["single process, .npz"].to_dict()
    same = all(
        [f["id"] for f in r.to_dict()["findings"]] == [f["id"] for f in ref["findings"]]
        and r.to_dict()["metrics"]["confusion_matrix"] == ref["metrics"]["confusion_matrix"]
        for r in reports.values()
    )
    print(f"same findings and confusion matrix in every run: {same}")


if __name__ == "__main__":
    main()
