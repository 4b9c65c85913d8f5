"""Ranking: symptoms first, then causes, the most likely root cause first, with its chain.

Causes form chains (unnormalised inputs -> dead ReLUs -> constant output -> collapse). A cause
is a root candidate when no other cause present (warning or error) explains it; the upstream
end of a chain is the one to fix, unless a downstream cause's cure was measured to restore
the model and the upstream one's was not: a measurement outranks a suspicion. Root candidates
are ordered by severity, then causes with a measured cure by its effect, then by how directly
the defect forces the output (each spec's tier: a one-unit softmax or NaN weights decide the
output by themselves, statistics of the data only make failure likely), then by how many of
the observed symptoms they explain. The edges and tiers are declared on the check specs.
The chain is the root followed by the causes and symptoms it explains, upstream first.

Dense and multi-label reports are ranked by the same rules, over the checks their specs declare
for the task, with the task's order (spec.task_order) in place of the catalogue order where
equals are placed: their findings are not produced in catalogue order by registry runs, and
their reports list missing classes before chance level.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kerasdoctor.findings import Finding, Kind, Severity


@dataclass(frozen=True)
class Graph:
    """The causal graph and ranking tiers, read from the check specs of the registry."""

    explains: dict[str, frozenset[str]]
    subsumes: dict[str, frozenset[str]]
    tier: dict[str, int]
    symptom_order: tuple[str, ...]  # causal order: the output's symptoms first


@lru_cache(maxsize=1)
def graph() -> Graph:
    from kerasdoctor.checks import registry
    from kerasdoctor.checks.base import OUTPUT, PREDICTIONS

    specs = [c.spec for c in registry()]
    groups: dict[str, set[str]] = {PREDICTIONS: set(), OUTPUT: set()}
    for sp in specs:
        if sp.kind is Kind.SYMPTOM:
            groups.setdefault(sp.group, set()).add(sp.id)
    explains_: dict[str, frozenset[str]] = {}
    for sp in specs:
        if sp.kind is Kind.CAUSE and sp.explains:
            ids: set[str] = set()
            for node in sp.explains:
                ids |= groups.get(node, {node})
            explains_[sp.id] = frozenset(ids)
    symptoms = sorted(
        (sp for sp in specs if sp.kind is Kind.SYMPTOM),
        key=lambda sp: (sp.group != OUTPUT, sp.order),
    )
    return Graph(
        explains=explains_,
        subsumes={sp.id: sp.subsumes for sp in specs if sp.subsumes},
        tier={sp.id: sp.tier for sp in specs if sp.kind is Kind.CAUSE},
        symptom_order=tuple(sp.id for sp in symptoms),
    )


DEFAULT_TIER = 5  # a cause this module does not know: between the model and the data


def _reach(start: str, graphs: Iterable[dict[str, frozenset[str]]]) -> dict[str, int]:
    """Everything reachable from `start`, with its distance in edges."""
    graphs = list(graphs)
    dist: dict[str, int] = {}
    frontier: deque[tuple[str, int]] = deque([(start, 0)])
    while frontier:
        node, d = frontier.popleft()
        for g in graphs:
            for nxt in g.get(node, frozenset()):
                if nxt != start and nxt not in dist:
                    dist[nxt] = d + 1
                    frontier.append((nxt, d + 1))
    return dist


def explains(upstream: str, downstream: str) -> bool:
    """Whether `upstream` explains `downstream`, directly or through a chain."""
    return downstream in _reach(upstream, [graph().explains])


def _outranks(upstream: str, downstream: str) -> bool:
    """Whether `upstream` being present stops `downstream` from being a root."""
    return downstream in _reach(upstream, [graph().explains, graph().subsumes])


def _explains_symptom(cause: str, symptom: str) -> bool:
    if symptom not in graph().symptom_order:
        # a symptom this module does not know: any wrong prediction
        symptom = "low-recall"
    return explains(cause, symptom)


def measured_gain(f: Finding) -> float | None:
    """The balanced-accuracy gain of a cause's cure, when its experiment restored the model.

    A cause check records `evidence["experiment"]` (the contract's object) and sets
    `evidence["cured"]` when the cure passed its restoring bar; other experiments are context.
    """
    exp: Any = f.evidence.get("experiment") if isinstance(f.evidence, Mapping) else None
    if not f.evidence.get("cured") or not isinstance(exp, Mapping):
        return None
    before, after = exp.get("balanced_accuracy_before"), exp.get("balanced_accuracy_after")
    if before is None or after is None:
        return None
    return float(after) - float(before)


def rank(
    findings: Sequence[Finding], order: Sequence[str] | None = None
) -> tuple[list[Finding], list[str]]:
    """Order findings per the contract and return the causal chain of the root cause.

    `order`: the report's check ids in order, when the findings do not come in it (a dense or
    multi-label report: checks.for_task); it breaks ties and orders the chain's symptoms. By
    default the findings' own order (the runner's, the catalogue's) breaks ties and the chain
    follows the graph's symptom order."""
    if order is not None:
        at = {cid: i for i, cid in enumerate(order)}
        findings = sorted(findings, key=lambda f: at.get(f.id, len(at)))  # stable
    position = {id(f): i for i, f in enumerate(findings)}  # stable tie-break: check order
    symptoms = [f for f in findings if f.kind is Kind.SYMPTOM]
    causes = [f for f in findings if f.kind is Kind.CAUSE]
    active = [f for f in causes if f.severity is not Severity.INFO]
    active_ids = {f.id for f in active}
    seen_symptoms = [f.id for f in symptoms if f.severity is not Severity.INFO]

    gains = {f.id: measured_gain(f) for f in active}

    def explained(f: Finding) -> bool:
        # a cause whose cure restores the model is not explained away by one whose cure was
        # not shown to, or was shown to restore less: the measurement outranks the suspicion
        mine = gains[f.id]

        def measured_less(other: str) -> bool:
            theirs = gains[other]
            return mine is not None and (theirs is None or theirs < mine)

        return any(
            _outranks(other, f.id)
            for other in active_ids
            if other != f.id and not measured_less(other)
        )

    roots = [f for f in active if not explained(f)]
    if not roots and active:  # a cycle among the findings: judge them all as roots
        roots = list(active)
    root_ids = {id(f) for f in roots}

    def coverage(f: Finding) -> int:
        return sum(_explains_symptom(f.id, s) for s in seen_symptoms)

    tiers = graph().tier

    def root_key(f: Finding) -> tuple[int, int, float, int, int, int, int]:
        tier = tiers.get(f.id, DEFAULT_TIER)
        # when the predictions show symptoms, a cause that explains none of them is a weaker
        # candidate, unless it forces the output by itself (tier 0)
        silent = int(bool(seen_symptoms) and coverage(f) == 0 and tier > 0)
        gain = gains[f.id]
        # causes with a measured cure first, by measured effect; then suspicions by tier
        return (
            -f.severity.rank,
            int(gain is None),
            -(gain or 0.0),
            silent,
            tier,
            -coverage(f),
            position[id(f)],
        )

    def other_key(f: Finding) -> tuple[int, int, int]:
        return (-f.severity.rank, tiers.get(f.id, DEFAULT_TIER), position[id(f)])

    ordered_roots = sorted(roots, key=root_key)
    downstream = sorted((f for f in active if id(f) not in root_ids), key=other_key)
    context = sorted((f for f in causes if f.severity is Severity.INFO), key=other_key)
    symptoms.sort(key=lambda f: (-f.severity.rank, position[id(f)]))
    ordered_causes = ordered_roots + downstream + context
    chain = (
        _chain(ordered_roots[0], active, symptoms, order or graph().symptom_order)
        if ordered_roots
        else []
    )
    return symptoms + ordered_causes, chain


def _chain(
    root: Finding, active: list[Finding], symptoms: list[Finding], order: Sequence[str]
) -> list[str]:
    """The root, the causes it explains (nearest first), then the symptoms it explains."""
    dist = _reach(root.id, [graph().explains])
    downstream = sorted(
        (f.id for f in active if f.id != root.id and f.id in dist),
        key=lambda cid: (dist[cid], graph().tier.get(cid, DEFAULT_TIER)),
    )
    shown = [
        f.id
        for f in symptoms
        if f.severity is not Severity.INFO and _explains_symptom(root.id, f.id)
    ]
    shown.sort(key=lambda sid: order.index(sid) if sid in order else len(order))
    chain = [root.id]
    for cid in downstream + shown:
        if cid not in chain:
            chain.append(cid)
    return chain
