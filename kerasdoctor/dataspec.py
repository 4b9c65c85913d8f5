"""How to read DATA, once (issue 17): the options every command that reads data shares, and
their way back to the command line for suggested commands.

`fix` reads DATA through a DataSpec built from its flags; `diagnose`, the configuration and
the library API keep these options in core.Options under the same names (one vocabulary), and
`DataSpec.of(opts)` reads them from there; and `to_args(path)` turns them back
into the flags that read DATA the same way, so a suggested `kerasdoctor fix ... MODEL DATA`
reads a CSV, an image folder or a dense .npz exactly as the diagnosis that suggested it. A flag
is written only for the kinds of DATA it applies to (sources.OPTION_KINDS), since the commands
refuse a flag that does not apply rather than ignore it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# The kinds each issue-16 option applies to (the others are in sources.OPTION_KINDS).
_DENSE_KINDS = ("npz", "segmentation")


@dataclass(frozen=True)
class DataSpec:
    """The options that say how DATA is read; None (or y_key "y") means the default."""

    labels: str | None = None  # x.npy --labels y.npy
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    drop_columns: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    x_key: str | None = None
    y_key: str = "y"
    ignore_label: int | None = None  # dense: void / padding positions
    multi_label: bool | None = None  # True: multi-hot y

    @classmethod
    def of(cls, opts: Any, labels: str | None = None) -> DataSpec:
        """From the command line's flags (a Mapping of flag names as parameters: strings),
        or from any options object with these attribute names (core.Options, the API's
        keywords); missing ones take the default. Comma-separated strings and HxW sizes are
        split as the CLI splits them (a malformed one is an InputError)."""
        from kerasdoctor.sources import parse_columns, parse_image_size

        if isinstance(opts, DataSpec) and labels is None:
            return opts

        def get(name: str) -> Any:
            if isinstance(opts, Mapping):
                return opts.get(name)
            return getattr(opts, name, None)

        def columns(name: str) -> tuple[str, ...] | None:
            v = parse_columns(get(name), "--" + name.replace("_", "-"))
            return tuple(v) if v else None

        return cls(
            labels=labels if labels is not None else get("labels"),
            label_column=get("label_column"),
            feature_columns=columns("feature_columns"),
            drop_columns=columns("drop_columns"),
            class_names=columns("class_names"),
            image_size=parse_image_size(get("image_size")),
            x_key=get("x_key"),
            y_key=get("y_key") or "y",
            ignore_label=get("ignore_label"),
            # the command line forces multi-label or leaves it to y (as cli.diagnose maps it)
            multi_label=True if get("multi_label") else None,
        )

    def flags(self, kind: str | None = None) -> list[str]:
        """The flags, for DATA of this kind (None: every flag that is set)."""
        from kerasdoctor.sources import OPTION_KINDS

        kinds = dict(OPTION_KINDS)
        kinds["--ignore-label"] = _DENSE_KINDS
        kinds["--multi-label"] = ("npz",)
        values: list[tuple[str, str | None]] = [
            ("--labels", self.labels),
            ("--label-column", self.label_column),
            ("--feature-columns", _joined(self.feature_columns)),
            ("--drop-columns", _joined(self.drop_columns)),
            ("--class-names", _joined(self.class_names)),
            (
                "--image-size",
                None if self.image_size is None else f"{self.image_size[0]}x{self.image_size[1]}",
            ),
            ("--x-key", self.x_key),
            ("--y-key", None if self.y_key == "y" else self.y_key),
            ("--ignore-label", None if self.ignore_label is None else str(self.ignore_label)),
        ]
        out: list[str] = []
        for flag, value in values:
            if value and (kind is None or kind in kinds.get(flag, (kind,))):
                out += [flag, value]
        if self.multi_label and (kind is None or kind in kinds["--multi-label"]):
            out.append("--multi-label")
        return out

    def to_args(self, path: str, kind: str | None = None) -> str:
        """DATA as a kerasdoctor command line takes it: the path as the user would paste it,
        then the flags that read it, shell-quoted. `kind` defaults to what the path is."""
        from kerasdoctor.sources import data_kind

        if kind is None and not path.startswith("<"):
            kind = data_kind(path) or _kind_by_name(path)
        flags = self.flags(kind)
        return " ".join(
            [shell_path(path)]
            + [
                shell_path(a) if i and flags[i - 1] == "--labels" else shlex.quote(a)
                for i, a in enumerate(flags)
            ]
        )

    def options(self) -> dict[str, Any]:
        """The spec as keyword options of kerasdoctor.diagnose() (only what is set)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) not in (None, "y")
        }


def _joined(values: Sequence[str] | None) -> str | None:
    return None if not values else ",".join(values)


def _kind_by_name(path: str) -> str | None:
    """The kind of a path that does not exist (yet): by its suffix."""
    name = path.lower()
    for kind, suffixes in (
        ("npz", (".npz",)),
        ("npy", (".npy",)),
        ("csv", (".csv", ".tsv", ".csv.gz", ".tsv.gz")),
        ("parquet", (".parquet", ".pq")),
    ):
        if name.endswith(suffixes):
            return kind
    return None


def shell_path(path: str) -> str:
    """A path as the user would paste it into a shell: relative when below the working
    directory; '<train data>' placeholders as TRAIN_DATA."""
    if path.startswith("<"):
        return path.strip("<>").upper()
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else str(Path(path))
    except ValueError:
        pass
    return shlex.quote(path)
