"""Start-up: the commands that only print what kerasdoctor knows import nothing heavy.

Each command runs in a fresh interpreter through the console script's entry point
(`kerasdoctor.cli.main`, via `python -m kerasdoctor`), which then reports what it found in
sys.modules. bench/startup.py measures the time this saves.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The list, and the other heavy imports a light command has no use for either.
HEAVY = (
    "numpy",
    "tensorflow",
    "keras",
    "sklearn",
    "pydantic",
    "scipy",
    "matplotlib",
    "apache_beam",
    "h5py",
    "PIL",
    "pyarrow",
)

PROBE = """
import json, runpy, sys
sys.argv = ["kerasdoctor", *{args!r}]
code = 0
try:
    runpy.run_module("kerasdoctor", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code or 0
sys.stdout.flush()
heavy = [m for m in {heavy!r} if m in sys.modules]
sys.stderr.write("\\nKD-STARTUP " + json.dumps({{"code": code, "heavy": heavy}}) + "\\n")
"""


def _run(*args: str) -> tuple[int, list[str], str, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    marker = [ln for ln in out.stderr.splitlines() if ln.startswith("KD-STARTUP ")]
    assert marker, out.stderr
    found = json.loads(marker[-1].removeprefix("KD-STARTUP "))
    return found["code"], found["heavy"], out.stdout, out.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--help",), "Diagnose MODEL on DATA"),
        (("checks",), "missing-classes"),
        (("explain", "missing-classes"), "missing-classes"),
        (("explain", "single-unit-softmax"), "single-unit-softmax"),
        (("--version",), "kerasdoctor 0."),
    ],
    ids=["help", "checks", "explain", "explain-module-constant", "version"],
)
def test_light_commands_import_nothing_heavy(args: tuple[str, ...], expected: str) -> None:
    code, heavy, stdout, stderr = _run(*args)
    assert code == 0, stderr
    assert expected in stdout
    assert heavy == [], f"kerasdoctor {' '.join(args)} imported {heavy}"


def test_unknown_explain_id_is_one_line_and_light() -> None:
    code, heavy, _, stderr = _run("explain", "no-such-check")
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("KD-")]
    assert len(lines) == 1 and "unknown finding id 'no-such-check'" in lines[0], stderr
    assert heavy == []


@pytest.mark.parametrize("args", [("checks",), ("explain", "class-imbalance"), ("--version",)])
def test_the_entry_point_answers_as_the_app_does(args: tuple[str, ...]) -> None:
    """main() answers these without Typer's option parsing; the output must not drift."""
    from typer.testing import CliRunner

    from kerasdoctor.cli import app

    code, _, stdout, _ = _run(*args)
    via_app = CliRunner().invoke(app, list(args))
    assert (code, stdout) == (via_app.exit_code, via_app.stdout)


def test_lazy_numpy_imports_on_first_use() -> None:
    code = (
        "import sys\n"
        "from kerasdoctor._lazy import numpy as np\n"
        "assert 'numpy' not in sys.modules\n"
        "assert np.float32(1.5) == 1.5 and 'numpy' in sys.modules\n"
        "import numpy\n"
        "assert np.ndarray is numpy.ndarray and np.linalg is numpy.linalg\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
