"""The architecture's rules, read from the source (issue 17): no check module reaches Keras,
TensorFlow or the live model's graph, and Keras-private graph attributes are read in one
adapter module only (kerasdoctor/keras_graph.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kerasdoctor"
HEAVY = ("keras", "tensorflow", "tf_keras", "jax")
# modules that load Keras for the rest (a check must go through the experiment service)
KERAS_GATES = ("kerasdoctor._keras", "kerasdoctor.predictor_graph", "kerasdoctor.keras_graph",
               "kerasdoctor.load", "kerasdoctor.predictor")
PRIVATE_GRAPH = ("_keras_history", "_inbound_nodes", "_outbound_nodes")


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.unit
@pytest.mark.parametrize("path", sorted((PACKAGE / "checks").glob("*.py")), ids=lambda p: p.name)
def test_no_check_module_imports_keras(path: Path) -> None:
    names = imported(ast.parse(path.read_text(encoding="utf-8")))
    bad = sorted(n for n in names
                 if n.split(".")[0] in HEAVY or n in KERAS_GATES or n.startswith("kerasdoctor.fix"))
    assert not bad, f"{path.name} imports {bad}: a check reads evidence and experiment results"


@pytest.mark.unit
def test_private_graph_attributes_live_in_one_adapter() -> None:
    found = []
    for path in sources():
        if path.name == "keras_graph.py":
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            attr = node.attr if isinstance(node, ast.Attribute) else (
                node.value if isinstance(node, ast.Constant) else None)
            if attr in PRIVATE_GRAPH:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {attr}")
    assert not found, "Keras-private graph access outside keras_graph.py:\n" + "\n".join(found)


@pytest.mark.unit
def test_the_rules_see_what_they_forbid(tmp_path: Path) -> None:
    """The scanners are not blind: they find the constructs they forbid."""
    tree = ast.parse("import keras\nfrom kerasdoctor.predictor_graph import x\n"
                     "h = getattr(t, '_keras_history', None)\nn = layer._inbound_nodes\n")
    assert {"keras", "kerasdoctor.predictor_graph"} <= imported(tree)
    hits = [n for n in ast.walk(tree)
            if (isinstance(n, ast.Attribute) and n.attr in PRIVATE_GRAPH)
            or (isinstance(n, ast.Constant) and n.value in PRIVATE_GRAPH)]
    assert len(hits) == 2
