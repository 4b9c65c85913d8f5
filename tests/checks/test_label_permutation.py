"""label-permutation: the output units answer for other classes than the labels name (e.g.
alphabetical class order); a relabelling that removes most of the error."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    COLLAPSED,
    GOOD,
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import label_permutation
from kerasdoctor.findings import Severity

ID = "label-permutation"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    assert_quiet(diagnose_fixture(model, data), ID)


def test_label_permutation_fires_on_alphabetical_class_order() -> None:
    report = diagnose_fixture("data_permuted.keras", "data_permuted.npz")
    f = report.finding("label-permutation")
    assert f is not None and f.severity is Severity.ERROR
    assert f.evidence["output_unit_to_label"] == [0, 2, 1]
    assert f.evidence["class_names_in_model_order"] == ["apple", "orange", "grape"]
    assert f.evidence["accuracy_relabelled"] == pytest.approx(1.0)
    assert report.root_cause is not None and report.root_cause.id == "label-permutation"


@pytest.mark.parametrize(
    ("model", "data"),
    [
        ("collapsed.keras", "collapsed.npz"),
        ("data_multi_scale.keras", "data_multi_scale.npz"),
        ("data_tabular_thousands.keras", "data_tabular_thousands.npz"),
    ],
)
def test_label_permutation_quiet_on_merely_bad_models(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding("label-permutation") is None


@pytest.mark.unit
def test_label_permutation_error_removed_threshold_both_sides() -> None:
    assert label_permutation.SPEC.thresholds["min_error_removed"].value == 0.5
    inverted = [[300, 700], [700, 300]]  # 30% -> 70%: removes 0.4/0.7 = 57% of the error
    f = one(label_permutation.run(context(inverted, n_outputs=1)))
    assert f.evidence["error_removed"] == pytest.approx(0.4 / 0.7)
    assert f.fixes[0].command and "fix --repair" in f.fixes[0].command  # measured: repair first
    assert "> 0.5" in (f.fixes[1].code or "")
    weak = [[350, 650], [650, 350]]  # 35% -> 65%: removes 46%
    assert label_permutation.run(context(weak, n_outputs=1)) == []


@pytest.mark.unit
def test_label_permutation_noise_threshold_both_sides() -> None:
    # fully inverted, but on 4 vs 2 samples per class: noise 0.25 (bar 0.75) vs 0.35 (1.06)
    assert one(label_permutation.run(context([[0, 4], [4, 0]])))
    assert label_permutation.run(context([[0, 2], [2, 0]])) == []


@pytest.mark.unit
def test_label_permutation_quiet_on_spread_out_errors() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.integers(20, 40, size=(5, 5))  # a near-random model, best matching by chance
    assert label_permutation.run(context(noisy)) == []
    assert label_permutation.run(context(COLLAPSED)) == []
    assert label_permutation.run(context(GOOD)) == []


@pytest.mark.parametrize("name", ["data_permuted"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(label_permutation.SPEC)
