"""The report's experiment log: typed entries (findings.LoggedExperiment) whose JSON is the
log's contract object, seconds left out, the backed finding's id last."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kerasdoctor.checks.base import DENSE
from kerasdoctor.experiments import ExperimentResult, ProbeResult
from kerasdoctor.findings import Finding, Kind, LoggedExperiment, Report, Severity
from kerasdoctor.metrics import compute_metrics
from kerasdoctor.sections import DataSection, ModelSection
from kerasdoctor.task_report import assemble

CURE = ExperimentResult(
    "bn-reestimated",
    "BatchNorm statistics re-estimated on the sample",
    0.25,
    0.875,
    64,
    seconds=1.23456,
    validated="held-out half",
    predicted_counts=(30, 34),
)
FAILED = ExperimentResult(
    "preprocess:x:bgr", "channels reversed", 0.25, None, 64, seconds=0.5, error="ValueError: no"
)
PROBE = ProbeResult(
    "probe:features",
    "a linear probe on the penultimate features",
    0.5,
    recall=(1.0, float("nan")),
    chance=0.5,
    bound=0.1,
    rows=64,
    dims=8,
    seconds=2.0,
)
# a dense check's own measurement on the pass: no service, no key, keys in the check's order
MEASURED = {
    "what": "logit adjustment",
    "balanced_accuracy_before": 0.3,
    "balanced_accuracy_after": 0.6,
    "mean_iou_before": 0.2,
    "rows": 8,
    "seconds": 9.0,
    "restores": True,
}


def _without_seconds(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "seconds"}


@pytest.mark.unit
def test_a_result_logs_its_contract_object_without_seconds() -> None:
    for r in (CURE, FAILED, PROBE):
        e = LoggedExperiment(r)
        assert e.key == r.key and e.what == r.what and e.seconds == r.seconds
        d = e.to_dict()
        # what the log held before it was typed: to_dict(timing=True) less the seconds
        assert list(d.items()) == list(_without_seconds(r.to_dict(timing=True)).items())
        assert "seconds" not in d and "finding" not in d


@pytest.mark.unit
def test_the_backed_finding_comes_last() -> None:
    d = LoggedExperiment(CURE, "batchnorm-statistics").to_dict()
    assert list(d) == [
        "what",
        "balanced_accuracy_before",
        "balanced_accuracy_after",
        "rows",
        "key",
        "validated",
        "predicted_counts_after",
        "finding",
    ]
    assert d["finding"] == "batchnorm-statistics" and d["predicted_counts_after"] == [30, 34]


@pytest.mark.unit
def test_a_recorded_measurement_keeps_its_keys_in_order() -> None:
    e = LoggedExperiment(finding="class-imbalance", recorded=MEASURED)
    assert e.key is None and e.seconds is None and e.what == "logit adjustment"
    d = e.to_dict()
    assert list(d) == [k for k in MEASURED if k != "seconds"] + ["finding"]
    assert d["finding"] == "class-imbalance"


@pytest.mark.unit
def test_entries_are_frozen() -> None:
    e = LoggedExperiment(CURE)
    with pytest.raises(FrozenInstanceError):
        e.finding = "x"  # type: ignore[misc]


def _report(experiments: tuple[LoggedExperiment, ...]) -> Report:
    conf = np.array([[5, 1], [2, 6]])
    return Report(
        model=ModelSection(
            path="m.keras",
            format="keras",
            inputs=(),
            output="out",
            n_outputs=2,
            head="softmax",
            loss=None,
            loss_from_logits=None,
            optimizer_iterations=None,
        ),
        data=DataSection(
            path="d.npz",
            n_samples=14,
            n_classes=2,
            class_names=("a", "b"),
            label_counts=(6, 8),
            label_encoding="index",
            inputs=(),
        ),
        metrics=compute_metrics(conf, ["a", "b"]),
        findings=(),
        experiments=experiments,
        version="test",
    )


@pytest.mark.unit
def test_report_json_of_the_log() -> None:
    r = _report(
        (
            LoggedExperiment(CURE, "batchnorm-statistics"),
            LoggedExperiment(finding="class-imbalance", recorded=MEASURED),
            LoggedExperiment(PROBE),
            LoggedExperiment(FAILED),
        )
    )
    log = r.to_dict()["experiments"]
    assert [e.get("key") for e in log] == [CURE.key, None, PROBE.key, FAILED.key]
    assert not any("seconds" in e for e in log)
    assert log[2]["recall"] == [1.0, None]  # NaN stays out of the strict JSON
    assert log[3]["balanced_accuracy_after"] is None and log[3]["error"] == "ValueError: no"
    json.loads(r.to_json())  # strict JSON
    # the Python API keeps what the JSON leaves out
    assert [e.seconds for e in r.experiments] == [CURE.seconds, None, 2.0, 0.5]
    assert "experiments" not in _report(()).to_dict()


@pytest.mark.unit
def test_assemble_links_a_cause_to_its_typed_result() -> None:
    """A dense finding's experiment that the service ran is logged as that typed result; a
    check's own measurement as recorded; the other cures tried follow, each once."""
    cause = Finding(
        "batchnorm-statistics",
        Kind.CAUSE,
        Severity.ERROR,
        "t",
        "d",
        {"experiment": CURE.to_dict()},
    )
    prior = Finding(
        "class-imbalance",
        Kind.CAUSE,
        Severity.WARNING,
        "t",
        "d",
        {"experiment": _without_seconds(MEASURED)},
    )
    opts = SimpleNamespace(ignore={}, only=None)
    done = assemble(DENSE, [cause, prior], [FAILED, CURE], opts)
    log = done.experiments
    by_finding = {e.finding: e for e in log if e.finding}
    assert by_finding["batchnorm-statistics"].result is CURE
    assert by_finding["class-imbalance"].result is None
    assert [e.key for e in log if e.finding is None] == [FAILED.key]
    assert len(log) == 3
    for e in log:
        if e.finding:
            ev = next(f for f in (cause, prior) if f.id == e.finding).evidence["experiment"]
            assert e.to_dict() == {**ev, "finding": e.finding}
