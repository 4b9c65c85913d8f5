"""Shared test helpers: fixture paths, an in-process CLI runner, a cached diagnosis."""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CI", "1")  # no progress bars in test output

# Unit tests (`@pytest.mark.unit`, or `pytestmark = pytest.mark.unit` for a file) run without
# TensorFlow, Keras, JAX or scikit-learn: built evidence, parsers, pure maths. `pytest -m unit`
# runs them alone, in seconds, with those imports blocked so that one which slips in fails
# ("a unit test imported tensorflow"); every other test is marked `integration` (real saved
# models through the real pipeline) and `pytest -m integration` runs those.
HEAVY = frozenset({"tensorflow", "keras", "tf_keras", "jax", "jaxlib", "sklearn"})


class _BlockHeavy(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in HEAVY:
            raise ImportError(f"a unit test imported {name} (pytest -m unit blocks it)")


if os.environ.get("KERASDOCTOR_UNIT_ONLY"):
    sys.meta_path.insert(0, _BlockHeavy())

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Dense (segmentation, tagging) and multi-label fixtures (fixtures/recipes_dense.py) for
# issue 16: their outputs are not single-label class scores, which the diagnosis of this
# version refuses with exit 2; the tests that run every single-label fixture leave them out.
DENSE_OR_MULTILABEL = ("dense_", "tag_", "ml_", "seg_")


def single_label_models(pattern: str = "*.keras") -> list[Path]:
    """Every fixture model of a single-label classifier that has its .npz beside it."""
    return [
        m
        for m in sorted(FIXTURES.glob(pattern))
        if m.with_suffix(".npz").exists() and not m.name.startswith(DENSE_OR_MULTILABEL)
    ]


# Every healthy fixture (model, data): no check may raise a warning or an error on them.
HEALTHY_FIXTURES = [
    ("healthy.keras", "healthy.npz"),
    ("healthy_imbalanced.keras", "healthy_imbalanced.npz"),
    ("multi_input.keras", "multi_input.npz"),
    ("binary.keras", "binary.npz"),
    ("legacy_keras2.h5", "legacy_keras2.npz"),
    ("legacy_input_dim.h5", "legacy_keras2.npz"),
    ("healthy_savedmodel", "healthy.npz"),
    ("data_tokens.keras", "data_tokens.npz"),  # token ids in the hundreds: no scale to judge
    # trained as users train (fixtures/recipes_scenarios.py): a wide layer half silent on
    # 108 rows of a working model, and a mediocre but honest model (every class predicted)
    ("scn_dead_ok.keras", "scn_dead_ok.npz"),
    ("scn_mediocre.keras", "scn_mediocre.npz"),
    # a GRU fed its sequences padded as trained (fixtures/recipes_padding.py)
    ("seq_pad_ok.keras", "seq_pad_ok.npz"),
]


def fixture_path(name: str) -> str:
    path = FIXTURES / name
    assert path.exists(), f"missing fixture {name}: run python fixtures/make_fixtures.py"
    return str(path)


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str) -> CliResult:
    """Run the kerasdoctor CLI in this process (TensorFlow is imported once per session)."""
    from typer.testing import CliRunner

    from kerasdoctor.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


_CACHE: dict[tuple[str, ...], Any] = {}


def diagnose_fixture(model: str, data: str, **options: Any) -> Any:
    """The Report of a fixture diagnosis, computed once per session per arguments."""
    from kerasdoctor.core import Options, diagnose_paths

    key = (model, data, repr(sorted(options.items())))
    if key not in _CACHE:
        _CACHE[key] = diagnose_paths(fixture_path(model), fixture_path(data), Options(**options))
    return _CACHE[key]


@pytest.fixture
def cli() -> Any:
    return run_cli


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/*.json from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how many fuzz cases ran (issue: the suite states its case count)."""
    try:
        from test_fuzz import CASES
    except ImportError:
        return
    if CASES["count"]:
        by_exit = {k: v for k, v in CASES.items() if k != "count"}
        terminalreporter.write_line(
            f"kerasdoctor fuzz cases run: {CASES['count']} (by exit code: {by_exit})"
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under KERASDOCTOR_UNIT_ONLY, a test file with no unit test is not even imported (its
    module-level imports may be the blocked ones)."""
    if (
        os.environ.get("KERASDOCTOR_UNIT_ONLY")
        and collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
    ):
        return "pytest.mark.unit" not in collection_path.read_text(encoding="utf-8")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test not marked unit is an integration test; under KERASDOCTOR_UNIT_ONLY (the
    blocker above) only the unit tests run."""
    keep = []
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.integration)
            if os.environ.get("KERASDOCTOR_UNIT_ONLY"):
                continue
        keep.append(item)
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
