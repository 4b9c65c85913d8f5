"""Small rich tables for the `fix` command's results."""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def to_text(renderable: Any, width: int = 100) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(renderable)
    return buf.getvalue()


def weights_table(result: dict[str, Any], names: list[str] | None) -> str:
    counts = result["label_counts"]
    t = Table(
        title=f"Class weights ({result['method']})", box=box.SIMPLE_HEAVY, title_justify="left"
    )
    for col in ("class", "name", "count", "weight"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for k, n in enumerate(counts):
        name = names[k] if names and k < len(names) else str(k)
        w = result["class_weight"].get(str(k))
        t.add_row(str(k), name, str(n), "—" if w is None else f"{w:.4f}")
    items = ", ".join(f"{k}: {v:.4g}" for k, v in result["class_weight"].items())
    return to_text(t) + f"\nmodel.fit(..., class_weight={{{items}}})\n"
