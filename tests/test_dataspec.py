"""One DataSpec for "how to read DATA" (issue 17, item 5): every data option survives a trip
through a suggested command, parsed back by the `diagnose` and `fix` command lines.

No TensorFlow: the command lines are parsed by click (make_context), not run."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer.main

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.sources import OPTION_KINDS

# one value per option, each different from its default
VALUES = {
    "labels": "my labels.npy",  # a space: the path must come back quoted
    "label_column": "target class",
    "feature_columns": ("a", "b c", "d"),
    "drop_columns": ("id", "date"),
    "class_names": ("apple", "orange", "grape"),
    "image_size": (96, 128),
    "x_key": "pixels",
    "y_key": "labels",
    "ignore_label": 255,
    "multi_label": True,
}
FLAG_OF = {name: "--" + name.replace("_", "-") for name in VALUES}
KINDS = ("npz", "npy", "csv", "parquet", "images", "tfdata", "segmentation")
DENSE = {"ignore_label": ("npz", "segmentation"), "multi_label": ("npz",)}


def applies(name: str, kind: str) -> bool:
    return kind in DENSE[name] if name in DENSE else kind in OPTION_KINDS[FLAG_OF[name]]


def spec_for(kind: str) -> DataSpec:
    """Every option that applies to this kind of DATA, set."""
    return DataSpec(**{n: v for n, v in VALUES.items() if applies(n, kind)})


def parsed(command: str, args: list[str]) -> DataSpec:
    """The DataSpec that `kerasdoctor COMMAND args` would read DATA with."""
    from kerasdoctor.cli import app

    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    ctx = cmd.make_context(command, args)
    return DataSpec.of(SimpleNamespace(**ctx.params))


@pytest.mark.unit
def test_every_option_applies_somewhere() -> None:
    for name in VALUES:
        assert any(applies(name, k) for k in KINDS), name


@pytest.mark.unit
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_through_diagnose(kind: str) -> None:
    spec = spec_for(kind)
    line = spec.to_args("some dir/DATA", kind)
    args = shlex.split(line)
    assert args[0] == "some dir/DATA"
    assert parsed("diagnose", ["model.keras", *args]) == spec, line


@pytest.mark.unit
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_through_fix(kind: str) -> None:
    spec = spec_for(kind)
    args = shlex.split(spec.to_args("DATA", kind))
    assert parsed("fix", ["--threshold", "model.keras", *args]) == spec
    assert parsed("fix", ["threshold", "model.keras", *args]) == spec


@pytest.mark.unit
@pytest.mark.parametrize("kind", KINDS)
def test_no_flag_for_another_kind(kind: str) -> None:
    """A command refuses a data flag that does not apply to DATA, so none is written."""
    line = DataSpec(**VALUES).to_args("DATA", kind)
    for name, flag in FLAG_OF.items():
        assert (flag in shlex.split(line)) == applies(name, kind), (kind, flag, line)


@pytest.mark.unit
def test_default_spec_writes_only_the_path(tmp_path: Path) -> None:
    assert DataSpec().to_args("data.npz") == "data.npz"
    assert DataSpec.of(SimpleNamespace()) == DataSpec()


@pytest.mark.unit
def test_kind_is_read_from_the_path(tmp_path: Path) -> None:
    """Without a kind, the flags are those of what the path is (a real CSV here), or of its
    suffix when it does not exist yet."""
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,t\n1,2,0\n")
    line = DataSpec(**VALUES).to_args(str(csv))
    assert "--label-column" in line and "--x-key" not in line and "--labels" not in line
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((2, 1)), y=np.zeros(2))
    line = DataSpec(**VALUES).to_args(str(npz))
    assert "--x-key pixels" in line and "--ignore-label 255" in line
    assert "--multi-label" in line and "--label-column" not in line
    assert "--x-key" in DataSpec(x_key="k").to_args(str(tmp_path / "later.npz"))


@pytest.mark.unit
def test_suggested_commands_carry_the_dense_flags() -> None:
    """diagnose and fix build their suggested commands from the same spec: --ignore-label and
    --multi-label are no longer dropped from diagnose's suggestions."""
    from kerasdoctor.core import Options, data_arguments
    from kerasdoctor.fix.common import data_arguments as fix_arguments

    opts = Options.from_keywords({"ignore_label": 255, "x_key": "image"}, "test")
    assert data_arguments("seg.npz", opts) == "seg.npz --x-key image --ignore-label 255"
    spec = DataSpec.of({"ignore_label": 255, "x_key": "image"})  # as `fix` reads its flags
    assert fix_arguments("seg.npz", spec) == data_arguments("seg.npz", opts)
    assert DataSpec.of(opts) == spec and DataSpec.of(spec) is spec
    ml = Options.from_keywords({"multi_label": True}, "test")
    assert data_arguments("tags.npz", ml) == "tags.npz --multi-label"


@pytest.mark.unit
def test_unit_runs_block_the_heavy_imports() -> None:
    """Under KERASDOCTOR_UNIT_ONLY (pytest -m unit) a heavy import fails; otherwise skipped."""
    import os

    if not os.environ.get("KERASDOCTOR_UNIT_ONLY"):
        pytest.skip("only meaningful in a unit-only run (KERASDOCTOR_UNIT_ONLY=1 pytest -m unit)")
    with pytest.raises(ImportError, match="a unit test imported"):
        import tensorflow  # noqa: F401
