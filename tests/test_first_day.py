"""What a user meets on the first day: the docs the README links exist and match the code,
swapped arguments are named, and TensorFlow's C++ start-up lines stay off stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fixture_path, run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.unit
def test_every_file_the_readme_links_exists() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)\)", text)
    local = [p for p in links if "://" not in p]
    assert local, "the README links no local file"
    assert [p for p in local if not (ROOT / p).exists()] == []
    assert "`contract.md`" not in text  # named without a path it points nowhere


@pytest.mark.unit
def test_docs_catalogue_is_generated_from_the_registry() -> None:
    from kerasdoctor.catalogue import markdown

    assert (ROOT / "docs" / "checks.md").read_text() == markdown(), (
        "regenerate: python -m kerasdoctor.catalogue > docs/checks.md"
    )


@pytest.mark.unit
def test_swapped_model_and_data_are_named() -> None:
    r = run_cli("diagnose", fixture_path("healthy.npz"), fixture_path("healthy.keras"))
    assert r.exit_code == 2
    assert "look swapped" in r.stderr and "MODEL DATA" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_tensorflow_start_up_lines_never_reach_stderr() -> None:
    """With TF_CPP_MIN_LOG_LEVEL=2 set by the user (which lets ERROR lines such as 'failed
    call to cuInit' through), a run on a machine without a GPU prints nothing on stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CI": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasdoctor",
            "diagnose",
            fixture_path("healthy.keras"),
            fixture_path("healthy.npz"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
