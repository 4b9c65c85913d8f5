"""Library use: diagnose() equals the CLI, DoctorCallback catches a collapse, assert_healthy."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, fixture_path, run_cli

import kerasdoctor
from kerasdoctor.testing import assert_healthy


def _pairs() -> list[tuple[str, str]]:
    """Every fixture model with the data it is diagnosed on."""
    pairs = []
    for model in sorted(FIXTURES.glob("*.keras")) + sorted(FIXTURES.glob("*.h5")):
        data = model.with_suffix(".npz")
        if data.exists():
            pairs.append((model.name, data.name))
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


def _run(callback: object | None, x: np.ndarray, y: np.ndarray, epochs: int,
         lr: float) -> object:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((x.shape[1],)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(int(y.max()) + 1, activation="softmax"),
    ])
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    cbs = [callback] if callback is not None else []
    return model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=cbs,
                     shuffle=False)


def _blobs(counts: list[int], sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(counts), 6)) * sep / np.sqrt(6)
    x = np.concatenate([c + rng.normal(size=(n, 6)) for c, n in zip(centers, counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    order = rng.permutation(len(y))
    return x[order].astype("float32"), y[order]


def test_callback_stops_a_collapsing_run_within_patience() -> None:
    x, y = _blobs([570, 30], sep=0.5, seed=1)  # 95/5, overlapping: the minority vanishes
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((x, y), on_collapse="stop", patience=2, log=messages.append)
    history = _run(cb, x, y, epochs=10, lr=0.05)
    assert len(history.epoch) == 2  # stopped after 2 collapsed epochs, not 10
    assert cb.stopped_epoch == 1
    assert any("missing-classes" in m or "prediction-collapse" in m for m in messages)
    assert any("class-imbalance" in m for m in messages) or messages  # cause when it can tell
    assert history.history["kd_collapsed"] == [1.0, 1.0]
    assert history.history["kd_missing_classes"][-1] >= 1.0


def test_callback_leaves_a_healthy_run_untouched() -> None:
    x, y = _blobs([200, 200, 200], sep=6.0, seed=2)
    messages: list[str] = []
    cb = kerasdoctor.DoctorCallback((x, y), on_collapse="stop", patience=1, log=messages.append)
    with_cb = _run(cb, x, y, epochs=4, lr=0.1).history
    without = _run(None, x, y, epochs=4, lr=0.1).history
    assert messages == []
    assert set(with_cb) - set(without) == {
        "kd_balanced_accuracy", "kd_missing_classes", "kd_dominant_share", "kd_collapsed"}
    np.testing.assert_allclose(with_cb["loss"], without["loss"], rtol=1e-6)
    assert with_cb["kd_collapsed"] == [0.0] * 4
    assert len(cb.seconds) == 4


def test_callback_every_n_epochs() -> None:
    x, y = _blobs([100, 100], sep=6.0, seed=3)
    cb = kerasdoctor.DoctorCallback((x, y), every=2, log=lambda m: None)
    _run(cb, x, y, epochs=4, lr=0.1)
    assert sorted(cb.reports) == [1, 3]


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent)
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
