"""Every unusable input: exit 2 and one clear line on stderr, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_path, run_cli


def _assert_one_line_error(r, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kerasdoctor: error: ")
    assert "Traceback" not in r.stderr + r.stdout
    for frag in fragments:
        assert frag in lines[0], lines[0]


def _npz(tmp_path: Path, name: str = "d.npz", **arrays) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


HEALTHY = "healthy.keras"


def _x(n: int = 10, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, width)).astype("float32")


def test_missing_model_path(tmp_path: Path) -> None:
    r = run_cli("diagnose", str(tmp_path / "nope.keras"), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", "no such file")


def test_missing_data_path(tmp_path: Path) -> None:
    r = run_cli("diagnose", fixture_path(HEALTHY), str(tmp_path / "nope.npz"))
    _assert_one_line_error(r, "DATA", "no such file")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_file_that_is_not_a_model(tmp_path: Path, suffix: str) -> None:
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(b"this is not a model at all" * 10)
    r = run_cli("diagnose", str(bad), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", str(bad))


def test_zip_that_is_not_a_keras_archive(tmp_path: Path) -> None:
    bad = tmp_path / "model.keras"
    import zipfile

    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "not a model")
    r = run_cli("diagnose", str(bad), fixture_path("healthy.npz"))
    _assert_one_line_error(r, "MODEL", "cannot load")


def test_unknown_model_suffix(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"x")
    _assert_one_line_error(run_cli("diagnose", str(bad), fixture_path("healthy.npz")),
                           "unsupported model file")


def test_corrupt_npz(tmp_path: Path) -> None:
    good = Path(fixture_path("healthy.npz")).read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(good[: len(good) // 2])
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), str(bad)),
                           "not a readable .npz")


def test_npz_without_labels(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x())
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), "no 'y' array")


def test_wrong_input_width(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(width=5), y=np.zeros(10, int))
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path),
                           "expects (None, 8)", "axis 1: 5 != 8")


def test_length_mismatch(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(n=12), y=np.zeros(10, int))
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path),
                           "12 rows", "labels have 10")


@pytest.mark.parametrize(
    ("y", "fragment"),
    [(np.array([0.0, np.nan] * 5), "NaN/Inf labels"), (np.array([0, -1] * 5), "negative labels")],
)
def test_bad_labels(tmp_path: Path, y: np.ndarray, fragment: str) -> None:
    path = _npz(tmp_path, x=_x(), y=y)
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), fragment)


def test_no_samples(tmp_path: Path) -> None:
    path = _npz(tmp_path, x=_x(n=0), y=np.zeros(0, int))
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), path), "no samples")


def test_multi_input_model_with_a_missing_input(tmp_path: Path) -> None:
    with np.load(fixture_path("multi_input.npz")) as d:
        path = _npz(tmp_path, rgb=d["rgb"], y=d["y"])
    r = run_cli("diagnose", fixture_path("multi_input.keras"), path)
    _assert_one_line_error(r, "model input 'depth'")


def test_directory_where_a_data_file_is_expected(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("diagnose", fixture_path(HEALTHY), str(tmp_path)),
                           "is a directory")


def test_directory_that_is_not_a_savedmodel(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("diagnose", str(tmp_path), fixture_path("healthy.npz")),
                           "not a TensorFlow SavedModel")


def test_bad_option_values() -> None:
    m, d = fixture_path(HEALTHY), fixture_path("healthy.npz")
    _assert_one_line_error(run_cli("diagnose", m, d, "--batch-size", "0"), "--batch-size")
    _assert_one_line_error(run_cli("diagnose", m, d, "--sample", "-3"), "--sample")
    _assert_one_line_error(run_cli("explain", "no-such-check"), "unknown finding id")


def test_help_checks_and_explain_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kerasdoctor.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['diagnose', '--help'], ['fix', '--help'], ['checks'],"
        " ['explain', 'missing-classes']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'scipy', 'matplotlib')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
