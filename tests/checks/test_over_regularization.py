"""over-regularization: a weight penalty that collapsed the kernels, so the output is the label
prior. Fires on the user-made scn_l2_strong, stays quiet on every control (healthy models, a
usual penalty with dropout, a strong penalty that still trains or that did not collapse), is
only context where the inputs carry nothing, and each threshold is tested on both sides."""

from __future__ import annotations

import ast
from typing import Any

import numpy as np
import pytest
from conftest import HEALTHY_FIXTURES, diagnose_fixture

from kerasdoctor.checks import over_regularization
from kerasdoctor.checks.base import Context
from kerasdoctor.evidence import Evidence, Moments, OutputStats
from kerasdoctor.experiments import Experiments, ProbeResult
from kerasdoctor.findings import Finding, Kind, Severity
from kerasdoctor.model_facts import LayerInfo, ModelFacts, RegularizerInfo

ID = "over-regularization"
CASE = ("scn_l2_strong.keras", "scn_l2_strong.npz")


def _report(**options: Any) -> Any:
    return diagnose_fixture(*CASE, **options)


def _override(**values: float) -> dict[str, Any]:
    return {"thresholds": {ID: values}}


# ----------------------------------------------------------------- the worked example


def test_fires_as_the_root_cause_on_an_l2_of_one_on_every_dense() -> None:
    report = _report()
    f = report.finding(ID)
    assert f is not None and f.severity is Severity.ERROR
    assert report.root_cause is not None and report.root_cause.id == ID
    ev = f.evidence
    # the two hidden kernels are at ~1% of sqrt(1/fan_in); the head (0.11x) is strong but
    # not below the bar, and is still in the layers to lower
    assert ev["collapsed_layers"] == ["dense", "dense_1"]
    assert ev["strong_penalty_layers"] == ["dense", "dense_1", "dense_2"]
    assert ev["layer"] == "dense" and ev["l2"] == 1.0
    assert ev["weight_ratio"] < 0.02
    assert ev["init_scale"] == pytest.approx(8**-0.5)
    # l2 x 32 units = 32 nats against H(0.6, 0.25, 0.15) = 0.94 nats
    assert ev["penalty_share"] == pytest.approx(32 / 0.9376, rel=1e-3)
    assert ev["output_std"] < 1e-4
    assert ev["prior_distance"] <= 0.1
    assert ev["label_prior"] == pytest.approx([0.6, 0.25, 0.15])
    # the inputs carry the labels: the penalty, not the data, kept the model at the prior
    probe = ev["input_probe"]
    assert probe["balanced_accuracy"] > probe["signal_bar"]
    # the chain runs from the penalty to the symptoms it explains
    assert report.chain[0] == ID and "constant-output" in report.chain


def test_message_states_the_numbers_and_the_fix_is_pasteable() -> None:
    f = _report().finding(ID)
    assert "l2(1.0)" in f.title and "'dense'" in f.title
    assert "0.0034" in f.detail and "sqrt(1/8)" in f.detail  # weight RMS vs init scale
    assert "0.54 vs 0.60" in f.detail  # output vs prior
    assert "Class weights would not help" in f.detail
    code = f.fixes[0].code or ""
    ast.parse(code)
    for units in (32, 16):
        assert (
            f"keras.layers.Dense({units}, activation='relu', "
            "kernel_regularizer=keras.regularizers.l2(0.0001))"
        ) in code
    assert "Dense(3, activation='softmax'" in code
    assert not any("--class-weights" in (fx.command or "") for fx in f.fixes)


# ----------------------------------------------------------------- quiet on the controls


@pytest.mark.parametrize(
    ("model", "data"),
    [
        *HEALTHY_FIXTURES,
        ("scn_dead_ok.keras", "scn_dead_ok.npz"),
        ("scn_mediocre.keras", "scn_mediocre.npz"),
        ("reg_moderate.keras", "reg_moderate.npz"),  # l2 1e-3 + dropout 0.5, trains fine
        ("reg_strong_ok.keras", "reg_strong_ok.npz"),  # l2 0.1: strong, and still trains
    ],
)
def test_quiet_on_healthy_and_moderately_regularised_models(model: str, data: str) -> None:
    assert diagnose_fixture(model, data).finding(ID) is None


def test_quiet_where_a_strong_penalty_left_the_kernels_at_work() -> None:
    # l2(0.1) on a fraud model that misses the rare class: a symptom and a strong penalty,
    # but its kernels keep ~0.3x of their scale and the scores still rank (decision-threshold)
    report = diagnose_fixture("fix_rare_binary.keras", "fix_rare_binary.npz")
    assert any(f.kind is Kind.SYMPTOM and f.severity is not Severity.INFO for f in report.findings)
    assert report.finding(ID) is None


def test_only_context_when_the_inputs_carry_no_signal() -> None:
    # the same l2(1.0) collapse on features joined to the wrong labels: no-signal is the root
    report = diagnose_fixture("reg_l2_noise.keras", "reg_l2_noise.npz")
    f = report.finding(ID)
    assert f is not None and f.severity is Severity.INFO and f.fixes == ()
    assert f.evidence["input_probe"]["balanced_accuracy"] <= f.evidence["input_probe"]["signal_bar"]
    assert report.root_cause is not None and report.root_cause.id == "no-signal"


# ----------------------------------------------------------------- thresholds, both sides


def _collapsed_share_max() -> float:
    ev = _report().finding(ID).evidence
    ratio_bar = over_regularization.SPEC.thresholds["max_weight_ratio"].value
    return max(r["penalty_share"] for r in ev["layers"] if r["weight_ratio"] <= ratio_bar)


def test_min_penalty_share_both_sides() -> None:
    share = _collapsed_share_max()
    assert _report(**_override(min_penalty_share=share)).finding(ID) is not None
    assert _report(**_override(min_penalty_share=share * 1.001)).finding(ID) is None


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("max_weight_ratio", "weight_ratio"),
        ("max_output_std", "output_std"),
        ("max_prior_distance", "prior_distance"),
    ],
)
def test_upper_bounds_both_sides(name: str, key: str) -> None:
    at = _report().finding(ID).evidence[key]
    assert _report(**_override(**{name: at})).finding(ID) is not None
    assert _report(**_override(**{name: at * 0.999})).finding(ID) is None


# ----------------------------------------------------------------- the rule on built evidence


def _context(
    *,
    symptoms: bool = True,
    probe: ProbeResult | None = None,
    l1: float = 0.0,
    l2: float = 1.0,
    rms: float = 0.003,
    binary: bool = False,
) -> Context:
    """A collapsed 8 -> 32 model whose output is the prior, without TensorFlow."""
    counts = [280, 120] if binary else [240, 100, 60]
    k = len(counts)
    y = np.repeat(np.arange(k), counts).astype(np.int64)
    prior = np.asarray(counts, np.float64) / sum(counts)
    rng = np.random.default_rng(0)
    if binary:
        probs = np.full((y.size, 1), prior[1]) + rng.normal(0, 1e-5, (y.size, 1))
    else:
        probs = np.tile(prior, (y.size, 1)) + rng.normal(0, 1e-5, (y.size, k))
    pm = Moments.empty(probs.shape[1])
    pm.update(probs)
    pred = np.zeros_like(y)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, pred), 1)
    ev = Evidence(
        n_samples=y.size,
        n_classes=k,
        y_true=y,
        y_pred=pred,
        confusion=conf,
        output=OutputStats("sigmoid" if binary else "softmax", pm, pm),
        inputs=[],
        sample_index=np.arange(y.size),
        sample_probs=probs,
        sample_inputs=[rng.normal(size=(y.size, 8))],
    )
    facts = ModelFacts(
        format="keras",
        n_outputs=probs.shape[1],
        head="sigmoid" if binary else "softmax",
        head_layer="head",
        head_axis_size=probs.shape[1],
        loss=None,
        loss_from_logits=None,
        loss_config=None,
        compiled=False,
        optimizer=None,
        optimizer_iterations=None,
        input_normalizers={},
        input_consumers={},
        layers=(LayerInfo("dense", "Dense", "relu", 32, 8 * 32 + 32),),
        regularizers=(
            RegularizerInfo("dense", "kernel", l1=l1, l2=l2, weight_rms=rms, fan_in=8),
            RegularizerInfo("dropout", "dropout", rate=0.5),
        ),
    )
    exps = Experiments(None, ev)
    exps._cache["probe-inputs"] = probe or ProbeResult(
        "probe-inputs", "probe", 0.95, (0.95,) * k, 1 / k, 0.05, y.size, 8
    )
    ctx = Context(ev, facts, [str(c) for c in range(k)], experiments=exps)
    if symptoms:
        ctx.symptoms = {
            "prediction-collapse": Finding(
                "prediction-collapse", Kind.SYMPTOM, Severity.ERROR, "t", "d", {}
            )
        }
    return ctx


@pytest.mark.unit
def test_built_collapse_fires_and_lists_dropout_as_context_only() -> None:
    [f] = over_regularization.run(_context())
    assert f.severity is Severity.ERROR
    assert f.evidence["dropout"] == [{"layer": "dropout", "rate": 0.5}]
    assert f.evidence["collapsed_layers"] == ["dense"]


@pytest.mark.unit
def test_quiet_without_a_symptom_even_when_collapsed() -> None:
    assert over_regularization.run(_context(symptoms=False)) == []


@pytest.mark.unit
def test_a_probe_at_chance_makes_it_info_and_a_failed_probe_keeps_the_error() -> None:
    chance = ProbeResult("probe-inputs", "probe", 0.34, (0.34,) * 3, 1 / 3, 0.05, 400, 8)
    [f] = over_regularization.run(_context(probe=chance))
    assert f.severity is Severity.INFO and f.fixes == ()
    failed = ProbeResult("probe-inputs", "probe", None, error="no numeric input")
    [f] = over_regularization.run(_context(probe=failed))
    assert f.severity is Severity.ERROR and "could not run" in f.detail


@pytest.mark.unit
def test_a_usual_penalty_is_not_blamed_even_on_shrunk_kernels() -> None:
    # l2=1e-4 x 32 units charges 0.003 nats: kernels near 0 with it (e.g. behind a dead
    # layer, where only the penalty's gradient reaches them) are not its doing
    assert over_regularization.run(_context(l2=1e-4)) == []


@pytest.mark.unit
def test_l1_penalty_charges_by_the_mean_absolute_weight() -> None:
    [f] = over_regularization.run(_context(l1=0.1, l2=0.0))
    row = f.evidence["layers"][0]
    # 0.1 x 32 units x sqrt(8) x sqrt(2/pi)
    assert row["penalty_at_init_nats"] == pytest.approx(0.1 * 32 * 8**0.5 * (2 / np.pi) ** 0.5)
    assert "keras.regularizers.l1(" in (f.fixes[0].code or "")


@pytest.mark.unit
def test_a_one_unit_sigmoid_head_is_compared_with_the_class_1_share() -> None:
    [f] = over_regularization.run(_context(binary=True))
    assert f.evidence["label_prior"] == pytest.approx([0.7, 0.3])
    assert f.evidence["prior_distance"] < 1e-4
