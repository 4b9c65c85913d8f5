"""Library use: diagnose() equals the CLI, assert_healthy (DoctorCallback: test_callback.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, fixture_path, run_cli, single_label_models

import kerasdoctor
from kerasdoctor.testing import assert_healthy


def _pairs() -> list[tuple[str, str]]:
    """Every fixture model with the data it is diagnosed on."""
    pairs = []
    for model in single_label_models("*.keras") + single_label_models("*.h5"):
        pairs.append((model.name, model.with_suffix(".npz").name))
    pairs.append(("legacy_input_dim.h5", "legacy_keras2.npz"))
    return pairs


def _arrays(data: str) -> tuple[object, np.ndarray, list[str] | None]:
    with np.load(fixture_path(data)) as d:
        arrays = {k: d[k] for k in d.files}
    y = arrays.pop("y")
    names = arrays.pop("class_names", None)
    x = arrays["x"] if set(arrays) == {"x"} else arrays
    return x, y, (names.tolist() if names is not None else None)


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_api_returns_the_same_findings_as_the_cli(model: str, data: str) -> None:
    cli = run_cli("diagnose", fixture_path(model), fixture_path(data), "--format", "json")
    assert cli.exit_code in (0, 1), cli.stderr
    x, y, names = _arrays(data)
    report = kerasdoctor.diagnose(fixture_path(model), x, y, class_names=names)
    api = report.to_dict()
    strip = lambda fs: [(f["id"], f["severity"], f["evidence"]) for f in fs]  # noqa: E731
    assert strip(api["findings"]) == strip(cli.json()["findings"])
    assert api["metrics"] == cli.json()["metrics"]
    assert api["verdict"] == cli.json()["verdict"]


def test_api_accepts_an_in_memory_model_and_renders() -> None:
    import keras

    model = keras.saving.load_model(fixture_path("collapsed.keras"))
    x, y, names = _arrays("collapsed.npz")
    report = kerasdoctor.diagnose(model, x, y, class_names=names)
    assert report.verdict == "sick"
    assert {f.id for f in report.symptoms} >= {"prediction-collapse", "missing-classes"}
    assert report.finding("missing-classes").evidence["missing"][0]["name"] == "orange"
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=100).print(report)
    assert "missing-classes" in buf.getvalue() and "orange" in buf.getvalue()
    assert '"verdict": "sick"' in report.to_json()


def test_assert_healthy_passes_and_fails_with_the_table() -> None:
    x, y, names = _arrays("healthy.npz")
    assert assert_healthy(fixture_path("healthy.keras"), x, y).verdict == "healthy"
    x, y, names = _arrays("collapsed.npz")
    with pytest.raises(AssertionError) as info:
        assert_healthy(fixture_path("collapsed.keras"), x, y, class_names=names)
    text = str(info.value)
    assert "missing-classes (error)" in text.splitlines()[0]
    assert "Per class" in text and "orange" in text


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, kerasdoctor; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.strip() == "False"


def test_api_docstring_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import doctest

    monkeypatch.chdir(FIXTURES.parent)
    result = doctest.testmod(kerasdoctor, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def test_report_renders_in_jupyter_as_an_embeddable_fragment() -> None:
    x, y, names = _arrays("collapsed.npz")
    report = kerasdoctor.diagnose(fixture_path("collapsed.keras"), x, y, class_names=names)
    html = report._repr_html_()
    assert "<html" not in html.lower() and "<!doctype" not in html.lower()
    assert "missing-classes" in html and "orange" in html
    assert "data:image/png;base64," in html  # the plots travel inside the fragment


def test_fail_on_is_kept_on_the_report() -> None:
    """diagnose(fail_on=...) decides Report.passed as --fail-on decides the exit code; the
    findings do not change with it."""
    path = fixture_path("collapsed.npz")
    strict = kerasdoctor.diagnose(fixture_path("collapsed.keras"), path)
    lax = kerasdoctor.diagnose(fixture_path("collapsed.keras"), path, fail_on="never")
    assert strict.fail_on == "error" and not strict.passed
    assert lax.fail_on == "never" and lax.passed
    assert [f.id for f in lax.findings] == [f.id for f in strict.findings]
