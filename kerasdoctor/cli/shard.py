"""The sharded path on the command line: `kerasdoctor shard`, and choosing the Beam path in
`diagnose` (--runner, --pipeline-option, options after `--`).

Light to import (typer + stdlib): the CLI registers the command at import time; apache_beam
and TensorFlow are imported only when a command runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from kerasdoctor.cli.common import guard
from kerasdoctor.errors import InputError


class ShardFormat(str, Enum):
    tfrecord = "tfrecord"
    npz = "npz"


def shard(
    data: str = typer.Argument(..., help="The .npz to split (the layout of `diagnose`)."),
    outdir: Path = typer.Argument(..., help="Where to write the shards and their manifest."),
    shards: int = typer.Option(..., "--shards", "-n", help="How many shards to write."),
    format: ShardFormat = typer.Option(
        ShardFormat.tfrecord,
        "--format",
        "-f",
        help="tfrecord: tf.train.Example per row; npz: .npz files of the same layout as DATA.",
    ),
    x_key: str | None = typer.Option(None, "--x-key", help="The .npz array holding the input."),
    y_key: str = typer.Option("y", "--y-key", help="The .npz array holding the labels."),
    force: bool = typer.Option(False, "--force", help="Replace shards already in OUTDIR."),
) -> None:
    """Split an .npz into N shards for `kerasdoctor diagnose MODEL 'OUTDIR/shard-*.tfrecord'`."""
    with guard():
        from kerasdoctor.beam.convert import convert_npz

        m = convert_npz(
            data, outdir, shards=shards, fmt=format.value, x_key=x_key, y_key=y_key, force=force
        )
        pattern = os.path.join(str(outdir), f"shard-*.{format.value}")
        sys.stdout.write(
            f"wrote {len(m.shards)} {format.value} shards ({m.n_samples} rows, features: "
            f"{', '.join(m.features)}; label: {m.label_key}) and kerasdoctor-shards.json to "
            f"{outdir}\ndiagnose them with: kerasdoctor diagnose MODEL '{pattern}'\n"
        )


def pipeline_args(options: Sequence[str], extra: Sequence[str]) -> list[str]:
    """--pipeline-option KEY=VALUE (or --key=value) values and args after `--`, as Beam's."""
    out = []
    for opt in options:
        text = opt.strip()
        if not text or text in ("-", "--"):
            raise InputError(f"--pipeline-option takes KEY=VALUE, got '{opt}'")
        out.append(text if text.startswith("--") else f"--{text}")
    for arg in extra:
        if not arg.startswith("-"):
            raise InputError(
                f"unexpected argument '{arg}' (Beam pipeline options go after `--` as "
                "--key=value, or as --pipeline-option KEY=VALUE)"
            )
        out.append(arg)
    return out


def sharded_runner(
    data: str,
    runner: str | None,
    options: Sequence[str],
    extra: Sequence[str],
    custom_objects: Path | None,
) -> Callable[[str, str, Any], Any] | None:
    """The Beam path's diagnose(model, data, options) when DATA names shards (a glob such as
    'data/shard-*.tfrecord', or TFRecord files) or a runner / pipeline option is given;
    None for the single-process path."""
    from kerasdoctor.beam import is_sharded

    args = pipeline_args(options, extra)
    if not (is_sharded(data) or runner or args):
        return None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # Beam's import-time warnings (e.g. "apitools not found")
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise InputError(
            f"DATA: {data} names shards, which are read by an Apache Beam pipeline: "
            "pip install 'kerasdoctor[beam]'"
        ) from None
    finally:
        root.setLevel(level)
    if runner:
        args = [f"--runner={runner}", *args]
    if not os.environ.get("KERASDOCTOR_DEBUG"):
        # Beam logs its chatter and, on failure, the workers' tracebacks; the CLI reports a
        # failure itself in one line (exit 2 or 3), so both stay quiet unless debugging.
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
            args.append("--default_sdk_harness_log_level=CRITICAL")
    from kerasdoctor.beam.pipeline import diagnose_shards

    path = str(custom_objects) if custom_objects is not None else None

    def run(model: str, pattern: str, opts: Any) -> Any:
        return diagnose_shards(model, pattern, opts, pipeline_args=args, custom_objects_path=path)

    return run
