"""The command line: parse, call the core, render, exit. Heavy imports happen inside commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TypeVar

import typer

from kerasdoctor.errors import InputError
from kerasdoctor.policy import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
)

T = TypeVar("T")

app = typer.Typer(
    name="kerasdoctor",
    help="Why does my Keras classifier predict only one class? Diagnose it, then fix it.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


class Format(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    junit = "junit"
    html = "html"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


def _err(msg: str) -> None:
    sys.stderr.write(f"kerasdoctor: error: {msg}\n")
    sys.stderr.flush()


@contextmanager
def guard() -> Iterator[None]:
    """Map failures to the contract's exit codes: 2 unusable input, 3 our own crash, 130 ^C,
    and a quiet 1 when stdout's reader has gone (`kerasdoctor checks | head -1`)."""
    from kerasdoctor import _signals

    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except InputError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        _signals.settle()  # reached: the watcher (see main) need not deliver it again
        _signals.told()
        sys.stderr.write(_signals.MESSAGE)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        _err("out of memory; try a smaller --batch-size or --sample N")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _signals.stdout_is_broken():
            # the reader read what it wanted (`| head`): no word, as Unix tools do; 1, not 0,
            # so that `set -o pipefail` never takes a cut-off report for a passing one
            _signals.quiet_stdout()
            raise typer.Exit(EXIT_STDOUT_CLOSED) from None
        if os.environ.get("KERASDOCTOR_DEBUG"):
            raise
        text = " ".join(str(exc).split())[:400]
        sys.stderr.write(
            f"kerasdoctor: internal error: {type(exc).__name__}: {text} "
            "(set KERASDOCTOR_DEBUG=1 for the traceback)\n"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def write_output(text: str, output: Path | None) -> None:
    """Write to --output atomically (temp file + rename), or to stdout."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from kerasdoctor.io import atomic_write_text

    atomic_write_text(output, text)


def _progress_enabled(fmt: str) -> bool:
    return fmt == "table" and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        label,
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@app.command(context_settings={"allow_extra_args": True})  # Beam options after `--`
def diagnose(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A .keras, .h5 file or a SavedModel directory."),
    data: str = typer.Argument(
        ...,
        help="An .npz with 'y' and the model inputs; x.npy (with --labels y.npy); a .csv or "
        ".parquet table; a folder of class subfolders of images; a tf.data.Dataset.save "
        "directory.",
    ),
    format: Format = typer.Option(Format.table, "--format", "-f", help="Report format."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report here."),
    fail_on: FailOn | None = typer.Option(
        None, "--fail-on", help="Exit 1 on a finding at or above this severity [default: error]."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Samples per batch."),
    sample: int | None = typer.Option(None, "--sample", help="Diagnose a random subset of N."),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed for --sample and the bounded sample [default: 0]."
    ),
    x_key: str | None = typer.Option(None, "--x-key", help="The .npz array holding the input."),
    y_key: str | None = typer.Option(
        None, "--y-key", help="The .npz array holding the labels [default: y]."
    ),
    output_name: str | None = typer.Option(
        None, "--output-name", help="Which output of a multi-output model to diagnose."
    ),
    unsafe: bool = typer.Option(
        False, "--unsafe", help="Allow Lambda layers: this runs Python code stored in the file."
    ),
    custom_objects: Path | None = typer.Option(
        None,
        "--custom-objects",
        help="A .py file defining the model's custom layers/losses (it is imported: trusted code).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="A TOML file with [tool.kerasdoctor] settings."
    ),
    reports: list[str] = typer.Option(
        [],
        "--report",
        metavar="FORMAT=FILE",
        help="Also write this format to FILE from the same run (repeatable), "
        "e.g. --report html=report.html --report junit=kd.xml.",
    ),
    min_recall: float | None = typer.Option(
        None, "--min-recall", min=0.0, max=1.0, help="Gate: every class needs recall >= R."
    ),
    min_balanced_accuracy: float | None = typer.Option(
        None, "--min-balanced-accuracy", min=0.0, max=1.0, help="Gate: balanced accuracy >= B."
    ),
    labels: str | None = typer.Option(
        None, "--labels", help="The labels (y.npy) when DATA is an x.npy file."
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="The .csv/.parquet column holding the labels."
    ),
    feature_columns: str | None = typer.Option(
        None,
        "--feature-columns",
        help="Comma-separated .csv/.parquet feature columns, in the model's order "
        "[default: every other column, in file order].",
    ),
    drop_columns: str | None = typer.Option(
        None,
        "--drop-columns",
        help="Comma-separated .csv/.parquet columns that are not features (an id, a date): "
        "the features are every other column but the labels, in file order.",
    ),
    image_size: str | None = typer.Option(
        None, "--image-size", metavar="HxW",
        help="Image folder: the size to resize to, for models that take any size.",
    ),
    class_names: str | None = typer.Option(
        None, "--class-names",
        help="Comma-separated class names in class-index order (.npy, .csv, .parquet, "
        "tf.data); string labels are mapped in this order instead of sorted.",
    ),
    runner: str | None = typer.Option(
        None, "--runner",
        help="Sharded DATA (e.g. 'data/shard-*.tfrecord'): the Apache Beam runner "
        "[default: DirectRunner]; DataflowRunner, FlinkRunner, SparkRunner...",
    ),
    pipeline_options: list[str] = typer.Option(
        [], "--pipeline-option", metavar="KEY=VALUE",
        help="A Beam pipeline option for sharded DATA (repeatable), e.g. "
        "--pipeline-option direct_num_workers=2; also any --key=value after `--`.",
    ),
    # issue 16: force the multi-label diagnosis (a multi-hot y in an .npz selects it anyway)
    multi_label: bool = typer.Option(
        False, "--multi-label",
        help="Diagnose as multi-label: y multi-hot (N, K), one sigmoid unit per label "
        "[default: when y in the .npz is multi-hot].",
    ),
    # issue 16: void / padding positions of dense labels (y (N, H, W) or (N, T))
    ignore_label: int | None = typer.Option(
        None, "--ignore-label",
        help="Dense outputs (y (N, H, W) or (N, T)): positions labelled V do not count "
        "(void, padding); a boolean 'mask' array in the .npz does the same [default: none].",
    ),
) -> None:
    """Diagnose MODEL on DATA: what the predictions show, the most likely cause, the fix."""
    with guard():
        from kerasdoctor.config import load_config
        from kerasdoctor.core import Options, diagnose_paths
        from kerasdoctor.load import load_custom_objects
        from kerasdoctor.policy import exit_code
        from kerasdoctor.render import render

        extra = parse_reports(reports)  # before the slow part: a typo fails at once
        cfg = load_config(config)
        # a flag overrides the file; the names are the same in both (and in diagnose())
        settings = cfg.settings(
            data,
            fail_on=fail_on.value if fail_on is not None else None,
            min_recall=min_recall,
            min_balanced_accuracy=min_balanced_accuracy,
            batch_size=batch_size,
            sample=sample,
            seed=seed,
            output_name=output_name,
            multi_label=True if multi_label else None,  # issue 16
            ignore_label=ignore_label,  # issue 16
            labels=labels,
            label_column=label_column,
            feature_columns=feature_columns,
            drop_columns=drop_columns,
            image_size=image_size,
            class_names=class_names,
            x_key=x_key,
            y_key=y_key,
        )
        opts = Options(
            **settings,
            unsafe=unsafe,
            custom_objects=load_custom_objects(custom_objects) if custom_objects else None,
        )
        fail = opts.fail_on
        from kerasdoctor.beam.command import sharded_runner

        sharded = sharded_runner(data, runner, pipeline_options, ctx.args, custom_objects)
        with _progress(_progress_enabled(format.value), "diagnosing") as progress:
            opts.progress = progress
            report = (sharded or diagnose_paths)(model, data, opts)
        color = output is None and sys.stdout.isatty()
        write_output(render(report, format.value, fail_on=fail, color=color), output)
        for fmt, path in extra:
            write_output(render(report, fmt, fail_on=fail, color=False), path)
        raise typer.Exit(exit_code(report, fail))


from kerasdoctor.fix.command import fix as _fix  # noqa: E402  (light: typer + stdlib only)

app.command("fix")(_fix)

from kerasdoctor.beam.command import shard as _shard  # noqa: E402  (light: typer + stdlib)

app.command("shard")(_shard)


def parse_reports(specs: list[str]) -> list[tuple[str, Path]]:
    """--report FORMAT=FILE values, validated."""
    from kerasdoctor.render import FORMATS

    out = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or not path or fmt not in FORMATS:
            raise InputError(
                f"--report takes FORMAT=FILE with FORMAT one of {', '.join(FORMATS)}, got '{spec}'"
            )
        out.append((fmt, Path(path)))
    return out


def _print_checks() -> None:
    from kerasdoctor.catalogue import one_line_list

    for line in one_line_list():
        sys.stdout.write(line + "\n")


def _print_explain(finding_id: str) -> None:
    from kerasdoctor.checks import get, registry

    check = get(finding_id)
    if check is None:
        known = ", ".join(c.spec.id for c in registry())
        raise InputError(f"unknown finding id '{finding_id}' (known: {known})")
    sys.stdout.write(check.spec.explain() + "\n")


def _print_version() -> None:
    from kerasdoctor import __version__

    sys.stdout.write(f"kerasdoctor {__version__}\n")


@app.command()
def checks() -> None:
    """List the catalogue of findings, one line each."""
    with guard():
        _print_checks()


@app.command()
def explain(finding_id: str = typer.Argument(..., metavar="ID")) -> None:
    """What a finding means, how it is measured, and how to fix it."""
    with guard():
        _print_explain(finding_id)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        _print_version()
        raise typer.Exit(0)


def _light_command(args: list[str]) -> Callable[[], None] | None:
    """The commands that only print what kerasdoctor knows, when given in their plain form."""
    if args == ["--version"]:
        return _print_version
    if args == ["checks"]:
        return _print_checks
    if len(args) == 2 and args[0] == "explain" and not args[1].startswith("-"):
        return lambda: _print_explain(args[1])
    return None


def main() -> None:
    """The console script. `checks`, `explain ID` and `--version` are answered here, the same
    as the app answers them: Typer (0.2x) converts every option value, even the unset --help,
    through a pydantic TypeAdapter, and importing pydantic would double their start-up time.
    Anything else, their --help included, goes to the Typer app.

    Ctrl-C anywhere ends with one line and exit 130 (kerasdoctor._signals says how); a reader
    that closes stdout early (`| head -1`) ends it with a quiet 1."""
    from kerasdoctor import _signals

    _signals.install()  # first: a ^C in the imports below must find it
    code = 0
    try:
        try:
            light = _light_command(sys.argv[1:])
            if light is None:
                app()  # standalone: it ends in SystemExit
            else:
                with guard():
                    light()
        except typer.Exit as exc:
            code = exc.exit_code
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                sys.stderr.write(f"{exc.code}\n")
                code = 1
        sys.stdout.flush()  # here, not at shutdown, where a closed pipe is a traceback
    except KeyboardInterrupt:
        code = 130  # it did not pass through guard(): finish() writes the line
    except BrokenPipeError:
        _signals.quiet_stdout()
        code = code or 1
    _signals.finish(code)


if __name__ == "__main__":
    main()
