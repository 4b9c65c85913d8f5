"""The sharded path: converter, shard layout, and the Beam pipeline agreeing with one process."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import fixture_path, run_cli

from kerasdoctor.beam import is_sharded
from kerasdoctor.cli.shard import pipeline_args
from kerasdoctor.errors import InputError

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
RTOL = 1e-9
# What the model computes (outputs, BatchNorm inputs) is float32 from TensorFlow kernels whose
# summation order depends on the batch's shape; workers batch differently, so those values
# agree to float32 resolution (a few ulps), not to the merge's 1e-9.
F32_RTOL = 1e-6


def beam_needed() -> None:
    pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")


# ------------------------------------------------------------------ pure helpers


@pytest.mark.unit
def test_is_sharded_takes_globs_of_shards_and_tfrecord_files() -> None:
    assert is_sharded("data/shard-*.tfrecord")
    assert is_sharded("gs://bucket/eval/part-?????.tfrecord.gz")
    assert is_sharded("data/shard-*.npz")
    assert is_sharded("one.tfrecord")
    assert not is_sharded("data.npz")  # one .npz: the single-process path
    assert not is_sharded("data/*.csv")  # other sources are not shards
    assert not is_sharded("images/")


@pytest.mark.unit
def test_pipeline_options_become_beam_args() -> None:
    assert pipeline_args(["project=p", "--region=r", "save_main_session"], ["--x=1"]) == [
        "--project=p",
        "--region=r",
        "--save_main_session",
        "--x=1",
    ]
    with pytest.raises(InputError, match="unexpected argument 'stray'"):
        pipeline_args([], ["stray"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        pipeline_args([""], [])


# ------------------------------------------------------------------ converter and reader


def _all_rows(pattern: str, lm: Any = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Every row of the shards, read as the workers read them."""
    from kerasdoctor.beam.layout import find_shards
    from kerasdoctor.beam.reader import ReadSpec, read_batches

    shards = find_shards(pattern)
    m = shards.manifest
    assert m is not None
    keys = tuple(m.features)
    cols: tuple[Any, ...] = ()
    if shards.format == "tfrecord":
        from kerasdoctor.beam.layout import feature_columns
        from kerasdoctor.beam.layout import open_file as fs_open
        from kerasdoctor.beam.tfrecord import iter_records

        with fs_open(shards.shards[0].path) as f:
            first = next(iter_records(f, "first"))
        cols = tuple(feature_columns(first, keys, m.label_key, m, {}, "first"))
    spec = ReadSpec(
        shards.format, keys, m.label_key, 7, cols, tuple(m.class_names) if m.class_names else None
    )
    parts = [b for s in shards.shards for b in read_batches(s, spec)]
    arrays = {k: np.concatenate([p[0][k] for p in parts]) for k in keys}
    return arrays, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


@pytest.mark.parametrize("fmt", ["tfrecord", "npz"])
def test_converter_round_trip_is_lossless(tmp_path: Path, fmt: str) -> None:
    """Every dtype comes back bit for bit, in order, with global row ids 0..N-1."""
    beam_needed()
    from kerasdoctor.beam.convert import convert_npz

    rng = np.random.default_rng(3)
    n = 53
    src = {
        "pixels": rng.integers(0, 256, size=(n, 4, 4, 3)).astype(np.uint8),
        "f64": rng.normal(size=(n, 5)) * 1e6 + np.pi,  # float_list is float32: stored raw
        "f16": rng.normal(size=(n, 2)).astype(np.float16),
        "counts": rng.integers(-5, 5, size=(n,)).astype(np.int32),
        "y": rng.choice(np.array(["cat", "dog", "emu"]), size=n),
    }
    np.savez(tmp_path / "src.npz", **src)  # type: ignore[arg-type]
    m = convert_npz(tmp_path / "src.npz", tmp_path / "out", shards=5, fmt=fmt)
    assert [r for _, r in m.shards] == [11, 10, 11, 10, 11]
    assert m.label_encoding == "string" and m.class_names == ["cat", "dog", "emu"]
    arrays, y, rows = _all_rows(str(tmp_path / "out" / f"shard-*.{fmt}"))
    assert rows.tolist() == list(range(n))
    for key in ("pixels", "f64", "f16", "counts"):
        assert arrays[key].dtype == src[key].dtype, key
        assert np.array_equal(arrays[key], src[key]), key
    assert [m.class_names[i] for i in y] == src["y"].tolist()


def test_converter_refuses_to_mix_old_shards(tmp_path: Path) -> None:
    from kerasdoctor.beam.convert import convert_npz

    convert_npz(fixture_path("binary.npz"), tmp_path, shards=3)
    with pytest.raises(InputError, match="already holds shards"):
        convert_npz(fixture_path("binary.npz"), tmp_path, shards=2)
    convert_npz(fixture_path("binary.npz"), tmp_path, shards=2, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kerasdoctor-shards.json",
        "shard-00000-of-00002.tfrecord",
        "shard-00001-of-00002.tfrecord",
    ]
    with pytest.raises(InputError, match="more than the 600 rows"):
        convert_npz(fixture_path("binary.npz"), tmp_path / "x", shards=601)


def test_offsets_counted_without_manifest(tmp_path: Path) -> None:
    beam_needed()
    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.layout import MANIFEST_NAME, find_shards

    for fmt in ("tfrecord", "npz"):
        m = convert_npz(fixture_path("collapsed.npz"), tmp_path / fmt, shards=4, fmt=fmt)
        with_manifest = find_shards(str(tmp_path / fmt / f"shard-*.{fmt}"))
        (tmp_path / fmt / MANIFEST_NAME).unlink()
        counted = find_shards(str(tmp_path / fmt / f"shard-*.{fmt}"))
        assert counted.manifest is None
        assert [(s.offset, s.rows) for s in counted.shards] == [
            (s.offset, s.rows) for s in with_manifest.shards
        ]
        assert counted.n_samples == m.n_samples == 980


def test_corrupt_and_truncated_tfrecords_are_input_errors(tmp_path: Path) -> None:
    beam_needed()
    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.layout import open_file
    from kerasdoctor.beam.tfrecord import iter_records

    convert_npz(fixture_path("binary.npz"), tmp_path, shards=1)
    path = tmp_path / "shard-00000-of-00001.tfrecord"
    blob = bytearray(path.read_bytes())
    blob[40] ^= 0xFF  # inside the first record's payload
    path.write_bytes(bytes(blob))
    with open_file(str(path)) as f, pytest.raises(InputError, match="bad data checksum"):
        list(iter_records(f, str(path)))
    path.write_bytes(bytes(blob[:-3]))
    with open_file(str(path)) as f, pytest.raises(InputError):
        list(iter_records(f, str(path)))


# ------------------------------------------------------------------ the pipeline


def _close(a: Any, b: Any, path: str = "") -> None:
    """Equal structures; floats within RTOL relative (the issue's bar)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not (isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        assert b == pytest.approx(a, rel=RTOL, abs=1e-12), path
    else:
        assert a == b, path


def _moments_close(m: Any, s: Any, rtol: float = RTOL) -> None:
    assert np.array_equal(m.count, s.count)
    assert np.array_equal(m.n_nan, s.n_nan) and np.array_equal(m.n_inf, s.n_inf)
    if rtol == RTOL:  # the data itself: exact extremes
        assert np.array_equal(m.min, s.min) and np.array_equal(m.max, s.max)
    else:
        np.testing.assert_allclose(m.min, s.min, rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(m.max, s.max, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(m.mean, s.mean, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(m.m2, s.m2, rtol=rtol, atol=1e-9)


def _single_run(fixture: str) -> tuple[Any, Any]:
    """The single-process Report and Evidence (kerasdoctor diagnose on the .npz)."""
    from conftest import diagnose_fixture

    from kerasdoctor.load import bind_inputs, load_model, read_npz
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.probe import Predictor, array_batches, default_batch_size, run_probe

    report = diagnose_fixture(f"{fixture}.keras", f"{fixture}.npz")
    lm = load_model(fixture_path(f"{fixture}.keras"))
    raw = read_npz(fixture_path(f"{fixture}.npz"))
    arrays = bind_inputs(raw, lm)
    ev = run_probe(
        Predictor(lm, read_facts(lm)),
        array_batches(arrays, raw.labels.y, default_batch_size(arrays)),
        seed=0,
    )
    return report, ev


def _sharded_run(fixture: str, pattern: str, args: list[str]) -> tuple[Any, Any, Any]:
    """The same model on the shards through the pipeline: (Report, Evidence, ShardedData)."""
    from kerasdoctor.beam.pipeline import ModelSource, probe_shards
    from kerasdoctor.core import Options, build_report
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.probe import Predictor

    opts = Options()
    source = ModelSource(fixture_path(f"{fixture}.keras"))
    lm = source.load()
    facts = read_facts(lm)
    predictor = Predictor(lm, facts)
    ev, data = probe_shards(source, lm, facts, predictor, pattern, opts, pipeline_args=args)
    report = build_report(
        lm,
        facts,
        predictor,
        ev,
        data_path=pattern,
        class_names=data.class_names,
        label_encoding=data.label_encoding,
        opts=opts,
    )
    return report, ev, data


def _assert_same_diagnosis(single: Any, sharded: Any, ev_s: Any, ev_m: Any) -> None:
    a, b = single.to_dict(), sharded.to_dict()
    assert [(f["id"], f["severity"]) for f in b["findings"]] == [
        (f["id"], f["severity"]) for f in a["findings"]
    ]
    _close([f["evidence"] for f in a["findings"]], [f["evidence"] for f in b["findings"]])
    _close(a["metrics"], b["metrics"])
    for key in (
        "n_samples",
        "n_classes",
        "class_names",
        "label_counts",
        "label_encoding",
        "inputs",
    ):
        _close(a["data"][key], b["data"][key], key)
    assert a["verdict"] == b["verdict"]
    # the Evidence behind it: exact counts, the same sample rows, floats within 1e-9
    assert ev_m.n_samples == ev_s.n_samples
    assert np.array_equal(ev_m.confusion, ev_s.confusion)
    assert np.array_equal(ev_m.y_true, ev_s.y_true)
    assert np.array_equal(ev_m.y_pred, ev_s.y_pred)
    assert np.array_equal(ev_m.sample_index, ev_s.sample_index)
    for x_m, x_s in zip(ev_m.sample_inputs, ev_s.sample_inputs, strict=True):
        assert np.array_equal(x_m, x_s)
    for st_m, st_s in zip(ev_m.inputs, ev_s.inputs, strict=True):
        assert (st_m.name, st_m.shape, st_m.dtype, st_m.integral) == (
            st_s.name,
            st_s.shape,
            st_s.dtype,
            st_s.integral,
        )
        _moments_close(st_m.moments, st_s.moments)
    _moments_close(ev_m.output.raw, ev_s.output.raw, F32_RTOL)
    _moments_close(ev_m.output.probs, ev_s.output.probs, F32_RTOL)
    for a_m, a_s in zip(ev_m.activations, ev_s.activations, strict=True):
        assert a_m.n_samples == a_s.n_samples
        assert np.array_equal(a_m.active_count, a_s.active_count)
        assert np.array_equal(a_m.max, a_s.max)
    for b_m, b_s in zip(ev_m.bn_inputs, ev_s.bn_inputs, strict=True):
        _moments_close(b_m.moments, b_s.moments, F32_RTOL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fixture", "fmt", "taps"),
    [
        # 800/120/60 rows: class 0 is bigger than its share of the bounded sample, so the
        # rows kept depend on the global row ids being right; ReLU taps
        ("collapsed", "tfrecord", "relu"),
        # BatchNormalization input moments and ReLU taps
        ("model_batchnorm", "npz", "bn"),
    ],
)
def test_two_worker_processes_give_the_single_process_diagnosis(
    tmp_path: Path, fixture: str, fmt: str, taps: str
) -> None:
    beam_needed()
    from kerasdoctor.beam.convert import convert_npz

    convert_npz(fixture_path(f"{fixture}.npz"), tmp_path, shards=4, fmt=fmt)
    single, ev_s = _single_run(fixture)
    sharded, ev_m, data = _sharded_run(fixture, str(tmp_path / f"shard-*.{fmt}"), MULTI)
    # both worker processes predicted rows: the merge across processes is what is tested
    assert len(data.worker_rows) == 2, data.worker_rows
    assert sum(data.worker_rows.values()) == ev_s.n_samples
    assert all(v > 0 for v in data.worker_rows.values())
    if taps == "bn":
        assert ev_m.bn_inputs and ev_m.activations
    else:
        assert ev_m.activations
        counts = np.bincount(ev_m.y_true[ev_m.sample_index])
        assert counts[0] < 800  # the sample is a strict subset of the big class
    _assert_same_diagnosis(single, sharded, ev_s, ev_m)


def test_tfrecords_without_manifest_and_sample_match_the_single_run(tmp_path: Path) -> None:
    """Other tools' TFRecords (no manifest: shapes from the model, offsets counted) and
    --sample on shards (the same rows as --sample on the .npz), in the in-process runner."""
    beam_needed()
    from conftest import diagnose_fixture

    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.layout import MANIFEST_NAME
    from kerasdoctor.beam.pipeline import diagnose_shards
    from kerasdoctor.core import Options

    convert_npz(fixture_path("multi_input.npz"), tmp_path, shards=3)
    (tmp_path / MANIFEST_NAME).unlink()
    single = diagnose_fixture("multi_input.keras", "multi_input.npz", sample=250, seed=4)
    sharded = diagnose_shards(
        fixture_path("multi_input.keras"), str(tmp_path / "shard-*"), Options(sample=250, seed=4)
    )
    a, b = single.to_dict(), sharded.to_dict()
    assert b["data"]["sampled_from"] == 600 and b["data"]["n_samples"] == 250
    assert [f["id"] for f in a["findings"]] == [f["id"] for f in b["findings"]]
    for m in (a["metrics"], b["metrics"]):  # no manifest: no class names, the rest is equal
        for row in m["per_class"]:
            row.pop("name")
    _close(a["metrics"], b["metrics"])
    _close(a["data"]["inputs"], b["data"]["inputs"])
    # without a manifest the class names are unknown; the label encoding is still derived
    assert b["data"]["label_encoding"] == a["data"]["label_encoding"] == "index"


def test_a_worker_input_error_reaches_the_user(tmp_path: Path) -> None:
    """A manifest whose row counts lie would shift every row id: the workers refuse it."""
    beam_needed()
    from kerasdoctor.beam.convert import convert_npz
    from kerasdoctor.beam.layout import MANIFEST_NAME
    from kerasdoctor.beam.pipeline import diagnose_shards

    convert_npz(fixture_path("collapsed.npz"), tmp_path, shards=2)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["shards"][0]["rows"] += 1
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="holds 490 rows but the shard index says 491"):
        diagnose_shards(fixture_path("collapsed.keras"), str(tmp_path / "shard-*.tfrecord"))


# ------------------------------------------------------------------ the CLI


def test_cli_shard_then_diagnose_gives_the_npz_report(tmp_path: Path) -> None:
    beam_needed()
    out = run_cli("shard", fixture_path("collapsed.npz"), tmp_path, "--shards", "3")
    assert out.exit_code == 0, out.stderr
    assert "wrote 3 tfrecord shards (980 rows" in out.stdout
    pattern = str(tmp_path / "shard-*.tfrecord")
    sharded = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        pattern,
        "--format",
        "json",
        "--runner",
        "DirectRunner",
        "--",
        "--direct_num_workers=1",
    )
    single = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        fixture_path("collapsed.npz"),
        "--format",
        "json",
    )
    assert sharded.exit_code == single.exit_code == 1  # the collapse is an error either way
    a, b = single.json(), sharded.json()
    assert b["data"].pop("path") == pattern and b["data"].pop("shards") == 3
    a["data"].pop("path")
    # fix commands name the data they were given; everything else is the same report
    for f in a["findings"] + b["findings"]:
        f.pop("fixes")
    _close(a["data"], b["data"])
    _close(a["metrics"], b["metrics"])
    _close(a["findings"], b["findings"])
    html = run_cli(
        "diagnose",
        fixture_path("collapsed.keras"),
        pattern,
        "--format",
        "html",
        "--pipeline-option",
        "direct_num_workers=1",
    )
    assert html.exit_code == 1 and "prediction-collapse" in html.stdout


def test_cli_sharded_errors_are_one_line(tmp_path: Path) -> None:
    beam_needed()
    model = fixture_path("collapsed.keras")
    none = run_cli("diagnose", model, str(tmp_path / "shard-*.tfrecord"))
    assert none.exit_code == 2 and "no shard matches" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
    stray = run_cli("diagnose", model, fixture_path("collapsed.npz"), "--", "stray")
    assert stray.exit_code == 2 and "unexpected argument 'stray'" in stray.stderr
    shutil.copy(fixture_path("collapsed.npz"), tmp_path / "a.npz")
    assert run_cli("shard", tmp_path / "a.npz", tmp_path / "o", "-n", "2").exit_code == 0
    again = run_cli("shard", tmp_path / "a.npz", tmp_path / "o", "-n", "2")
    assert again.exit_code == 2 and "already holds shards" in again.stderr
    dataflow = run_cli(
        "diagnose", model, str(tmp_path / "o" / "shard-*.tfrecord"), "--runner", "DataflowRunner"
    )
    assert dataflow.exit_code == 2 and "temp_location" in dataflow.stderr


def test_help_checks_and_explain_do_not_import_beam() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kerasdoctor.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['diagnose', '--help'], ['shard', '--help'], ['checks'],"
        " ['explain', 'missing-classes']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "print([m for m in ('apache_beam', 'tensorflow', 'pyarrow') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.slow
def test_a_failing_worker_is_one_line_not_a_beam_traceback(tmp_path: Path) -> None:
    """Local workers inherit stderr, where Beam prints its own tracebacks: the CLI keeps them
    in a log file and says one line (with the log's path); a good run prints nothing."""
    pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")
    kd = [sys.executable, "-m", "kerasdoctor.cli"]
    shards = tmp_path / "shards"
    subprocess.run(
        [*kd, "shard", fixture_path("collapsed.npz"), str(shards), "--shards", "2"],
        check=True,
        capture_output=True,
    )
    workers = [
        "--pipeline-option",
        "direct_num_workers=2",
        "--pipeline-option",
        "direct_running_mode=multi_processing",
    ]
    cmd = [
        *kd,
        "diagnose",
        fixture_path("collapsed.keras"),
        str(shards / "*.tfrecord"),
        *workers,
        "-f",
        "json",
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 1 and ok.stderr == "", ok.stderr
    last = sorted(shards.glob("*.tfrecord"))[-1]
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    lines = bad.stderr.splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert lines[0].startswith("kerasdoctor: error: ") and "Traceback" not in bad.stderr
    log = lines[0].rsplit("Beam's worker log: ", 1)[1].rstrip(")")
    assert "Traceback" in Path(log).read_text()  # the details are kept for whoever needs them
    Path(log).unlink()
