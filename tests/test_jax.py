"""Keras 3 on JAX: the core tests pass with KERAS_BACKEND=jax (run in a subprocess, since a
process picks its backend once), and a TensorFlow SavedModel is refused with one clear line.

The golden reports (tests/golden/*.json, written on TensorFlow) are among the core tests, so
the JAX run is compared with the TensorFlow one finding by finding and figure by figure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None,
        reason="jax is not installed (pip install 'kerasdoctor[jax]')",
    ),
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
        reason="already running on another backend",
    ),
]

# The checks, the probe, the ranking, the sources and the golden reports. SavedModel cases
# are left out: a SavedModel runs only on TensorFlow (see the refusal test below). The
# training-callback tests are not here: they train models, and a backend's own random
# initialisation changes the training run they observe.
CORE = [
    "tests/test_backbone_smoke.py",
    "tests/test_probe.py",
    # the per-check tests of the data- and model-side causes (split from one file per side)
    *(
        f"tests/checks/test_{name}.py"
        for name in (
            "class_imbalance",
            "input_scale",
            "input_scale_mismatch",
            "nonfinite_inputs",
            "sorted_labels",
            "label_permutation",
            "preprocessing_mismatch",
            "single_unit_softmax",
            "output_activation",
            "loss_mismatch",
            "output_units_mismatch",
            "nonfinite_weights",
            "dead_units",
            "batchnorm_statistics",
            "untrained_model",
            "decision_threshold",
        )
    ),
    "tests/test_diagnosis.py",
    "tests/test_golden.py",
    "tests/test_sources.py",
    "tests/test_cli_errors.py",
]


def _jax_env() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "CI": "1"}


@pytest.mark.slow
def test_core_tests_pass_on_the_jax_backend() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not savedmodel",
            *CORE,
        ],
        cwd=ROOT,
        env=_jax_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    tail = res.stdout[-4000:]
    assert res.returncode == 0, tail
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= 150, tail
    assert " failed" not in tail and " error" not in tail, tail


def test_savedmodel_is_refused_on_jax_with_one_line() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasdoctor.cli",
            "diagnose",
            "fixtures/healthy_savedmodel",
            "fixtures/healthy.npz",
        ],
        cwd=ROOT,
        env=_jax_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr  # and no TensorFlow start-up chatter around it
    assert "SavedModel" in lines[0] and "KERAS_BACKEND=jax" in lines[0]
    assert "KERAS_BACKEND=tensorflow" in lines[0]
