"""One contract test over the registry: every check documents its thresholds, declares valid
causal edges, fires on its worked example, and the README lists exactly the catalogue."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from conftest import FIXTURES, HEALTHY_FIXTURES, diagnose_fixture, run_cli

from kerasdoctor.checks import registry
from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, CheckSpec, Threshold
from kerasdoctor.findings import Finding, Kind, Severity

CHECKS = {c.spec.id: c.spec for c in registry()}
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.unit
def test_ids_and_orders_are_unique() -> None:
    specs = list(CHECKS.values())
    assert len({s.order for s in specs}) == len(specs)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", s.id) for s in specs)


def threshold_problems(spec: CheckSpec) -> list[str]:
    """What the contract rejects in a spec's documentation: a threshold not named where the
    spec says what it measures, a threshold without a reason, a missing summary or fix."""
    problems = []
    for name, t in spec.thresholds.items():
        if name not in spec.measures:
            problems.append(f"{spec.id}: threshold {name} is not explained")
        if len(t.why.strip()) < 20:
            problems.append(f"{spec.id}: threshold {name} has no reason")
    if not (spec.summary and spec.fix and spec.explain()):
        problems.append(f"{spec.id}: no summary, fix or explanation")
    return problems


def edge_problems(spec: CheckSpec, registered: set[str]) -> list[str]:
    """What the contract rejects in a spec's causal edges: a symptom with edges or no group,
    a cause that explains nothing, an edge to an unknown id or to itself, unknown needs."""
    problems = []
    nodes = registered | {PREDICTIONS, OUTPUT}
    if spec.kind is Kind.SYMPTOM:
        if spec.explains or spec.subsumes:
            problems.append(f"{spec.id}: a symptom has no causal edges")
        if spec.group not in (PREDICTIONS, OUTPUT):
            problems.append(f"{spec.id}: unknown symptom group {spec.group}")
    else:
        if not spec.explains:
            problems.append(f"{spec.id}: a cause must explain something")
        bad = (spec.explains | spec.subsumes) - (nodes - {spec.id})
        if bad:
            problems.append(f"{spec.id}: unknown or self edges {sorted(bad)}")
    if not spec.needs <= {"symptoms", "experiments"}:
        problems.append(f"{spec.id}: unknown needs {sorted(spec.needs)}")
    return problems


@pytest.mark.unit
@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_every_threshold_is_named_in_measures_with_a_reason(check_id: str) -> None:
    assert threshold_problems(CHECKS[check_id]) == []


@pytest.mark.unit
@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_causal_edges_point_at_registered_checks(check_id: str) -> None:
    assert edge_problems(CHECKS[check_id], set(CHECKS)) == []


def _cause_with_thresholds() -> CheckSpec:
    """A real registered cause that has thresholds (padding-side when registered)."""
    causes = [s for s in CHECKS.values() if s.kind is Kind.CAUSE and s.thresholds]
    return CHECKS.get("padding-side") or causes[0]


@pytest.mark.unit
def test_contract_rejects_a_cause_whose_edges_are_removed() -> None:
    spec = _cause_with_thresholds()
    assert edge_problems(spec, set(CHECKS)) == []
    cut = dataclasses.replace(spec, explains=frozenset())
    assert edge_problems(cut, set(CHECKS)) == [f"{spec.id}: a cause must explain something"]


@pytest.mark.unit
def test_contract_rejects_a_threshold_whose_reason_is_removed() -> None:
    spec = _cause_with_thresholds()
    assert threshold_problems(spec) == []
    name = next(iter(spec.thresholds))
    blanked = dict(spec.thresholds, **{name: Threshold(spec.thresholds[name].value, "")})
    cut = dataclasses.replace(spec, thresholds=blanked)
    assert threshold_problems(cut) == [f"{spec.id}: threshold {name} has no reason"]


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_fires_on_its_worked_example(check_id: str) -> None:
    spec = CHECKS[check_id]
    assert spec.fires_on, f"{check_id}: declare fires_on (a fixture it fires on)"
    stem, *flags = spec.fires_on
    model = next(p for p in FIXTURES.glob(f"{stem}.*") if p.suffix in (".keras", ".h5"))
    if flags:  # CLI flags (a gate): through the CLI, as a user passes them
        result = run_cli(
            "diagnose", str(model), str(FIXTURES / f"{stem}.npz"), *flags, "--format", "json"
        )
        found = [f["id"] for f in result.json()["findings"]]
    else:  # the session's cached diagnosis
        found = [f.id for f in diagnose_fixture(model.name, f"{stem}.npz").findings]
    assert check_id in found, (check_id, stem)


@pytest.mark.parametrize(("model", "data"), HEALTHY_FIXTURES)
def test_quiet_on_every_healthy_fixture(model: str, data: str) -> None:
    loud = [
        (f.id, f.severity.value)
        for f in diagnose_fixture(model, data).findings
        if f.severity is not Severity.INFO
    ]
    assert loud == []


@pytest.mark.unit
def test_readme_catalogue_is_the_registry() -> None:
    from kerasdoctor.catalogue import readme_with_catalogue

    text = README.read_text()
    assert readme_with_catalogue(text) == text, (
        "regenerate: python -m kerasdoctor.catalogue --readme"
    )
    block = text.split("The catalogue (`kerasdoctor checks`)", 1)[1]
    block = block.split("```text\n", 1)[1].split("```", 1)[0]
    out = run_cli("checks")
    assert out.exit_code == 0
    assert block.strip().splitlines() == out.stdout.strip().splitlines()


@pytest.mark.unit
@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_declared_needs_match_what_the_check_reads(check_id: str) -> None:
    """A check that reads the symptoms or runs experiments says so on its spec, and one that
    declares them uses them: the declaration is what the runner and the docs rely on."""
    import inspect

    from kerasdoctor.checks import get

    check = get(check_id)
    assert check is not None
    source = inspect.getsource(inspect.getmodule(check.run))  # type: ignore[arg-type]
    reads = {
        "experiments": "ctx.experiments" in source,
        "symptoms": any(
            s in source
            for s in ("ctx.symptoms", "prediction_symptoms(", "symptom_ids(", "symptom_list(")
        ),
    }
    assert {k for k, v in reads.items() if v} == set(CHECKS[check_id].needs), check_id


@pytest.mark.unit
def test_every_repairable_cause_has_its_repair_and_back() -> None:
    """A spec that promises `fix --repair` has a repair in fix/repair.py, and a repair there
    belongs to a cause whose spec describes it (diagnose offers it from the spec)."""
    from kerasdoctor.checks import registry
    from kerasdoctor.fix.repair import REPAIRS, UNREPAIRABLE

    promised = {c.spec.id for c in registry() if c.spec.repair}
    assert promised == set(REPAIRS)
    assert not promised & (set(UNREPAIRABLE) - {"single-unit-softmax"})


# ------------------------------------------------ the dense and multi-label diagnoses


def _emitted_ids(module: str) -> set[str]:
    """The ids a module's code passes as the first argument of Finding(...) (a literal)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Finding"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


@pytest.mark.unit
@pytest.mark.parametrize(
    ("module", "tasks"),
    [
        ("kerasdoctor.dense", ("dense",)),
        ("kerasdoctor.multilabel", ("multilabel",)),
        ("kerasdoctor.task_causes", ("dense", "multilabel")),
    ],
)
def test_every_task_finding_is_a_registry_check_declaring_its_task(
    module: str, tasks: tuple[str, ...]
) -> None:
    """A dense or multi-label finding's id is a registry id whose spec declares the task (the
    report lists and ranks exactly those; assemble() raises on any other)."""
    from kerasdoctor.checks import for_task

    emitted = _emitted_ids(module)
    if module == "kerasdoctor.task_causes":  # by spec id, not by literal
        from kerasdoctor import task_causes

        emitted |= set(task_causes.STEPS) | {"chance-level"}
    else:
        assert emitted, f"no Finding(...) literal found in {module}: the scan is broken"
    for task in tasks:
        declared = {c.spec.id for c in for_task(task)}
        assert emitted <= declared, (task, sorted(emitted - declared))


@pytest.mark.unit
@pytest.mark.parametrize("task", ["dense", "multilabel"])
def test_task_checks_are_the_registry_filter_in_a_declared_order(task: str) -> None:
    """What a dense or multi-label report lists (JSON checks, JUnit cases) is the registry
    filtered by the task, each with a unique task_order within its kind."""
    from types import SimpleNamespace

    from kerasdoctor.checks import for_task
    from kerasdoctor.task_report import assemble, task_check_ids

    declared = [sp for sp in CHECKS.values() if task in sp.tasks]
    assert {sp.id for sp in declared} == set(task_check_ids(task))
    for kind in Kind:
        orders = [sp.task_order for sp in declared if sp.kind is kind]
        assert len(set(orders)) == len(orders) and 999 not in orders, (task, kind)
    opts = SimpleNamespace(ignore={"class-imbalance": "why"}, only=None)
    done = assemble(task, [], [], opts)
    assert [o.check_id for o in done.outcomes] == [c.spec.id for c in for_task(task)]
    assert {o.check_id: o.status for o in done.outcomes}["class-imbalance"] == "skipped"


@pytest.mark.unit
def test_a_task_finding_outside_its_registry_checks_is_refused() -> None:
    from types import SimpleNamespace

    from kerasdoctor.task_report import assemble

    opts = SimpleNamespace(ignore={}, only=None)
    stray = Finding("dead-units", Kind.CAUSE, Severity.ERROR, "t", "d", {}, ())
    with pytest.raises(RuntimeError, match="dead-units"):
        assemble("dense", [stray], [], opts)
    wrong_kind = dataclasses.replace(stray, id="prediction-collapse")
    with pytest.raises(RuntimeError, match="prediction-collapse"):
        assemble("multilabel", [wrong_kind], [], opts)


@pytest.mark.parametrize(
    ("stem", "task"), [("dense_unet_collapsed", "dense"), ("ml_collapsed", "multilabel")]
)
def test_task_report_lists_the_registry_checks_of_its_task(stem: str, task: str) -> None:
    from kerasdoctor.checks import for_task

    report = diagnose_fixture(f"{stem}.keras", f"{stem}.npz")
    assert report.metrics.task == task
    assert [o.check_id for o in report.outcomes] == [c.spec.id for c in for_task(task)]
    assert report.findings and {f.id for f in report.findings} <= {
        c.spec.id for c in for_task(task)
    }


@pytest.mark.unit
@pytest.mark.parametrize("spec_id", sorted(CHECKS))
def test_every_epoch_is_declared_within_the_checks_tasks(spec_id: str) -> None:
    """The training callback's per-epoch checks come from the specs (CheckSpec.every_epoch):
    a check runs each epoch only for a task whose diagnosis reports it."""
    spec = CHECKS[spec_id]
    assert spec.every_epoch <= spec.tasks, sorted(spec.every_epoch - spec.tasks)


@pytest.mark.unit
def test_the_callback_runs_each_epoch_what_the_specs_declare() -> None:
    from kerasdoctor.checks import every_epoch
    from kerasdoctor.checks.base import TASKS

    for task in TASKS:
        chosen = every_epoch(task)
        assert chosen == {i for i, sp in CHECKS.items() if task in sp.every_epoch}
        assert "prediction-collapse" in chosen  # the callback's kd_collapsed reads it


@pytest.mark.unit
def test_the_task_causes_found_by_experiment_are_registry_checks_with_a_repair() -> None:
    """Dense and multi-label model-level causes: one list (task_causes.STEPS), keyed by spec
    ids, each reported for those tasks, each with the repair `fix --repair` offers for it."""
    from kerasdoctor.checks.base import DENSE, MULTILABEL
    from kerasdoctor.fix.task_repair import MODEL_LEVEL
    from kerasdoctor.task_causes import REPAIR_HOW, STEPS

    assert tuple(STEPS) == MODEL_LEVEL and set(REPAIR_HOW) == set(STEPS)
    for cid in STEPS:
        assert {DENSE, MULTILABEL} <= CHECKS[cid].tasks and CHECKS[cid].repair, cid
