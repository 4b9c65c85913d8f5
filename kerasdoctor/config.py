"""[tool.kerasdoctor] from pyproject.toml (found from the working directory) or --config FILE."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasdoctor.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAIL_ON = ("error", "warning", "info", "never")


@dataclass(frozen=True)
class Config:
    """Settings from the file; command-line flags override them."""

    fail_on: str = "error"
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    ignore: dict[str, str] = field(default_factory=dict)  # finding id -> reason
    min_recall: float | None = None
    min_balanced_accuracy: float | None = None
    source: str | None = None


def find_pyproject(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None = None) -> Config:
    """Read the configuration; no file (or no [tool.kerasdoctor] table) means the defaults."""
    explicit = path is not None
    if path is None:
        path = find_pyproject()
        if path is None:
            return Config()
    if not path.is_file():
        raise InputError(f"--config: no such file: {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config {path}: not valid TOML ({exc})") from exc
    table = doc.get("tool", {}).get("kerasdoctor")
    if table is None and explicit:
        table = doc.get("kerasdoctor", doc if "fail_on" in doc else None)
    if table is None:
        return Config()
    return _parse(table, str(path))


def _parse(table: dict[str, Any], where: str) -> Config:
    from kerasdoctor.checks import registry

    known = {c.spec.id: c.spec for c in registry()}
    fail_on = str(table.get("fail_on", "error"))
    if fail_on not in FAIL_ON:
        raise InputError(f"config {where}: fail_on must be one of {', '.join(FAIL_ON)}")
    thresholds: dict[str, dict[str, float]] = {}
    for cid, values in (table.get("thresholds") or {}).items():
        if cid not in known:
            raise InputError(f"config {where}: thresholds for unknown check '{cid}'")
        if not isinstance(values, dict):
            raise InputError(f"config {where}: thresholds.{cid} must be a table")
        for name, v in values.items():
            if name not in known[cid].thresholds:
                names = ", ".join(known[cid].thresholds) or "none"
                raise InputError(
                    f"config {where}: '{cid}' has no threshold '{name}' (it has: {names})"
                )
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise InputError(f"config {where}: thresholds.{cid}.{name} must be a number")
        thresholds[cid] = {k: float(v) for k, v in values.items()}
    ignore: dict[str, str] = {}
    raw_ignore = table.get("ignore") or {}
    if not isinstance(raw_ignore, dict):
        raise InputError(
            f"config {where}: ignore must map finding ids to reasons, e.g. "
            'ignore = {"sorted-labels" = "the loader shuffles"}'
        )
    for cid, reason in raw_ignore.items():
        if cid not in known:
            raise InputError(f"config {where}: ignore names unknown finding '{cid}'")
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(f"config {where}: ignoring '{cid}' needs a reason")
        ignore[cid] = reason.strip()
    return Config(
        fail_on=fail_on,
        thresholds=thresholds,
        ignore=ignore,
        min_recall=_opt_float(table, "min_recall", where),
        min_balanced_accuracy=_opt_float(table, "min_balanced_accuracy", where),
        source=where,
    )


def _opt_float(table: dict[str, Any], key: str, where: str) -> float | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
        raise InputError(f"config {where}: {key} must be a number in [0, 1]")
    return float(v)
