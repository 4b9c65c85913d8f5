"""input-scale-mismatch: the inputs of a multi-input model on scales far apart (RGB in
[0, 1] next to depth in millimetres), counting the model's own rescaling."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    GOOD,
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
    signs,
    stats,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import input_scale_mismatch
from kerasdoctor.checks._data import JudgedInput
from kerasdoctor.checks.base import NotApplicable
from kerasdoctor.findings import Severity
from kerasdoctor.model_facts import Normalizer

ID = "input-scale-mismatch"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_scale_mismatch_fires_on_rgb_plus_depth_fixture() -> None:
    report = diagnose_fixture("data_multi_scale.keras", "data_multi_scale.npz")
    f = report.finding("input-scale-mismatch")
    assert f is not None and f.severity is Severity.WARNING
    assert f.evidence["largest_input"] == "depth" and f.evidence["smallest_input"] == "rgb"
    assert f.evidence["ratio"] > 1000
    assert {r["input"] for r in f.evidence["inputs"]} == {"rgb", "depth"}
    assert "norm_depth.adapt(depth_train)" in (f.fixes[0].code or "")
    assert report.root_cause is not None and report.root_cause.id == "input-scale-mismatch"


@pytest.mark.unit
def test_scale_mismatch_ratio_threshold_both_sides() -> None:
    assert input_scale_mismatch.SPEC.thresholds["max_ratio"].value == 100.0
    n = int(np.sum(GOOD))
    at = [stats("a", signs(n, 2, 1.0)), stats("b", signs(n, 2, 100.0, seed=1))]
    f = one(input_scale_mismatch.run(context(GOOD, at)))
    assert f.evidence["ratio"] == pytest.approx(100.0) and f.severity is Severity.INFO
    below = [stats("a", signs(n, 2, 1.0)), stats("b", signs(n, 2, 99.0, seed=1))]
    assert input_scale_mismatch.run(context(GOOD, below)) == []


@pytest.mark.unit
def test_scale_mismatch_counts_the_models_own_rescaling() -> None:
    n = int(np.sum(GOOD))
    ins = [stats("a", signs(n, 2, 1.0)), stats("b", signs(n, 2, 1000.0, seed=1))]
    rescaled = {"a": None, "b": Normalizer("r", "Rescaling", {"scale": 0.001, "offset": 0.0})}
    assert input_scale_mismatch.run(context(GOOD, ins, normalizers=rescaled)) == []
    ji = JudgedInput(1, ins[1], rescaled["b"])
    assert input_scale_mismatch.effective_rms(ji) == pytest.approx(1.0)
    assert input_scale_mismatch.run(context(GOOD, ins)) != []  # without it: 1000x


@pytest.mark.unit
def test_scale_mismatch_needs_several_inputs() -> None:
    n = int(np.sum(GOOD))
    with pytest.raises(NotApplicable, match="fewer than two inputs"):  # skipped, not passed
        input_scale_mismatch.run(context(GOOD, [stats("x", signs(n, 2, 1e4))]))


@pytest.mark.parametrize("name", ["data_multi_scale"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(input_scale_mismatch.SPEC)
