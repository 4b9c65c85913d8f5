"""`kerasdoctor fix`: class weights (and the other remedies) from the command line."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from kerasdoctor.errors import InputError


class FixFormat(str, Enum):
    table = "table"
    json = "json"
    python = "python"


def fix(
    paths: list[str] = typer.Argument(None, metavar="[MODEL] DATA", show_default=False),
    class_weights: bool = typer.Option(
        False, "--class-weights", help="Class weights for model.fit, from the labels of DATA."
    ),
    method: str = typer.Option("balanced", "--method", help="balanced | effective-number."),
    beta: float = typer.Option(0.999, "--beta", help="beta of the effective-number method."),
    format: FixFormat = typer.Option(FixFormat.table, "--format", "-f"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the result here."),
    y_key: str = typer.Option("y", "--y-key", help="The .npz array holding the labels."),
) -> None:
    """Compute or apply a remedy: kerasdoctor fix --class-weights DATA."""
    from kerasdoctor.cli import guard, write_output

    with guard():
        paths = list(paths or [])
        if not class_weights:
            raise InputError("choose a remedy, e.g. kerasdoctor fix --class-weights DATA")
        if len(paths) != 1:
            raise InputError(
                "--class-weights takes one DATA file (kerasdoctor fix --class-weights data.npz)"
            )
        from kerasdoctor.fix.class_weights import METHODS, python_line
        from kerasdoctor.fix.class_weights import class_weights as compute
        from kerasdoctor.load import read_npz

        if method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
        if not 0.0 <= beta < 1.0:
            raise InputError(f"--beta must be in [0, 1), got {beta}")
        raw = read_npz(paths[0], y_key=y_key)
        n_classes = max(
            raw.labels.width or 0, len(raw.labels.class_names or []), int(raw.labels.y.max()) + 1
        )
        result = compute(raw.labels.y, n_classes, method=method, beta=beta)
        write_output(
            _render_weights(result, format.value, raw.labels.class_names, python_line), output
        )


def _render_weights(
    result: dict[str, Any],
    fmt: str,
    names: list[str] | None,
    python_line: Callable[[dict[str, Any]], str],
) -> str:
    import json

    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    if fmt == "python":
        return python_line(result) + "\n"
    from kerasdoctor.render.simple import weights_table

    return weights_table(result, names)
