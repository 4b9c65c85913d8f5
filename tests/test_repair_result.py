"""The typed result of `fix --repair` (fix/repair_result.py, issue 17): one RepairResult for
the single-label, multi-label and dense repairs whose to_dict() is the JSON the command
prints (the contract's keys, in their order; NaN/Inf as null), the library's RepairReport a
view of it, and the tables of render/repair.py read from its attributes. Built by hand: no
model runs."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from kerasdoctor.findings import CheckError, Finding, Fix, Kind, Report, Severity
from kerasdoctor.fix.repair_result import (
    CureVerdict,
    LabelRates,
    LabelRow,
    LabelSummary,
    LabelThresholds,
    PositionSummary,
    PositionThreshold,
    Rediagnosis,
    RepairDetails,
    RepairReport,
    RepairResult,
    Summary,
)
from kerasdoctor.fix.surgery import (
    BatchNormSurgery,
    ClassImbalanceSurgery,
    InputTransform,
    InputTransformSurgery,
    LogitShiftSurgery,
    OutputOrderSurgery,
    SigmoidSurgery,
    Surgery,
    ThresholdSurgery,
)

pytestmark = pytest.mark.unit

# the contract's keys of `fix --repair --format json`, and ours after them
CONTRACT = ("repaired", "cause", "repair", "before", "after", "output")

SUMMARY = {
    "n_samples": 10,
    "accuracy": 0.5,
    "balanced_accuracy": 0.5,
    "balanced_accuracy_ci95": [0.2, 0.8],
    "effective_n": 9.5,
    "confusion_matrix": [[5, 0], [5, 0]],
    "per_class": [
        {"class": 0, "name": "cat", "support": 5, "predicted": 10, "recall": 1.0},
        {"class": 1, "name": "dog", "support": 5, "predicted": 0, "recall": 0.0},
    ],
}
RATES = {"support": 3, "predicted": 1, "recall": 1 / 3, "precision": 1.0, "balanced_accuracy": 0.6}
VERDICT = {
    "balanced_accuracy_before": 0.5,
    "balanced_accuracy_after": 0.8,
    "mean_iou_before": 0.3,
    "mean_iou_after": 0.5,
    "gain": 0.3,
    "noise": 0.05,
    "restores": True,
    "mean_iou_gain": 0.2,
    "mean_iou_noise": 0.04,
    "validated": True,
}


def _report(verdict: str = "broken") -> Report:
    from types import SimpleNamespace

    report: Report = SimpleNamespace(verdict=verdict)  # type: ignore[assignment]
    return report  # RepairResult.start reads its verdict only


FINDING = Finding("decision-threshold", Kind.CAUSE, Severity.ERROR, "A bad cut", "detail")


def _start(task: str, **kw: object) -> RepairResult:
    return RepairResult.start(
        task, _report(), FINDING, split="halves", seed=0, fit_rows=5, heldout_rows=5, **kw
    )  # type: ignore[arg-type]


def _label_summary(ba: float | None) -> LabelSummary:
    return LabelSummary.of(
        {
            "rows": 5,
            "macro_balanced_accuracy": ba,
            "macro_recall": 0.5,
            "macro_precision": 0.5,
            "no_predicted_label": 0.4,
            "no_true_label": 0.0,
        },
        [dict(RATES, **{"class": 0, "name": "beach", "threshold": 0.5})],
    )


def _position_summary() -> PositionSummary:
    from kerasdoctor.fix.repair_result import PositionClassRow

    row = PositionClassRow(0, "bg", 90, 95, 0.99, 0.95, 0.94)
    return PositionSummary(2, 100, 0.9, 0.5, 0.47, 1.0, 0.5, (row,))


def test_summaries_round_trip_the_dicts_they_are_read_from() -> None:
    assert Summary.of(SUMMARY).to_dict() == SUMMARY
    assert LabelRates.of(RATES).to_dict() == RATES
    assert CureVerdict.of(VERDICT).to_dict() == VERDICT
    row = _label_summary(0.6).to_dict()
    assert list(row) == [
        "rows",
        "macro_balanced_accuracy",
        "macro_recall",
        "macro_precision",
        "no_predicted_label",
        "no_true_label",
        "balanced_accuracy",
        "per_class",
    ]
    assert row["balanced_accuracy"] == 0.6
    assert list(row["per_class"][0]) == [*RATES, "class", "name", "threshold"]


def test_single_label_result_prints_the_contract_keys_in_order() -> None:
    res = replace(
        _start("single-label"),
        repaired=True,
        repair="moved the cut",
        before=Summary.of(SUMMARY),
        after=Summary.of(dict(SUMMARY, balanced_accuracy=0.9)),
        gain=0.4,
        required_gain=float("nan"),  # NaN/Inf print as null
        details=RepairDetails(surgery=ThresholdSurgery("out", 0.2, 1.4)),
        diagnosis_after=Rediagnosis("healthy", None, (), (CheckError("x", "boom"),)),
        output="fixed.keras",
        standard_layers_only=True,
        model="m.keras",
        data="d.npz",
    )
    d = res.to_dict()
    assert list(d) == [
        "repaired",
        "cause",
        "cause_title",
        "repair",
        "why",
        "instead",
        "before",
        "after",
        "gain",
        "required_gain",
        "split",
        "seed",
        "fit_rows",
        "heldout_rows",
        "details",
        "diagnosis_after",
        "output",
        "verdict_before",
        "standard_layers_only",
        "model",
        "data",
    ]
    assert set(CONTRACT) <= set(d) and d["cause"] == "decision-threshold"
    assert d["required_gain"] is None and d["before"] == SUMMARY
    assert d["details"] == {"layer": "out", "threshold": 0.2, "bias_shift": 1.4}
    assert d["diagnosis_after"] == {
        "verdict": "healthy",
        "root_cause": None,
        "findings": [],
        "errors": [{"check": "x", "error": "boom"}],
    }
    json.dumps(d, allow_nan=False)  # plain JSON: lists, not tuples, no NaN
    # the library's report is a view of it
    rep = RepairReport(res)
    assert rep.repaired and rep.cause == "decision-threshold" and rep.gain == 0.4
    assert rep.before["balanced_accuracy"] == 0.5 and rep.after is not None
    assert rep.after["balanced_accuracy"] == 0.9 and rep.to_dict() == d == rep.result
    assert rep.details == d["details"] and rep.diagnosis_after == d["diagnosis_after"]


def test_nothing_to_repair_and_the_remedies_instead() -> None:
    healthy = RepairResult.start(
        "single-label", _report("healthy"), None, split="s", seed=0, fit_rows=1, heldout_rows=1
    )
    assert healthy.healthy and "healthy" in (healthy.why or "")
    d = healthy.to_dict()
    assert d["cause"] is None and d["instead"] == [] and d["details"] == {}
    assert "standard_layers_only" not in d and "model" not in d  # nothing built, library call
    fix = Fix("Pad the sequences 'pre'", code='pad_sequences(s, padding="pre")')
    res = replace(_start("single-label"), why="no edit cures it", instead=(fix,))
    assert not res.healthy
    assert res.to_dict()["instead"] == [fix.to_dict()]
    assert RepairReport(res).instead == [fix.to_dict()]
    assert Rediagnosis.failed(ValueError("bad")).to_dict() == {"error": "ValueError: bad"}


def test_multilabel_result_keeps_task_rule_and_the_details_order() -> None:
    rates = LabelRates.of(RATES)
    row = LabelRow(0, "beach", 0.2, True, None, rates, rates, 0.3, 0.9, 0.2, 0.1, 0.05)
    fitted = RepairDetails(labels=(row,), thresholds=(0.2,))
    res = replace(
        _start("multilabel", rule="beats 0.5"),
        before=_label_summary(0.5),
        after=_label_summary(float("nan")),
        details=replace(
            fitted,
            surgery=LogitShiftSurgery("out", "bias", (-1.4,)),
            validated_labels=("beach",),
            agreement_with_thresholds=1.0,
        ),
    )
    d = res.to_dict()
    assert list(d)[:2] == ["repaired", "task"] and d["task"] == "multilabel"
    assert list(d).index("rule") == list(d).index("required_gain") + 1
    assert "verdict" not in d and d["after"]["macro_balanced_accuracy"] is None
    assert list(d["details"]) == [
        "labels",
        "thresholds",
        "layer",
        "how",
        "shift",
        "validated_labels",
        "agreement_with_thresholds",
    ]
    assert list(d["details"]["labels"][0]) == [
        "label",
        "name",
        "prevalence",
        "roc_auc",
        "threshold",
        "threshold_fitted",
        "validated",
        "gain",
        "noise",
        "note",
        "before",
        "after",
    ]
    # a model-level repair: the edit first, then the labels measured on it (no cut fitted)
    plain = replace(row, cut=False)
    level = RepairDetails(
        surgery=InputTransformSurgery((InputTransform("x", "/255"),), "x = x / 255"),
        labels=(plain,),
        tried=_label_summary(0.5),
    )
    assert list(level.to_dict()) == ["transforms", "code", "labels", "tried"]
    assert list(plain.to_dict()) == [
        "label",
        "name",
        "threshold",
        "validated",
        "note",
        "before",
        "after",
    ]


def test_dense_result_prints_its_verdict_after_the_details() -> None:
    res = replace(
        _start("dense", rule="both up"),
        before=_position_summary(),
        details=RepairDetails(
            surgery=LogitShiftSurgery("out", "bias", (1.0,)),
            threshold=0.1,
            planned=CureVerdict.of(VERDICT),
        ),
        verdict=CureVerdict.of(VERDICT),
    )
    d = res.to_dict()
    keys = list(d)
    assert keys.index("verdict") == keys.index("details") + 1
    assert list(d["details"]) == ["threshold", "planned", "layer", "how", "shift"]
    assert d["verdict"] == VERDICT and d["before"]["per_class"][0]["iou"] == 0.94
    refused = replace(res, details=RepairDetails(prior=(0.9, 0.1), tried=_position_summary()))
    assert list(refused.to_dict()["details"]) == ["prior", "tried"]


def test_threshold_reports_print_their_keys() -> None:
    rates = LabelRates.of(RATES)
    row = LabelRow(0, "beach", 0.5, False, "keeps 0.5", rates, rates, 0.3, None, None)
    multi = LabelThresholds(
        model="m.keras",
        data="d.npz",
        head="1 sigmoid units",
        default_threshold=0.5,
        split="halves",
        validation="rule",
        seed=0,
        fit_rows=5,
        heldout_rows=5,
        thresholds=(0.5,),
        logit_thresholds=None,
        validated_labels=(),
        labels=(row,),
        label_counts=(3,),
        class_names=("beach",),
        before=_label_summary(0.5),
        after=_label_summary(0.5),
        code="THRESHOLDS = ...",
        repair_command=None,
        note="held-out half",
    )
    d = multi.to_dict()
    assert list(d)[:8] == [
        "model",
        "data",
        "task",
        "head",
        "score",
        "objective",
        "rule",
        "default_threshold",
    ]
    assert d["task"] == "multilabel" and d["thresholds"] == [0.5] and d["validated_labels"] == []
    json.dumps(d, allow_nan=False)
    dense = PositionThreshold(
        model="m.keras",
        data="d.npz",
        score="P(fg) per position",
        split="halves",
        validation="rule",
        seed=0,
        fit_samples=1,
        heldout_samples=1,
        positions_heldout=100,
        threshold=0.5,
        threshold_fitted=0.1,
        validated=False,
        roc_auc=math.inf,
        class_names=("bg", "fg"),
        ignore_label=None,
        mask=False,
        before=_position_summary(),
        after=_position_summary(),
        tried=_position_summary(),
        verdict=CureVerdict.of(VERDICT),
        code="THRESHOLD = 0.1",
        repair_command=None,
        note="not validated",
    )
    d = dense.to_dict()
    assert d["task"] == "dense" and d["head"] == "one sigmoid unit per position"
    assert d["roc_auc"] is None and list(d)[-4:] == ["verdict", "code", "repair_command", "note"]


def test_tables_read_the_typed_result() -> None:
    from kerasdoctor.render.repair import (
        label_threshold_table,
        position_threshold_table,
        repair_table,
    )

    single = replace(
        _start("single-label"),
        before=Summary.of(SUMMARY),
        why="no edit cures it",
        instead=(Fix("Retrain", command="kerasdoctor fix --retrain M D"),),
    )
    text = repair_table(single)
    assert "cause: decision-threshold — A bad cut" in text and "recall before" in text
    assert "balanced accuracy 50.0% [20.0%, 80.0%]" in text
    assert "not repaired: no edit cures it" in text
    assert "instead: Retrain: kerasdoctor fix --retrain M D" in text
    assert repair_table(replace(single, cause=None, why="healthy")) == "Nothing repaired: healthy\n"
    dense = replace(
        _start("dense", rule="r"),
        before=_position_summary(),
        details=RepairDetails(tried=_position_summary()),
    )
    assert "what the cure would give (not written)" in repair_table(dense)
    rates = LabelRates.of(RATES)
    row = LabelRow(0, "beach", 0.2, True, None, rates, rates)
    multi = replace(
        _start("multilabel", rule="r"),
        repaired=True,
        output="fixed.keras",
        before=_label_summary(0.5),
        after=_label_summary(0.7),
        details=RepairDetails(labels=(row,), thresholds=(0.2,)),
        diagnosis_after=Rediagnosis("healthy"),
    )
    text = repair_table(multi)
    assert "macro balanced accuracy 50.0% → 70.0%" in text and "written: fixed.keras" in text
    assert "on the held-out half: healthy" in text
    assert callable(label_threshold_table) and callable(position_threshold_table)


def test_each_surgery_prints_the_keys_its_repair_always_printed() -> None:
    """fix.surgery: what each edit changed, as `details` of the JSON spells it (the keys in
    their order, lists for tuples); merged after what was fitted, before what was measured."""
    cases: list[tuple[Surgery, dict[str, object]]] = [
        (
            BatchNormSurgery(("bn", "bn_1"), 450, 64),
            {"layers": ["bn", "bn_1"], "rows": 450, "batch": 64},
        ),
        (
            InputTransformSurgery(
                (InputTransform("image", "bgr<->rgb"), InputTransform("meta", "standardise")),
                "image = image[..., ::-1]",
            ),
            {
                "transforms": [
                    {"input": "image", "transform": "bgr<->rgb"},
                    {"input": "meta", "transform": "standardise"},
                ],
                "code": "image = image[..., ::-1]",
            },
        ),
        (
            InputTransformSurgery((InputTransform("x", "x255"),)),
            {"transforms": [{"input": "x", "transform": "x255"}], "code": None},
        ),
        (
            OutputOrderSurgery("out", (2, 0, 1)),
            {"layer": "out", "output_unit_to_label": [2, 0, 1]},
        ),
        (
            ThresholdSurgery("out", 0.2, 1.386),
            {"layer": "out", "threshold": 0.2, "bias_shift": 1.386},
        ),
        (
            ClassImbalanceSurgery(
                "out",
                "classifier-retraining",
                (("logit-adjustment", 0.7), ("classifier-retraining", 0.8)),
            ),
            {
                "layer": "out",
                "method": "classifier-retraining",
                "selection_balanced_accuracy": {
                    "logit-adjustment": 0.7,
                    "classifier-retraining": 0.8,
                },
                "selection": "each fitted on one quarter of DATA, scored on another "
                "(both inside the fitting half)",
            },
        ),
        (SigmoidSurgery("out"), {"layer": "out"}),
        (SigmoidSurgery("out", 0.91), {"layer": "out", "fit_balanced_accuracy": 0.91}),
        (
            LogitShiftSurgery("repair_logit_shift_act", "normalization", (0.5, -1.0)),
            {"layer": "repair_logit_shift_act", "how": "normalization", "shift": [0.5, -1.0]},
        ),
    ]
    for surgery, expected in cases:
        d = surgery.to_dict()
        assert d == expected and list(d) == list(expected), surgery
        json.dumps(d, allow_nan=False)
    # no selection scored (no features to re-train on): an empty mapping, as before
    empty = ClassImbalanceSurgery("out", "logit-adjustment", ())
    assert empty.to_dict()["selection_balanced_accuracy"] == {}
    # merged into the details between what was fitted and what was measured on the result
    details = RepairDetails(
        surgery=BatchNormSurgery(("bn",), 10, 5), tried=_position_summary()
    ).to_dict()
    assert list(details) == ["layers", "rows", "batch", "tried"]
    assert RepairDetails().to_dict() == {}
