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
KEYS = ("fail_on", "thresholds", "ignore", "min_recall", "min_balanced_accuracy")


@dataclass(frozen=True)
class Config:
    """Settings from the file; command-line flags override them."""

    fail_on: str = "error"
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    ignore: dict[str, str] = field(default_factory=dict)  # finding id -> reason
    min_recall: float | None = None
    min_balanced_accuracy: float | None = None
    source: str | None = None

    def gates(
        self, min_recall: float | None = None, min_balanced_accuracy: float | None = None
    ) -> dict[str, float]:
        """The quality gates in force: a command-line value overrides the file's."""
        pairs = (
            ("min_recall", min_recall if min_recall is not None else self.min_recall),
            (
                "min_balanced_accuracy",
                min_balanced_accuracy
                if min_balanced_accuracy is not None
                else self.min_balanced_accuracy,
            ),
        )
        return {k: float(v) for k, v in pairs if v is not None}


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
    tool = doc.get("tool")
    table = tool.get("kerasdoctor") if isinstance(tool, dict) else None
    if table is None and explicit:
        # a dedicated file may hold a [kerasdoctor] table or the settings at the top level
        table = doc.get("kerasdoctor", doc if any(k in doc for k in KEYS) else None)
        if table is None:
            raise InputError(f"config {path}: no [tool.kerasdoctor] table")
    if table is None:
        return Config()
    if not isinstance(table, dict):
        raise InputError(f"config {path}: [tool.kerasdoctor] must be a table")
    return _parse(table, str(path))


def _parse(table: dict[str, Any], where: str) -> Config:
    from kerasdoctor.checks import registry

    known = {c.spec.id: c.spec for c in registry()}
    for key in table:
        if key not in KEYS:  # a typo must not silently switch a setting off
            hint = key.replace("-", "_")
            also = f" (did you mean '{hint}'?)" if hint in KEYS else ""
            raise InputError(
                f"config {where}: unknown setting '{key}'{also}; known: {', '.join(KEYS)}"
            )
    fail_on = str(table.get("fail_on", "error"))
    if fail_on not in FAIL_ON:
        raise InputError(f"config {where}: fail_on must be one of {', '.join(FAIL_ON)}")
    thresholds: dict[str, dict[str, float]] = {}
    raw_thresholds = table.get("thresholds") or {}
    if not isinstance(raw_thresholds, dict):
        raise InputError(
            f"config {where}: thresholds must be a table of tables, e.g. "
            "[tool.kerasdoctor.thresholds.low-recall] min_gap = 0.2"
        )
    for cid, values in raw_thresholds.items():
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
