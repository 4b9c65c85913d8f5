"""Helpers shared by the per-check tests: an Evidence builder (no TensorFlow), the fixture
reports of the model-side checks, and the assertions every check's tests repeat.

Imported as `from _helpers import ...` (pytest puts tests/checks on sys.path); not a conftest.py,
since `from conftest import ...` in these files must keep meaning tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from conftest import diagnose_fixture

from kerasdoctor.checks import run_symptoms
from kerasdoctor.checks.base import CheckSpec, Context
from kerasdoctor.evidence import ActivationStats, Evidence, InputStats, Moments, OutputStats
from kerasdoctor.model_facts import ModelFacts, Normalizer

# ------------------------------------------------------------------ building Evidence by hand


def stats(name: str, x: np.ndarray, integral: bool | None = None) -> InputStats:
    """InputStats of an array, accumulated exactly as the probe does (per last-axis feature)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, 1) if x.ndim == 1 else x.reshape(-1, x.shape[-1])
    m = Moments.empty(flat.shape[1])
    m.update(flat)
    if integral is None:
        fin = flat[np.isfinite(flat)]
        integral = bool(np.all(fin == np.round(fin)))
    return InputStats(name, tuple(x.shape[1:]), "float32", m, integral)


def context(
    conf: np.ndarray | list[list[int]],
    inputs: list[InputStats] | None = None,
    normalizers: dict[str, Normalizer | None] | None = None,
    consumers: dict[str, tuple[str, ...]] | None = None,
    constant: bool = False,
    n_outputs: int | None = None,
    overrides: dict[str, dict[str, float]] | None = None,
    y_true: np.ndarray | None = None,
    activations: list[ActivationStats] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Context:
    """A Context whose predictions follow the confusion matrix (rows labels, cols predictions).

    Probabilities vary from row to row (so constant-output stays quiet) unless `constant`.
    `activations` are the ReLU layers the pass watched; `facts` replaces ModelFacts fields
    (e.g. optimizer_iterations=0).
    """
    conf = np.asarray(conf, dtype=np.int64)
    k = conf.shape[0]
    yt, yp = [], []
    for i in range(k):
        for j in range(k):
            yt += [i] * int(conf[i, j])
            yp += [j] * int(conf[i, j])
    y, p = np.array(yt, np.int64), np.array(yp, np.int64)
    if y_true is not None:  # rows in this order; only for a perfect (diagonal) model
        assert np.all(conf == np.diag(np.diag(conf)))
        assert np.array_equal(np.bincount(y_true, minlength=k), np.diag(conf))
        y = p = np.asarray(y_true, np.int64)
    n = y.size
    rng = np.random.default_rng(0)
    probs = 0.5 * np.eye(k)[p] + 0.5 * rng.dirichlet(np.ones(k), n)
    if constant:
        probs = np.tile(probs[:1], (n, 1))
    pm = Moments.empty(k)
    pm.update(probs)
    inputs = inputs or [stats("x", rng.normal(size=(n, 4)))]
    ev = Evidence(
        n_samples=n,
        n_classes=k,
        y_true=y,
        y_pred=p,
        confusion=conf,
        output=OutputStats("softmax", pm, pm),
        inputs=inputs,
        activations=list(activations or []),
    )
    model_facts = ModelFacts(
        format="keras",
        n_outputs=n_outputs or k,
        head="softmax",
        head_layer="head",
        head_axis_size=k,
        loss=None,
        loss_from_logits=None,
        loss_config=None,
        compiled=False,
        optimizer=None,
        optimizer_iterations=None,
        input_normalizers=normalizers or {st.name: None for st in inputs},
        input_consumers=consumers or {st.name: ("Dense",) for st in inputs},
    )
    if facts:
        model_facts = dataclasses.replace(model_facts, **facts)
    ctx = Context(ev, model_facts, [str(i) for i in range(k)], overrides=overrides or {})
    run_symptoms(ctx)  # phase 1: cause checks receive the symptom findings
    return ctx


GOOD = [[90, 5, 5], [5, 90, 5], [5, 5, 90]]  # a working 3-class model
COLLAPSED = [[300, 0, 0], [300, 0, 0], [300, 0, 0]]  # everything called class 0


def one(findings: list[Any]) -> Any:
    assert len(findings) == 1, findings
    return findings[0]


def signs(n: int, f: int, scale: np.ndarray | float, seed: int = 0) -> np.ndarray:
    """+-scale per feature in a checkerboard (n even): every feature has mean exactly 0 and
    RMS exactly scale[j], so thresholds can be tested right at their value. `seed` shifts
    the pattern by a row."""
    sign = (-1.0) ** (np.arange(n)[:, None] + np.arange(f)[None, :] + seed)
    return sign * np.asarray(scale, dtype=np.float64)


# ------------------------------------------------------------------ fixture reports


def model(name: str, **options: Any) -> Any:
    """The report of fixture model_<name>.keras on model_<name>.npz."""
    return diagnose_fixture(f"model_{name}.keras", f"model_{name}.npz", **options)


def only(report: Any, finding_id: str) -> Any:
    found = [f for f in report.findings if f.id == finding_id]
    assert len(found) <= 1
    return found[0] if found else None


def override(check: str, **values: float) -> dict[str, Any]:
    return {"thresholds": {check: values}}


# ------------------------------------------------------------------ what every check's tests ask


def assert_quiet(report: Any, finding_id: str) -> None:
    """No finding of this id, and no check errored on the way."""
    assert only(report, finding_id) is None, [
        (f.id, f.severity.value, f.title) for f in report.findings if f.id == finding_id
    ]
    assert report.errors == ()


def assert_complete_and_serialisable(report: Any, finding_id: str) -> None:
    """The finding is there, says what and why, serialises as strict JSON, and every fix
    carries a command or code to apply."""
    f = only(report, finding_id)
    assert f is not None and not report.errors
    d = f.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["title"] and d["detail"] and d["evidence"] and d["fixes"]
    assert all(fx["command"] or fx["code"] for fx in d["fixes"])


def assert_thresholds_documented(spec: CheckSpec) -> None:
    """Every threshold is named where the spec says what it measures, with a reason."""
    text = spec.explain()
    for name, t in spec.thresholds.items():
        assert name in spec.measures, (spec.id, name)
        assert len(t.why) > 40 and name in text
