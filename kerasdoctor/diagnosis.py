"""Ranking: symptoms first, then causes, the most likely root cause first, with its chain.

A cause is a root when no other cause present explains it. Roots are ordered by severity,
then by how directly the defect forces the output (TIER); the chain is the root followed by
the downstream causes and symptoms it explains.
"""

from __future__ import annotations

from collections.abc import Sequence

from kerasdoctor.findings import Finding, Kind

# upstream -> the findings it can produce. Derived from the mechanisms: e.g. unscaled inputs
# drive pre-activations far from zero, so ReLUs die, so the output stops depending on the input.
EXPLAINS: dict[str, frozenset[str]] = {
    "nonfinite-inputs": frozenset(
        {
            "dead-units",
            "constant-output",
            "batchnorm-statistics",
            "input-scale",
            "input-scale-mismatch",
            "decision-threshold",
        }
    ),
    "nonfinite-weights": frozenset(
        {
            "dead-units",
            "constant-output",
            "batchnorm-statistics",
            "decision-threshold",
            "untrained-model",
        }
    ),
    "single-unit-softmax": frozenset(
        {
            "constant-output",
            "output-activation",
            "loss-mismatch",
            "decision-threshold",
            "output-units-mismatch",
        }
    ),
    "output-units-mismatch": frozenset({"loss-mismatch", "decision-threshold"}),
    "preprocessing-mismatch": frozenset(
        {
            "input-scale",
            "input-scale-mismatch",
            "batchnorm-statistics",
            "dead-units",
            "constant-output",
            "decision-threshold",
        }
    ),
    "input-scale": frozenset({"dead-units", "constant-output", "batchnorm-statistics"}),
    "input-scale-mismatch": frozenset({"dead-units", "constant-output", "input-scale"}),
    "dead-units": frozenset({"constant-output"}),
    "untrained-model": frozenset({"constant-output", "decision-threshold"}),
    "class-imbalance": frozenset({"decision-threshold"}),
    "label-permutation": frozenset(),
}

# How directly a defect forces the output, lower first: a broken head or NaN weights decide
# the output by themselves; data statistics only make failure likely.
TIER: dict[str, int] = {
    "nonfinite-weights": 0,
    "single-unit-softmax": 0,
    "nonfinite-inputs": 0,
    "label-permutation": 0,
    "output-units-mismatch": 0,
    "loss-mismatch": 1,
    "output-activation": 1,
    "preprocessing-mismatch": 1,
    "untrained-model": 1,
    "input-scale-mismatch": 2,
    "input-scale": 2,
    "batchnorm-statistics": 3,
    "dead-units": 3,
    "class-imbalance": 4,
    "decision-threshold": 4,
    "sorted-labels": 5,
}


def explains(upstream: str, downstream: str) -> bool:
    """Whether `upstream` explains `downstream`, directly or through a chain."""
    seen: set[str] = set()
    frontier = [upstream]
    while frontier:
        node = frontier.pop()
        for nxt in EXPLAINS.get(node, frozenset()):
            if nxt == downstream:
                return True
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def rank(findings: Sequence[Finding]) -> tuple[list[Finding], list[str]]:
    """Order findings per the contract and return the causal chain of the root cause."""
    symptoms = [f for f in findings if f.kind is Kind.SYMPTOM]
    causes = [f for f in findings if f.kind is Kind.CAUSE]
    ids = {f.id for f in causes if f.severity.value != "info"}

    def is_root(f: Finding) -> bool:
        return not any(explains(other, f.id) for other in ids if other != f.id)

    position = {id(f): i for i, f in enumerate(findings)}  # stable tie-break: check order

    def key(f: Finding) -> tuple[int, int, int, int]:
        return (0 if is_root(f) else 1, -f.severity.rank, TIER.get(f.id, 3), position[id(f)])

    symptoms.sort(key=lambda f: (-f.severity.rank, position[id(f)]))
    causes.sort(key=key)
    chain: list[str] = []
    root = next((f for f in causes if f.severity.value != "info"), None)
    if root is not None:
        chain.append(root.id)
        chain += [f.id for f in causes if f.id != root.id and explains(root.id, f.id)]
        chain += [f.id for f in symptoms if f.id not in chain]
    return symptoms + causes, chain
