"""[tool.kerasdoctor] from pyproject.toml (found from the working directory) or --config FILE.

Every setting is named as the `diagnose` option it stands for, with underscores: --fail-on is
`fail_on`, --label-column is `label_column`; the same names are diagnose()'s keywords.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasdoctor.errors import InputError
from kerasdoctor.policy import FAIL_ON

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GATE_KEYS = ("min_recall", "min_balanced_accuracy")
RUN_KEYS = (
    "batch_size",
    "sample",
    "seed",
    "output_name",
    "multi_label",
    "ignore_label",
)  # issue 16: ignore_label
# how to read DATA; a data setting that does not apply to the DATA at hand (label_column for
# an .npz) is left out for that run: the file describes the project, not one command
DATA_KEYS = (
    "labels",
    "label_column",
    "feature_columns",
    "drop_columns",
    "image_size",
    "class_names",
    "x_key",
    "y_key",
)
KEYS = ("fail_on", "thresholds", "ignore", *GATE_KEYS, *RUN_KEYS, *DATA_KEYS)


@dataclass(frozen=True)
class Config:
    """Settings from the file; command-line flags override them."""

    fail_on: str = "error"
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    ignore: dict[str, str] = field(default_factory=dict)  # finding id -> reason
    min_recall: float | None = None
    min_balanced_accuracy: float | None = None
    batch_size: int | None = None
    sample: int | None = None
    seed: int | None = None
    output_name: str | None = None
    multi_label: bool | None = None  # true: diagnose as multi-label (y multi-hot)
    ignore_label: int | None = None  # issue 16: dense labels of this value do not count
    labels: str | None = None  # resolved against the config file's folder
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    drop_columns: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = None
    x_key: str | None = None
    y_key: str | None = None
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

    def settings(self, data: str | None = None, **flags: Any) -> dict[str, Any]:
        """kerasdoctor.core.Options keywords in force: each flag given (not None) overrides
        the file's value. With DATA, the file's data settings that do not apply to its kind
        are left out (a flag that does not apply is kept, and refused by the source)."""
        unknown = sorted(set(flags) - set(KEYS))
        if unknown:
            raise TypeError(f"Config.settings: unknown setting '{unknown[0]}'")
        out: dict[str, Any] = {"thresholds": self.thresholds, "ignore": self.ignore}
        applies = _applies_to(data)
        for key in ("fail_on", *GATE_KEYS, *RUN_KEYS, *DATA_KEYS):
            flag = flags.get(key)
            if flag is not None:
                out[key] = flag
                continue
            value = getattr(self, key)
            if value is not None and (key not in DATA_KEYS or applies(key)):
                out[key] = value
        return out


def _applies_to(data: str | None) -> Any:
    """key -> whether the data setting applies to DATA's kind (all do when unknown)."""
    if data is None:
        return lambda key: True
    from kerasdoctor.sources import OPTION_KINDS, data_kind

    kind = data_kind(data)
    if kind is None:
        return lambda key: True
    return lambda key: kind in OPTION_KINDS["--" + key.replace("_", "-")]


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
            'ignore = {"sorted-labels" = "the training loader shuffles"}'
        )
    for cid, reason in raw_ignore.items():
        if cid not in known:
            raise InputError(f"config {where}: ignore names unknown finding '{cid}'")
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(f"config {where}: ignoring '{cid}' needs a reason")
        ignore[cid] = reason.strip()
    labels = _opt_str(table, "labels", where)
    if labels is not None and not Path(labels).is_absolute():
        labels = str(Path(where).parent / labels)  # as written, from the file's folder
    return Config(
        fail_on=fail_on,
        thresholds=thresholds,
        ignore=ignore,
        min_recall=_opt_float(table, "min_recall", where),
        min_balanced_accuracy=_opt_float(table, "min_balanced_accuracy", where),
        batch_size=_opt_int(table, "batch_size", where, minimum=1),
        sample=_opt_int(table, "sample", where, minimum=1),
        seed=_opt_int(table, "seed", where, minimum=0),
        output_name=_opt_str(table, "output_name", where),
        multi_label=_opt_bool(table, "multi_label", where),
        ignore_label=_opt_int(table, "ignore_label", where, minimum=-(2**31)),  # issue 16
        labels=labels,
        label_column=_opt_str(table, "label_column", where),
        feature_columns=_opt_names(table, "feature_columns", where),
        drop_columns=_opt_names(table, "drop_columns", where),
        image_size=_opt_size(table, "image_size", where),
        class_names=_opt_names(table, "class_names", where),
        x_key=_opt_str(table, "x_key", where),
        y_key=_opt_str(table, "y_key", where),
        source=where,
    )


def _opt_bool(table: dict[str, Any], key: str, where: str) -> bool | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise InputError(f"config {where}: {key} must be true or false")
    return v


def _opt_float(table: dict[str, Any], key: str, where: str) -> float | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
        raise InputError(f"config {where}: {key} must be a number in [0, 1]")
    return float(v)


def _opt_int(table: dict[str, Any], key: str, where: str, minimum: int) -> int | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise InputError(f"config {where}: {key} must be a whole number >= {minimum}")
    return v


def _opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise InputError(f"config {where}: {key} must be a non-empty string")
    return v.strip()


def _opt_names(table: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """Column or class names: a list of strings, or one "a,b,c" string as on the CLI."""
    v = table.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        parts = v.split(",")
    elif isinstance(v, list) and all(isinstance(p, str) for p in v):
        parts = v
    else:
        parts = []
    names = tuple(p.strip() for p in parts if p.strip())
    if not names:
        raise InputError(
            f'config {where}: {key} must be a list of names, e.g. {key} = ["a", "b"] (or "a,b")'
        )
    return names


def _opt_size(table: dict[str, Any], key: str, where: str) -> tuple[int, int] | None:
    """An image size: "224x224" as on the CLI, or [224, 224]."""
    v = table.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        parts: list[Any] = v.lower().replace(",", "x").split("x")
    elif isinstance(v, list):
        parts = v
    else:
        parts = []
    try:
        if len(parts) != 2 or any(isinstance(p, (bool, float)) for p in parts):
            raise ValueError
        h, w = (int(p) for p in parts)
    except (TypeError, ValueError):
        h = w = 0
    if h <= 0 or w <= 0:
        raise InputError(
            f'config {where}: {key} must be HEIGHTxWIDTH, e.g. {key} = "224x224" (or [224, 224])'
        )
    return h, w
