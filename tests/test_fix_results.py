"""The typed results of `fix` (kerasdoctor.fix.results): every type's to_dict() is the JSON the
command prints, key for key and in order, JSON-serialisable with NaN/Inf as null; the producers
that need no model build them; the renderers read them. No TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from kerasdoctor.fix.results import (
    BiasHead,
    BiasRefit,
    ClassRecall,
    ClassWeights,
    CrossCheck,
    FollowUp,
    Interval,
    OutputBias,
    ResampledFile,
    ResampleReport,
    RetrainReport,
    Summary,
    ThresholdReport,
    ThresholdSide,
    finite,
)

pytestmark = pytest.mark.unit


def _json(d: dict[str, Any]) -> dict[str, Any]:
    """d through JSON and back: it must serialise without NaN (as `fix --format json`)."""
    out: dict[str, Any] = json.loads(json.dumps(d, allow_nan=False))
    return out


def _summary(recall_after: float | None = 0.5) -> Summary:
    return Summary(
        n_samples=6,
        accuracy=4 / 6,
        balanced_accuracy=0.75,
        balanced_accuracy_ci95=(0.3, 0.95),
        effective_n=5.3,
        confusion_matrix=((4, 0), (1, 1)),
        per_class=(
            ClassRecall(0, "cat", 4, 5, 1.0),
            ClassRecall(1, "dog", 2, 1, recall_after),
        ),
    )


def _side(t: float) -> ThresholdSide:
    return ThresholdSide(t, 0.8, 0.8, 0.5, 0.9, ((8, 1), (1, 1)), (9, 2), (8 / 9, 0.5))


def _threshold() -> ThresholdReport:
    return ThresholdReport(
        model="m.keras",
        data="d.npz",
        head="one sigmoid unit",
        score="P(class 1)",
        objective="balanced-accuracy",
        threshold=0.2,
        logit_threshold=None,
        default_threshold=0.5,
        roc_auc=0.9,
        warning=None,
        label_counts=(9, 2),
        class_names=("normal", "fraud"),
        before=_side(0.5),
        after=_side(0.2),
        cross_check=CrossCheck(0.7, (0.19, 0.21)),
        code="pred = (model.predict(x)[:, 0] > 0.2).astype('int64')\n",
        note="chosen on DATA itself",
    )


def _resample(**extra: Any) -> ResampleReport:
    fields: dict[str, Any] = {
        "method": "oversample",
        "seed": 0,
        "data": "train.npz",
        "output": "balanced.npz",
        "format": "npz",
        "class_names": ("a", "b"),
        "n_samples_before": 5,
        "n_samples_after": 8,
        "distinct_samples": 5,
        "label_counts_before": (4, 1),
        "label_counts_after": (4, 4),
        "note": "rare samples are repeated",
    }
    return ResampleReport(**{**fields, **extra})


def _retrain(**extra: Any) -> RetrainReport:
    return RetrainReport(
        model="m.keras",
        data="train.npz",
        eval_data=None,
        output="fixed.keras",
        epochs=2,
        batch_size=32,
        learning_rate=0.01,
        optimizer="SGD",
        loss="sparse_categorical_crossentropy",
        loss_from_logits=False,
        loss_source="compiled",
        validation_split=0.3,
        seed=0,
        n_train=14,
        n_heldout=6,
        heldout_file="fixed.heldout.json",
        interval=Interval(0.95, "Wilson"),
        class_names=("cat", "dog"),
        class_weight={"0": 0.6, "1": 3.0},
        bias=BiasRefit(
            applied=True,
            reason="re-fitted",
            layer="dense",
            before=(0.1, -0.1),
            refit=(-1.0, 1.0),
            balanced_loss_before=0.9,
            balanced_loss_refit=0.7,
        ),
        train_loss=(0.8, 0.6),
        before=_summary(0.0),
        after=_summary(0.5),
        notes=(),
        **extra,
    )


def test_finite_turns_nan_and_inf_into_null_and_tuples_into_lists() -> None:
    value = {"a": math.nan, "b": (1.0, -math.inf), "c": [{"d": math.inf}], "e": "x", "f": 2}
    assert finite(value) == {"a": None, "b": [1.0, None], "c": [{"d": None}], "e": "x", "f": 2}
    # the numbers numpy gives are floats too
    assert finite({"a": np.float64("nan"), "b": np.float64(0.5)}) == {"a": None, "b": 0.5}


def test_every_result_is_frozen() -> None:
    results: list[Any] = [
        _summary(),
        _side(0.5),
        _threshold(),
        _resample(),
        _retrain(),
        ClassWeights({"0": 1.0}, "balanced", (3,)),
        BiasRefit(False, "kept"),
        FollowUp("kerasdoctor diagnose f.keras NEW_DATA", "why", None),
    ]
    for result in results:
        field = dataclasses.fields(result)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, field, None)


def test_class_weights_is_the_contract_shape() -> None:
    from kerasdoctor.class_weights import class_weights, python_line

    y = np.array([0, 0, 0, 1, 3])
    result = class_weights(y, 4)
    assert isinstance(result, ClassWeights)
    d = _json(result.to_dict())
    assert list(d) == ["class_weight", "method", "label_counts"]  # docs/contract.md
    assert d["method"] == "balanced" and d["label_counts"] == [3, 1, 0, 1]
    assert d["class_weight"] == pytest.approx({"0": 5 / 9, "1": 5 / 3, "3": 5 / 3})
    assert python_line(result) == "class_weight = {0: 0.555556, 1: 1.66667, 3: 1.66667}"
    eff = class_weights(y, 4, method="effective-number", beta=0.9)
    assert list(eff.to_dict()) == ["class_weight", "method", "label_counts", "beta"]
    # what the CLI adds comes last, as it always did
    cli = replace(result, train_data="train.npz", note="give the training data").to_dict()
    assert list(cli)[-2:] == ["train_data", "note"] and cli["train_data"] == "train.npz"


def test_output_bias_keys_and_snippets() -> None:
    from kerasdoctor.fix.output_bias import prior_bias, python_text

    result = prior_bias(np.array([0, 0, 0, 1]), 3, ["a", "b", "c"])
    assert isinstance(result, OutputBias) and all(isinstance(h, BiasHead) for h in result.heads)
    d = _json(replace(result, train_data="t.npz").to_dict())
    assert list(d) == [
        "label_counts",
        "prior",
        "class_names",
        "absent_classes",
        "heads",
        "note",
        "train_data",
    ]
    assert d["absent_classes"] == [2] and d["class_names"] == ["a", "b", "c"]
    assert [list(h) for h in d["heads"]] == [
        ["head", "units", "bias", "formula", "for", "code"]
    ] * 2
    assert d["heads"][0]["bias"] == pytest.approx(np.log([3 / 4, 1 / 4, 0.5 / 4]).tolist())
    assert python_text(result) == "\n".join(h["code"] for h in d["heads"])
    assert prior_bias(np.array([0, 1]), 2).to_dict()["class_names"] is None


def test_threshold_sides_and_cross_check() -> None:
    from kerasdoctor.fix.threshold import _side, cross_check

    y = np.array([0, 0, 0, 1, 1, 0, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.35, 0.05, 0.9])
    side = _side(y, scores, 0.5, "balanced-accuracy")
    d = _json(side.to_dict())
    assert list(d) == [
        "threshold",
        "objective",
        "balanced_accuracy",
        "f1",
        "accuracy",
        "confusion_matrix",
        "predicted_counts",
        "recall",
    ]
    assert d["confusion_matrix"] == [[5, 0], [1, 2]] and d["predicted_counts"] == [6, 2]
    assert d["recall"] == pytest.approx([1.0, 2 / 3])
    assert list(cross_check(y, scores, "f1", 0).to_dict()) == ["objective", "thresholds"]
    few = cross_check(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]), "f1", 0)
    assert few.to_dict() == {
        "objective": None,
        "thresholds": [],
        "note": "too few samples per class",
    }


def test_threshold_report_keys() -> None:
    d = _json(_threshold().to_dict())
    assert list(d) == [
        "model",
        "data",
        "head",
        "score",
        "objective",
        "threshold",
        "logit_threshold",
        "default_threshold",
        "roc_auc",
        "warning",
        "label_counts",
        "class_names",
        "before",
        "after",
        "cross_check",
        "code",
        "note",
    ]
    assert d["before"]["threshold"] == 0.5 and d["cross_check"]["thresholds"] == [0.19, 0.21]


def test_summary_reads_back_from_its_json() -> None:
    from kerasdoctor.fix.common import summarize
    from kerasdoctor.fix.results import Summary

    y, pred = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 0, 0])
    s = summarize(y, pred, ["a", "b", "c"])
    d = _json(s.to_dict())
    assert Summary.of(d) == s
    assert [p["recall"] for p in d["per_class"]] == [2 / 3, 0.5, 0.0]
    assert list(d) == [
        "n_samples",
        "accuracy",
        "balanced_accuracy",
        "balanced_accuracy_ci95",
        "effective_n",
        "confusion_matrix",
        "per_class",
    ]
    assert d["per_class"][2] == {"class": 2, "name": "c", "support": 1, "predicted": 0, "recall": 0}
    assert s.per_class[1].recall == 0.5 and d["confusion_matrix"][0] == [2, 1, 0]
    assert summarize(y[:0], pred[:0], ["a"]).to_dict()["balanced_accuracy_ci95"] is None


def test_resample_report_keys_by_format() -> None:
    base = [
        "method",
        "seed",
        "data",
        "output",
        "format",
        "class_names",
        "n_samples_before",
        "n_samples_after",
        "distinct_samples",
        "label_counts_before",
        "label_counts_after",
        "note",
    ]
    npz = _json(replace(_resample(arrays=("x", "y")), train_data="train.npz").to_dict())
    assert list(npz) == [*base[:5], "arrays", *base[5:], "train_data"]
    table = _resample(format="csv", label_column="label", columns=("a", "label"))
    assert list(table.to_dict()) == [*base, "label_column", "columns"]
    files = (ResampledFile("a", "/src/a/1.png", "out/a/1.png"),)
    images = _resample(format="image-folder", written_as="links", files=files, files_omitted=3)
    d = _json(images.to_dict())
    assert list(d) == [*base, "written_as", "files", "files_omitted"]
    assert d["files"] == [{"class": "a", "source": "/src/a/1.png", "link": "out/a/1.png"}]
    assert "files" not in images.to_dict(files=False)


def test_retrain_report_keys_bias_and_follow_up() -> None:
    keys = [
        "model",
        "data",
        "train_data",
        "eval_data",
        "evaluated_on",
        "output",
        "epochs",
        "batch_size",
        "learning_rate",
        "optimizer",
        "loss",
        "loss_from_logits",
        "loss_source",
        "validation_split",
        "seed",
        "n_train",
        "n_heldout",
        "heldout_file",
        "interval",
        "class_names",
        "class_weight",
        "bias",
        "train_loss",
        "heldout",
        "notes",
    ]
    r = _retrain()
    d = _json(r.to_dict())
    assert list(d) == keys
    assert d["train_data"] == d["data"] == "train.npz" and d["evaluated_on"] == "heldout-part"
    assert list(d["heldout"]) == ["before", "after"]
    assert d["heldout"]["after"]["per_class"][1]["recall"] == 0.5
    assert d["interval"] == {"level": 0.95, "method": "Wilson"}
    assert list(d["bias"]) == [
        "applied",
        "layer",
        "before",
        "refit",
        "balanced_loss_before",
        "balanced_loss_refit",
        "reason",
    ]
    assert BiasRefit(False, "--no-bias-reset").to_dict() == {
        "applied": False,
        "reason": "--no-bias-reset",
    }
    follow = FollowUp("kerasdoctor diagnose fixed.keras val.npz", "EVAL_DATA", None)
    with_eval = replace(r, eval_data="val.npz", validation_split=None, follow_up=follow)
    e = _json(with_eval.to_dict())
    assert list(e) == [*keys, "follow_up", "follow_up_why", "spent"]
    assert e["evaluated_on"] == "eval-data" and e["spent"] is None
    # a diverging loss is NaN: null in the JSON
    nan = replace(r, train_loss=(math.nan,), learning_rate=math.inf)
    assert _json(nan.to_dict())["train_loss"] == [None]
    assert nan.to_dict()["learning_rate"] is None


def test_renderers_read_the_typed_results() -> None:
    from kerasdoctor.class_weights import class_weights
    from kerasdoctor.fix.output_bias import prior_bias
    from kerasdoctor.render.simple import (
        bias_table,
        resample_table,
        retrain_table,
        threshold_table,
        weights_table,
    )

    weights = replace(class_weights(np.array([0, 0, 1])), train_data="t.npz", note="n")
    text = weights_table(weights, ["cat", "dog"])
    assert (
        "from the labels of TRAIN_DATA t.npz" in text and "class_weight={0: 0.75, 1: 1.5}" in text
    )
    bias = bias_table(replace(prior_bias(np.array([0, 0, 1]), 2, ["a", "b"]), train_data="t"))
    assert "one sigmoid unit: bias = log(positives / negatives) = -0.6931" in bias
    text = threshold_table(_threshold())
    assert "split-half check: chosen on one half, balanced-accuracy 0.700" in text
    assert "ROC AUC 0.900 · labels normal 9 / fraud 2" in text
    text = resample_table(_resample(arrays=("x", "y")))
    assert text.startswith("Oversampled TRAIN_DATA train.npz → balanced.npz (seed 0)")
    assert "arrays kept aligned: x, y" in text
    text = retrain_table(_retrain())
    assert "balanced accuracy 75.0% [30.0%, 95.0%] → 75.0% [30.0%, 95.0%]" in text
    assert "output bias of 'dense' re-fitted" in text
    assert "check it: kerasdoctor diagnose fixed.keras NEW_DATA (data it never saw)" in text
    follow = FollowUp("kerasdoctor diagnose fixed.keras val.npz", "EVAL_DATA", "spent it")
    text = retrain_table(replace(_retrain(), bias=BiasRefit(False, "kept"), follow_up=follow))
    assert "output bias: kept" in text and "note: spent it" in text
    assert "check it: kerasdoctor diagnose fixed.keras val.npz\n  (EVAL_DATA)" in text


def test_the_results_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, kerasdoctor.fix.results; "
        "print([m for m in ('numpy', 'tensorflow', 'keras', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
