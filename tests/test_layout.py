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
KERAS_GATES = (
    "kerasdoctor._keras",
    "kerasdoctor.predictor_graph",
    "kerasdoctor.keras_graph",
    "kerasdoctor.load",
    "kerasdoctor.predictor",
)
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
    bad = sorted(
        n
        for n in names
        if n.split(".")[0] in HEAVY or n in KERAS_GATES or n.startswith("kerasdoctor.fix")
    )
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
            attr = (
                node.attr
                if isinstance(node, ast.Attribute)
                else (node.value if isinstance(node, ast.Constant) else None)
            )
            if attr in PRIVATE_GRAPH:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {attr}")
    assert not found, "Keras-private graph access outside keras_graph.py:\n" + "\n".join(found)


@pytest.mark.unit
def test_the_rules_see_what_they_forbid(tmp_path: Path) -> None:
    """The scanners are not blind: they find the constructs they forbid."""
    tree = ast.parse(
        "import keras\nfrom kerasdoctor.predictor_graph import x\n"
        "h = getattr(t, '_keras_history', None)\nn = layer._inbound_nodes\n"
    )
    assert {"keras", "kerasdoctor.predictor_graph"} <= imported(tree)
    hits = [
        n
        for n in ast.walk(tree)
        if (isinstance(n, ast.Attribute) and n.attr in PRIVATE_GRAPH)
        or (isinstance(n, ast.Constant) and n.value in PRIVATE_GRAPH)
    ]
    assert len(hits) == 2


def cli_imports(tree: ast.AST) -> set[str]:
    """The command-line modules a module imports (`from kerasdoctor import cli` included)."""
    names = {n for n in imported(tree) if n.split(".")[:2] == ["kerasdoctor", "cli"]}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "kerasdoctor"
            and any(a.name == "cli" for a in node.names)
        ):
            names.add("kerasdoctor.cli")
    return names


@pytest.mark.unit
def test_the_command_line_is_imported_by_nothing_it_calls() -> None:
    """Data flows one way (issue 17): the CLI calls the core, never the reverse; inside cli/,
    the command modules import common.py, never the package that registers them."""
    found = []
    for path in sources():
        rel = path.relative_to(PACKAGE)
        names = cli_imports(ast.parse(path.read_text(encoding="utf-8")))
        if rel.parts[0] == "cli" and rel.name not in ("__init__.py", "__main__.py"):
            names &= {"kerasdoctor.cli"}
        elif rel.parts[0] == "cli" or rel == Path("__main__.py"):
            continue
        found += [f"{rel}: {n}" for n in sorted(names)]
    assert not found, "imports of the command line from below it:\n" + "\n".join(found)
    assert cli_imports(ast.parse("from kerasdoctor import cli\nimport kerasdoctor.cli.fix\n")) == {
        "kerasdoctor.cli",
        "kerasdoctor.cli.fix",
    }


@pytest.mark.unit
def test_rich_lives_under_render() -> None:
    """Text for people is made in one place (render/): the commands and the core hand it data,
    so that the typed results they produce are the same for every format."""
    found = [
        f"{path.relative_to(PACKAGE)}: {n}"
        for path in sources()
        if path.relative_to(PACKAGE).parts[0] != "render"
        for n in sorted(imported(ast.parse(path.read_text(encoding="utf-8"))))
        if n.split(".")[0] == "rich"
    ]
    assert not found, "rich imported outside kerasdoctor/render/:\n" + "\n".join(found)
