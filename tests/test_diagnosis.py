"""The diagnosis: the right root cause first on every sick fixture, causal chains upstream
first, and the ranking rules on hand-made findings (including the data-side ids)."""

from __future__ import annotations

import pytest
from conftest import HEALTHY_FIXTURES, fixture_path, run_cli

from kerasdoctor.diagnosis import explains, graph, rank
from kerasdoctor.findings import Finding, Kind, Severity

# (model, data, the cause that must come first)
SICK = [
    ("model_single_softmax.keras", "model_single_softmax.npz", "single-unit-softmax"),
    ("model_softmax_layer.keras", "model_softmax_layer.npz", "single-unit-softmax"),
    ("model_relu_head.keras", "model_relu_head.npz", "output-activation"),
    ("model_bce_multiclass.keras", "model_bce_multiclass.npz", "output-units-mismatch"),
    ("model_cce_one_unit.keras", "model_cce_one_unit.npz", "loss-mismatch"),
    ("model_units_fewer.keras", "model_units_fewer.npz", "output-units-mismatch"),
    ("model_nan_weights.keras", "model_nan_weights.npz", "nonfinite-weights"),
    ("model_dead_relu.keras", "model_dead_relu.npz", "dead-units"),
    ("model_batchnorm.keras", "model_batchnorm.npz", "batchnorm-statistics"),
    ("model_untrained.keras", "model_untrained.npz", "untrained-model"),
    ("model_threshold.keras", "model_threshold.npz", "decision-threshold"),
]
HEALTHY = [
    *HEALTHY_FIXTURES,
    # latent defects that Keras 3 on TensorFlow trains around: info only
    ("model_logits_softmax.keras", "model_logits_softmax.npz"),
    ("model_sigmoid_multi.keras", "model_sigmoid_multi.npz"),
]


def _json(model: str, data: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = run_cli("diagnose", fixture_path(model), fixture_path(data), "--format", "json")
    return r.exit_code, r.json()


@pytest.mark.parametrize(("model", "data", "root"), SICK)
def test_first_cause_in_json_is_the_right_one(model: str, data: str, root: str) -> None:
    code, report = _json(model, data)
    assert code == 1
    kinds = [f["kind"] for f in report["findings"]]
    assert kinds == sorted(kinds, key=lambda k: k != "symptom"), "symptoms come first"
    causes = [f for f in report["findings"] if f["kind"] == "cause"]
    assert causes[0]["id"] == root, [(c["id"], c["severity"]) for c in causes]
    assert causes[0]["severity"] == "error"
    assert report["root_cause"] == root
    assert report["chain"][0] == root
    assert report["errors"] == []


@pytest.mark.parametrize(("model", "data"), HEALTHY)
def test_healthy_fixtures_get_no_warning(model: str, data: str) -> None:
    code, report = _json(model, data)
    assert code == 0
    loud = [(f["id"], f["severity"]) for f in report["findings"] if f["severity"] != "info"]
    assert loud == []
    assert report["verdict"] == "healthy" and report["root_cause"] is None


def test_dead_relu_chain_reaches_the_collapse() -> None:
    _, report = _json("model_dead_relu.keras", "model_dead_relu.npz")
    assert report["chain"] == [
        "dead-units",
        "constant-output",
        "prediction-collapse",
        "chance-level",  # one class for everything: exactly chance
        "missing-classes",
    ]


def test_data_side_chain_scale_kills_relus_then_collapse() -> None:
    # the data-side fixture: features in the thousands, no normalisation, dead ReLUs
    _, report = _json("data_tabular_thousands.keras", "data_tabular_thousands.npz")
    assert report["root_cause"] == "input-scale"
    chain = report["chain"]
    assert chain.index("input-scale") < chain.index("dead-units") < chain.index("constant-output")


# ----------------------------------------------------------------- ranking rules


def f(fid: str, severity: str = "error", kind: Kind = Kind.CAUSE) -> Finding:
    return Finding(fid, kind, Severity(severity), fid, "", {}, ())


def s(fid: str, severity: str = "error") -> Finding:
    return f(fid, severity, Kind.SYMPTOM)


def ids(findings: list[Finding]) -> list[str]:
    return [x.id for x in findings]


def causes_of(findings: list[Finding]) -> list[str]:
    return [x.id for x in findings if x.kind is Kind.CAUSE]


@pytest.mark.unit
def test_upstream_end_of_the_chain_is_the_root() -> None:
    found = [
        s("prediction-collapse"),
        s("constant-output"),
        f("dead-units"),
        f("input-scale", "warning"),
    ]
    ordered, chain = rank(found)
    assert causes_of(ordered)[0] == "input-scale"  # even as a warning beside an error
    assert chain == ["input-scale", "dead-units", "constant-output", "prediction-collapse"]
    assert ids(ordered)[:2] == ["prediction-collapse", "constant-output"]  # symptoms first


@pytest.mark.unit
def test_a_task_report_is_ranked_by_the_same_rules_in_its_own_order() -> None:
    """Dense and multi-label findings go through rank() with the task's order (spec
    task_order): it places equals and the chain's symptoms (missing classes before chance
    level there, after it in the single-label graph); the edges still pick the root."""
    from kerasdoctor.task_report import task_check_ids

    found = [
        f("class-imbalance", "info"),
        f("decision-threshold"),
        f("preprocessing-mismatch"),
        s("chance-level"),
        s("missing-classes"),
        s("prediction-collapse"),
    ]
    ordered, chain = rank(found, task_check_ids("dense"))
    assert ids(ordered) == [
        "prediction-collapse",
        "missing-classes",
        "chance-level",
        "preprocessing-mismatch",  # explains a threshold that does not fit: the root
        "decision-threshold",
        "class-imbalance",
    ]
    assert chain == [
        "preprocessing-mismatch",
        "decision-threshold",
        "prediction-collapse",
        "missing-classes",
        "chance-level",
    ]
    _, single = rank([*found[:3], *found[:2:-1]])
    assert single[-2:] == ["chance-level", "missing-classes"]


@pytest.mark.unit
def test_dead_units_are_root_when_nothing_upstream_explains_them() -> None:
    ordered, chain = rank([s("constant-output"), f("dead-units"), f("class-imbalance", "info")])
    assert causes_of(ordered) == ["dead-units", "class-imbalance"]
    assert chain == ["dead-units", "constant-output"]


@pytest.mark.unit
@pytest.mark.parametrize(
    "upstream", ["input-scale-mismatch", "nonfinite-weights", "output-activation", "input-scale"]
)
def test_dead_units_never_root_beside_an_upstream_cause(upstream: str) -> None:
    ordered, _ = rank([s("constant-output"), f("dead-units"), f(upstream, "warning")])
    assert causes_of(ordered)[0] == upstream


@pytest.mark.unit
def test_a_defect_forcing_the_output_outranks_data_statistics() -> None:
    found = [
        s("prediction-collapse"),
        f("class-imbalance"),
        f("input-scale"),
        f("single-unit-softmax"),
    ]
    ordered, chain = rank(found)
    assert causes_of(ordered)[0] == "single-unit-softmax"
    assert "class-imbalance" not in chain
    found = [s("missing-classes"), f("class-imbalance"), f("nonfinite-weights")]
    assert causes_of(rank(found)[0])[0] == "nonfinite-weights"


@pytest.mark.unit
def test_preprocessing_mismatch_outranks_the_generic_scale_warning() -> None:
    found = [s("constant-output"), f("input-scale"), f("preprocessing-mismatch", "warning")]
    ordered, chain = rank(found)
    assert causes_of(ordered) == ["preprocessing-mismatch", "input-scale"]
    assert chain[:2] == ["preprocessing-mismatch", "input-scale"]


@pytest.mark.unit
def test_imbalance_is_root_only_when_it_is_more_than_context() -> None:
    # the data-side check reports imbalance as info when the dropped classes are not the
    # rare ones; info never leads
    ordered, chain = rank([s("missing-classes"), f("class-imbalance", "info"), f("dead-units")])
    assert causes_of(ordered)[0] == "dead-units"
    ordered, chain = rank([s("missing-classes"), f("class-imbalance")])
    assert chain == ["class-imbalance", "missing-classes"]


@pytest.mark.unit
def test_a_well_ranking_binary_model_blames_the_cut_not_the_imbalance() -> None:
    found = [s("prediction-collapse"), f("class-imbalance"), f("decision-threshold")]
    ordered, chain = rank(found)
    assert causes_of(ordered) == ["decision-threshold", "class-imbalance"]
    assert chain == ["decision-threshold", "prediction-collapse"]  # subsumed, not caused


@pytest.mark.unit
def test_a_cause_that_explains_no_symptom_yields_to_one_that_does() -> None:
    # sorted-labels cannot make the output constant; dead units can
    found = [s("constant-output"), f("sorted-labels"), f("dead-units")]
    assert causes_of(rank(found)[0])[0] == "dead-units"


@pytest.mark.unit
def test_severity_decides_between_independent_roots() -> None:
    found = [s("low-recall", "warning"), f("output-activation", "warning"), f("class-imbalance")]
    assert causes_of(rank(found)[0])[0] == "class-imbalance"


@pytest.mark.unit
def test_unknown_ids_are_ranked_not_dropped() -> None:
    found = [s("quality-gate"), s("some-new-symptom"), f("some-new-cause"), f("class-imbalance")]
    ordered, chain = rank(found)
    assert sorted(ids(ordered)) == sorted(x.id for x in found)
    assert chain[0] in {"some-new-cause", "class-imbalance"}
    assert "quality-gate" in chain  # every cause that explains wrong predictions explains it


@pytest.mark.unit
def test_no_active_cause_means_no_chain() -> None:
    ordered, chain = rank([s("low-recall", "warning"), f("class-imbalance", "info")])
    assert chain == [] and ids(ordered) == ["low-recall", "class-imbalance"]


@pytest.mark.unit
def test_the_causal_graph_is_acyclic_and_tiered() -> None:
    g = graph()
    for node in set(g.explains) | set(g.subsumes):
        assert not explains(node, node), node
    for node in g.explains:
        assert node in g.tier, node
    # the chain of the issue: scale -> dead units -> constant output -> collapse
    assert explains("input-scale", "dead-units") and explains("dead-units", "constant-output")
    assert explains("constant-output", "prediction-collapse") is False  # symptoms are leaves
    assert explains("input-scale", "prediction-collapse")


# -------------------------------------------------- scenarios trained as users train them
# fixtures/recipes_scenarios.py: (stem, the first cause, whether it carries a measured cure)
SCENARIOS = [
    ("scn_bn_short", "batchnorm-statistics", True),  # 31% at inference, BN re-est. ~99%
    ("scn_resnet_raw", "batchnorm-statistics", True),  # raw pixels, but /255 alone fails
    ("scn_norm_double", "preprocessing-mismatch", True),  # standardised twice
    ("scn_bgr", "preprocessing-mismatch", True),  # BGR fed to an RGB model
    ("scn_constant_minority", "dead-units", False),  # a dead last hidden layer
    ("scn_lr_high", "dead-units", False),  # Adam at 0.1, 94% of a layer dead
    ("scn_noise_blog", "no-signal", False),  # 500/400/50 images of pure noise
    ("scn_shuffled", "no-signal", False),  # images and labels shuffled apart
    ("scn_l2_strong", "over-regularization", False),  # l2(1.0): the output is the prior
    ("scn_tokens_unfit", "degenerate-inputs", False),  # tokenizer re-created, never fit
]


@pytest.mark.parametrize(("stem", "root", "measured"), SCENARIOS)
def test_scenario_first_cause_is_the_right_one(stem: str, root: str, measured: bool) -> None:
    from conftest import diagnose_fixture

    report = diagnose_fixture(f"{stem}.keras", f"{stem}.npz").to_dict()
    assert report["verdict"] == "sick"
    first = next(f for f in report["findings"] if f["kind"] == "cause")
    assert first["id"] == root, [(f["id"], f["severity"]) for f in report["findings"]]
    if measured:  # the headline carries the experiment
        exp = first["evidence"]["experiment"]
        assert exp["balanced_accuracy_after"] - exp["balanced_accuracy_before"] > 0.3
        assert first["evidence"]["cured"] is True
        assert "->" in first["title"] or "to" in first["title"]


def _all_pairs() -> list[tuple[str, str]]:
    from conftest import single_label_models

    return [(m.name, m.with_suffix(".npz").name) for m in single_label_models()]


@pytest.mark.parametrize(("model", "data"), _all_pairs())
def test_class_weights_only_under_imbalance_as_a_cause(model: str, data: str) -> None:
    """Class weights appear only in a class-imbalance finding above info, and only when the
    root cause is the imbalance or a cause that locates it more precisely (a decision
    threshold shifted by the prior, whose cut is the post-hoc cure)."""
    from conftest import diagnose_fixture

    report = diagnose_fixture(model, data)
    root = report.root_cause
    for f in report.findings:
        for fx in f.fixes:
            if "--class-weights" in (fx.command or "") or "class_weight" in (fx.code or ""):
                assert f.id == "class-imbalance" and f.severity is not Severity.INFO, f.id
                assert root is not None and (
                    root.id == "class-imbalance"
                    or explains(root.id, "class-imbalance")
                    or "class-imbalance" in graph().subsumes.get(root.id, frozenset())
                ), root.id
