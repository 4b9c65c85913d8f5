"""Ranking: symptoms first, then causes, the most likely root cause first, with its chain.

Causes form chains (unnormalised inputs -> dead ReLUs -> constant output -> collapse). A cause
is a root candidate when no other cause present (warning or error) explains it; the upstream
end of a chain is the one to fix. Root candidates are ordered by severity, then by how
directly the defect forces the output (TIER: a one-unit softmax or NaN weights decide the
output by themselves, statistics of the data only make failure likely), then by how many of
the observed symptoms they explain. The chain is the root followed by the causes and
symptoms it explains, upstream first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from kerasdoctor.findings import Finding, Kind, Severity

# The symptoms, in causal order: an output that does not move makes one class win everywhere,
# which leaves the other classes unpredicted, which is the extreme of low recall.
SYMPTOM_ORDER = ("constant-output", "prediction-collapse", "missing-classes", "low-recall")
# What "the predictions go wrong" covers: a cause that explains it explains every one of
# these (a user's quality gate included).
_PREDICTIONS = frozenset({"prediction-collapse", "missing-classes", "low-recall", "quality-gate"})
_ALL_SYMPTOMS = _PREDICTIONS | {"constant-output"}

# upstream -> what it can produce, derived from the mechanisms. Both causes and symptoms are
# nodes; `explains` follows the edges transitively.
EXPLAINS: dict[str, frozenset[str]] = {
    # NaN/Inf weights make every unit they feed NaN: a forced, constant answer, and NaN
    # activations never count as "fired", so every later ReLU looks dead.
    "nonfinite-weights": frozenset(
        {"dead-units", "batchnorm-statistics", "decision-threshold"} | _ALL_SYMPTOMS
    ),
    # NaN/Inf inputs give NaN rows (argmax 0) and poison every statistic taken on the data.
    "nonfinite-inputs": frozenset(
        {
            "dead-units",
            "batchnorm-statistics",
            "input-scale",
            "input-scale-mismatch",
            "decision-threshold",
        }
        | _ALL_SYMPTOMS
    ),
    # softmax over one unit is 1.0 everywhere and passes no gradient: the head, the loss
    # pairing and the unit count all look wrong because of it, and nothing upstream learns.
    "single-unit-softmax": frozenset(
        {
            "output-activation",
            "loss-mismatch",
            "output-units-mismatch",
            "untrained-model",
            "decision-threshold",
        }
        | _ALL_SYMPTOMS
    ),
    # too few units: the loss was chosen for the head it has (e.g. BCE for one unit).
    "output-units-mismatch": frozenset({"loss-mismatch"} | _PREDICTIONS),
    # a loss with no gradient (CCE on one unit) leaves the weights at their initial values.
    "loss-mismatch": frozenset({"untrained-model"} | _PREDICTIONS),
    # a ReLU/linear head under a probability loss loses its gradient where it is clipped:
    # dead output units, classes never predicted, at worst a constant (all-zero) output.
    "output-activation": frozenset({"dead-units"} | _ALL_SYMPTOMS),
    # random weights: BatchNorm still at 0/1, random (sometimes dead, often flat) outputs.
    "untrained-model": frozenset({"dead-units", "batchnorm-statistics"} | _ALL_SYMPTOMS),
    # data preprocessed unlike the training data: the scale checks see its effect, BatchNorm
    # statistics no longer fit, pre-activations leave the range the weights were trained on.
    "preprocessing-mismatch": frozenset(
        {
            "input-scale",
            "input-scale-mismatch",
            "batchnorm-statistics",
            "dead-units",
            "decision-threshold",
        }
        | _ALL_SYMPTOMS
    ),
    "input-scale-mismatch": frozenset(
        {"input-scale", "dead-units", "batchnorm-statistics"} | _ALL_SYMPTOMS
    ),
    # unscaled inputs throw pre-activations far from 0: ReLUs die, units saturate.
    "input-scale": frozenset({"dead-units", "batchnorm-statistics"} | _ALL_SYMPTOMS),
    # wrong normalisation shifts every later pre-activation, which can silence ReLUs.
    "batchnorm-statistics": frozenset({"dead-units"} | _ALL_SYMPTOMS),
    # a dead layer outputs zeros: everything after it is constant.
    "dead-units": _ALL_SYMPTOMS,
    # a well-ranking model cut at the wrong place drops one class, but its output moves.
    "decision-threshold": _PREDICTIONS,
    # the label prior drops the rare classes; the output still moves with the input.
    "class-imbalance": _PREDICTIONS,
    "label-permutation": _PREDICTIONS,
    # validation_split takes the tail of a class-sorted file: those classes were never seen.
    "sorted-labels": frozenset({"missing-classes", "low-recall", "prediction-collapse"}),
}

# Not causal, but the same harm located more precisely, so the subsumed finding is not a root:
# when a binary model ranks well (decision-threshold fires), the imbalance's damage is entirely
# in where the cut sits; moving it removes the symptom without retraining. The imbalance stays
# in the list as the reason the cut drifted.
SUBSUMES: dict[str, frozenset[str]] = {
    "decision-threshold": frozenset({"class-imbalance"}),
}

# How directly a defect forces the output, lower first.
TIER: dict[str, int] = {
    "nonfinite-weights": 0,
    "single-unit-softmax": 0,
    "nonfinite-inputs": 0,
    "output-units-mismatch": 1,
    "loss-mismatch": 1,
    "untrained-model": 1,
    "label-permutation": 1,
    "output-activation": 2,
    "preprocessing-mismatch": 2,
    "input-scale-mismatch": 3,
    "input-scale": 3,
    "batchnorm-statistics": 4,
    "dead-units": 5,
    "decision-threshold": 6,
    "class-imbalance": 7,
    "sorted-labels": 8,
}
DEFAULT_TIER = 5  # a cause this module does not know yet: between the model and the data


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
    return downstream in _reach(upstream, [EXPLAINS])


def _outranks(upstream: str, downstream: str) -> bool:
    """Whether `upstream` being present stops `downstream` from being a root."""
    return downstream in _reach(upstream, [EXPLAINS, SUBSUMES])


def _explains_symptom(cause: str, symptom: str) -> bool:
    if symptom not in _ALL_SYMPTOMS and symptom not in SYMPTOM_ORDER:
        # a symptom this module does not know (a user's gate...): any wrong prediction
        symptom = "low-recall"
    return explains(cause, symptom)


def rank(findings: Sequence[Finding]) -> tuple[list[Finding], list[str]]:
    """Order findings per the contract and return the causal chain of the root cause."""
    position = {id(f): i for i, f in enumerate(findings)}  # stable tie-break: check order
    symptoms = [f for f in findings if f.kind is Kind.SYMPTOM]
    causes = [f for f in findings if f.kind is Kind.CAUSE]
    active = [f for f in causes if f.severity is not Severity.INFO]
    active_ids = {f.id for f in active}
    seen_symptoms = [f.id for f in symptoms if f.severity is not Severity.INFO]

    def explained(f: Finding) -> bool:
        return any(_outranks(other, f.id) for other in active_ids if other != f.id)

    roots = [f for f in active if not explained(f)]
    if not roots and active:  # a cycle among the findings: judge them all as roots
        roots = list(active)
    root_ids = {id(f) for f in roots}

    def coverage(f: Finding) -> int:
        return sum(_explains_symptom(f.id, s) for s in seen_symptoms)

    def root_key(f: Finding) -> tuple[int, int, int, int, int]:
        tier = TIER.get(f.id, DEFAULT_TIER)
        # when the predictions show symptoms, a cause that explains none of them is a weaker
        # candidate, unless it forces the output by itself (tier 0)
        silent = int(bool(seen_symptoms) and coverage(f) == 0 and tier > 0)
        return (-f.severity.rank, silent, tier, -coverage(f), position[id(f)])

    def other_key(f: Finding) -> tuple[int, int, int]:
        return (-f.severity.rank, TIER.get(f.id, DEFAULT_TIER), position[id(f)])

    ordered_roots = sorted(roots, key=root_key)
    downstream = sorted((f for f in active if id(f) not in root_ids), key=other_key)
    context = sorted((f for f in causes if f.severity is Severity.INFO), key=other_key)
    symptoms.sort(key=lambda f: (-f.severity.rank, position[id(f)]))
    ordered_causes = ordered_roots + downstream + context
    chain = _chain(ordered_roots[0], active, symptoms) if ordered_roots else []
    return symptoms + ordered_causes, chain


def _symptom_rank(symptom_id: str) -> int:
    return SYMPTOM_ORDER.index(symptom_id) if symptom_id in SYMPTOM_ORDER else len(SYMPTOM_ORDER)


def _chain(root: Finding, active: list[Finding], symptoms: list[Finding]) -> list[str]:
    """The root, the causes it explains (nearest first), then the symptoms it explains."""
    dist = _reach(root.id, [EXPLAINS])
    downstream = sorted(
        (f.id for f in active if f.id != root.id and f.id in dist),
        key=lambda cid: (dist[cid], TIER.get(cid, DEFAULT_TIER)),
    )
    shown = [
        f.id
        for f in symptoms
        if f.severity is not Severity.INFO and _explains_symptom(root.id, f.id)
    ]
    shown.sort(key=_symptom_rank)
    chain = [root.id]
    for cid in downstream + shown:
        if cid not in chain:
            chain.append(cid)
    return chain
