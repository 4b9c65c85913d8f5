"""no-signal: the model at chance, and linear probes on its features and on the raw inputs
at chance too: nothing to learn, so no class weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import no_signal
from kerasdoctor.checks.base import Context
from kerasdoctor.evidence import Evidence, Moments, OutputStats
from kerasdoctor.experiments import ExperimentResult, Experiments, ProbeResult
from kerasdoctor.findings import Finding, Kind, Severity
from kerasdoctor.model_facts import ModelFacts

ID = "no-signal"


@pytest.mark.parametrize("scenario", ["scn_noise_blog", "scn_shuffled"])
def test_fires_as_the_root_cause_when_nothing_predicts_the_labels(scenario: str) -> None:
    report = diagnose_fixture(f"{scenario}.keras", f"{scenario}.npz")
    f = report.finding(ID)
    assert f is not None and f.severity is Severity.ERROR
    assert report.root_cause is not None and report.root_cause.id == ID
    ev = f.evidence
    for probe in ("input_probe", "feature_probe"):
        assert ev[probe]["balanced_accuracy"] <= ev[probe]["signal_bar"]
    # no class weights anywhere in the report: they cannot help where nothing is learnable
    commands = [fx.command or "" for g in report.findings for fx in g.fixes]
    assert not any("--class-weights" in c for c in commands)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        *HEALTHY_FIXTURES,
        ("scn_lr_high.keras", "scn_lr_high.npz"),  # at chance, but the inputs carry the classes
        ("scn_bgr.keras", "scn_bgr.npz"),  # at chance, but reversing the channels restores it
    ],
)
def test_quiet_where_the_inputs_carry_the_labels(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding(ID) is None


# -- the rule on a built evidence (no TensorFlow): a cure that restored the model silences it


def _context(cured_gain: float) -> Context:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [100, 80, 20]).astype(np.int64)
    pred = np.zeros_like(y)
    probs = np.tile([0.8, 0.15, 0.05], (y.size, 1))
    pm = Moments.empty(3)
    pm.update(probs)
    conf = np.zeros((3, 3), np.int64)
    np.add.at(conf, (y, pred), 1)
    ev = Evidence(
        n_samples=y.size,
        n_classes=3,
        y_true=y,
        y_pred=pred,
        confusion=conf,
        output=OutputStats("softmax", pm, pm),
        inputs=[],
        sample_index=np.arange(y.size),
        sample_probs=probs,
        sample_inputs=[rng.normal(size=(y.size, 4))],
    )
    facts = ModelFacts(
        format="keras",
        n_outputs=3,
        head="softmax",
        head_layer="head",
        head_axis_size=3,
        loss=None,
        loss_from_logits=None,
        loss_config=None,
        compiled=False,
        optimizer=None,
        optimizer_iterations=None,
        input_normalizers={},
        input_consumers={},
    )
    exps = Experiments(None, ev)
    chance = ProbeResult("x", "probe", 0.34, (0.3, 0.4, 0.3), 1 / 3, 0.06, 200, 4)
    exps._cache["probe-inputs"] = chance
    exps._cache["probe-features"] = chance
    before = exps.before
    exps.record(ExperimentResult("some-cure", "a cure", before, before + cured_gain, 200))
    ctx = Context(ev, facts, ["a", "b", "c"], experiments=exps)
    ctx.symptoms = {
        "chance-level": Finding("chance-level", Kind.SYMPTOM, Severity.ERROR, "t", "d", {})
    }
    return ctx


@pytest.mark.unit
def test_fires_on_built_evidence_when_no_cure_helped() -> None:
    found = no_signal.run(_context(0.0))
    assert [f.id for f in found] == [ID] and found[0].severity is Severity.ERROR


@pytest.mark.unit
def test_min_restored_gain_threshold_both_sides() -> None:
    ctx = _context(0.6)
    ctx.overrides = {ID: {"min_restored_gain": 0.59}}
    assert no_signal.run(ctx) == []  # the cure restored the model: there is signal
    ctx = _context(0.6)
    ctx.overrides = {ID: {"min_restored_gain": 0.61}}
    assert [f.id for f in no_signal.run(ctx)] == [ID]


@pytest.mark.unit
def test_quiet_without_the_chance_level_symptom() -> None:
    ctx = _context(0.0)
    ctx.symptoms = {}
    assert no_signal.run(ctx) == []
