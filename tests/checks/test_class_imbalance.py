"""class-imbalance: a rare class the model under-predicts because the labels are imbalanced;
context (info) when the predictions do not follow the label prior."""

from __future__ import annotations

import pytest
from _helpers import (
    COLLAPSED,
    assert_complete_and_serialisable,
    assert_quiet,
    assert_thresholds_documented,
    context,
    one,
    only,
)
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import class_imbalance
from kerasdoctor.findings import Severity

ID = "class-imbalance"


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_healthy_fixtures(model: str, data: str) -> None:
    report = diagnose_fixture(model, data)
    if model == "healthy_imbalanced.keras":  # 500/400/50, every class learned: context only
        f = only(report, ID)
        assert not report.errors
        assert f is not None and f.severity is Severity.INFO
        assert f.evidence["predictions_follow_prior"] is False
    else:
        assert_quiet(report, ID)


def test_imbalance_fires_as_root_on_collapsed_fixture() -> None:
    report = diagnose_fixture("collapsed.keras", "collapsed.npz")
    f = report.finding("class-imbalance")
    assert f is not None and f.severity is Severity.ERROR  # orange (120) is never predicted
    assert f.evidence["rare_classes"] == [1, 2]
    assert {r["class"] for r in f.evidence["under_predicted"]} == {1, 2}
    assert f.evidence["over_predicted_class"] == 0
    assert report.root_cause is not None and report.root_cause.id == "class-imbalance"
    commands = [fx.command for fx in f.fixes if fx.command]
    assert any(c.startswith("kerasdoctor fix --class-weights ") for c in commands)
    assert any("--oversample" in c and "--output balanced.npz" in c for c in commands)
    assert any(
        c.startswith("kerasdoctor fix --retrain ") and "collapsed_fixed.keras" in c
        for c in commands
    )
    # the features separate the dropped classes: the repair comes first; an output-bias
    # initialisation (for a head about to train) is no advice for this trained model
    assert (
        commands[0].startswith("kerasdoctor fix --repair ")
        and "--cause class-imbalance" in commands[0]
        and "collapsed_repaired.keras" in commands[0]
    )
    assert not any("--output-bias" in c for c in commands)
    assert any(fx.code and "FocalCrossentropy" in fx.code for fx in f.fixes)


def test_imbalance_fires_on_binary_model_that_never_predicts_the_rare_class() -> None:
    f = diagnose_fixture("data_rare_binary.keras", "data_rare_binary.npz").finding(
        "class-imbalance"
    )
    assert f is not None and f.severity is Severity.ERROR
    assert f.evidence["imbalance_ratio"] == pytest.approx(19.0)
    assert any(fx.code and "BinaryFocalCrossentropy" in fx.code for fx in f.fixes)


def _imbalanced(common: int, rare: int, rare_predicted: int) -> list[list[int]]:
    """Two classes; the rare one gets `rare_predicted` predictions, all correct, the rest of
    its samples go to the common class, which the model always gets right."""
    return [[common, 0], [rare - rare_predicted, rare_predicted]]


@pytest.mark.unit
def test_imbalance_ratio_threshold_both_sides() -> None:
    assert class_imbalance.SPEC.thresholds["min_ratio"].value == 3.0
    fired = one(class_imbalance.run(context(_imbalanced(300, 100, 40))))  # 3.0:1
    assert fired.severity is Severity.WARNING
    assert class_imbalance.run(context(_imbalanced(299, 100, 40))) == []  # 2.99:1


@pytest.mark.unit
def test_imbalance_under_ratio_threshold_both_sides() -> None:
    at = one(class_imbalance.run(context(_imbalanced(1000, 100, 50))))  # half its share
    assert at.severity is Severity.WARNING and at.evidence["predictions_follow_prior"]
    above = one(class_imbalance.run(context(_imbalanced(1000, 100, 51))))
    assert above.severity is Severity.INFO and not above.evidence["predictions_follow_prior"]


@pytest.mark.unit
def test_imbalance_error_when_rare_class_never_predicted_min_support_both_sides() -> None:
    never = one(class_imbalance.run(context(_imbalanced(1000, 5, 0))))
    assert never.severity is Severity.ERROR
    tiny = one(class_imbalance.run(context(_imbalanced(1000, 4, 0))))  # too few to judge
    assert tiny.severity is Severity.INFO


@pytest.mark.unit
def test_imbalance_is_not_the_cause_when_a_common_class_is_dropped_too() -> None:
    conf = [[1000, 0, 0], [1000, 0, 0], [100, 0, 0]]  # the common class 1 is lost as well
    f = one(class_imbalance.run(context(conf)))
    assert f.severity is Severity.INFO
    assert f.evidence["under_predicted_common_classes"] == [1]


@pytest.mark.unit
def test_imbalance_is_not_the_cause_when_the_surplus_goes_to_a_rare_class() -> None:
    conf = [[300, 0, 300], [0, 20, 80], [0, 0, 100]]  # rare class 2 swallows the others
    f = one(class_imbalance.run(context(conf)))
    assert f.severity is Severity.INFO


@pytest.mark.unit
def test_imbalance_is_context_when_the_output_is_constant() -> None:
    conf = _imbalanced(1000, 100, 0)  # the same counts as an error above...
    assert one(class_imbalance.run(context(conf))).severity is Severity.ERROR
    frozen = one(class_imbalance.run(context(conf, constant=True)))  # ...but a dead network
    assert frozen.severity is Severity.INFO and frozen.evidence["output_constant"]


@pytest.mark.unit
def test_imbalance_quiet_on_balanced_labels_even_when_collapsed() -> None:
    assert class_imbalance.run(context(COLLAPSED)) == []


@pytest.mark.parametrize("name", ["data_rare_binary"])
def test_findings_are_complete_and_serialisable(name: str) -> None:
    assert_complete_and_serialisable(diagnose_fixture(f"{name}.keras", f"{name}.npz"), ID)


@pytest.mark.unit
def test_spec_documents_every_threshold() -> None:
    assert_thresholds_documented(class_imbalance.SPEC)
