"""`kerasdoctor diagnose`, and the catalogue: `checks`, `explain ID`. Heavy imports happen
inside the commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kerasdoctor.cli.common import guard, progress, progress_enabled, write_output
from kerasdoctor.cli.shard import sharded_runner
from kerasdoctor.errors import InputError
from kerasdoctor.policy import FailOn, exit_code
from kerasdoctor.render import FORMATS, Format, render


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
        None,
        "--image-size",
        metavar="HxW",
        help="Image folder: the size to resize to, for models that take any size.",
    ),
    class_names: str | None = typer.Option(
        None,
        "--class-names",
        help="Comma-separated class names in class-index order (.npy, .csv, .parquet, "
        "tf.data); string labels are mapped in this order instead of sorted.",
    ),
    runner: str | None = typer.Option(
        None,
        "--runner",
        help="Sharded DATA (e.g. 'data/shard-*.tfrecord'): the Apache Beam runner "
        "[default: DirectRunner]; DataflowRunner, FlinkRunner, SparkRunner...",
    ),
    pipeline_options: list[str] = typer.Option(
        [],
        "--pipeline-option",
        metavar="KEY=VALUE",
        help="A Beam pipeline option for sharded DATA (repeatable), e.g. "
        "--pipeline-option direct_num_workers=2; also any --key=value after `--`.",
    ),
    # issue 16: force the multi-label diagnosis (a multi-hot y in an .npz selects it anyway)
    multi_label: bool = typer.Option(
        False,
        "--multi-label",
        help="Diagnose as multi-label: y multi-hot (N, K), one sigmoid unit per label "
        "[default: when y in the .npz is multi-hot].",
    ),
    # issue 16: void / padding positions of dense labels (y (N, H, W) or (N, T))
    ignore_label: int | None = typer.Option(
        None,
        "--ignore-label",
        help="Dense outputs (y (N, H, W) or (N, T)): positions labelled V do not count "
        "(void, padding); a boolean 'mask' array in the .npz does the same [default: none].",
    ),
) -> None:
    """Diagnose MODEL on DATA: what the predictions show, the most likely cause, the fix."""
    with guard():
        from kerasdoctor.config import load_config
        from kerasdoctor.core import Options, diagnose_paths
        from kerasdoctor.load import load_custom_objects

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
        sharded = sharded_runner(data, runner, pipeline_options, ctx.args, custom_objects)
        with progress(progress_enabled(format.value), "diagnosing") as update:
            opts.progress = update
            report = (sharded or diagnose_paths)(model, data, opts)
        color = output is None and sys.stdout.isatty()
        write_output(render(report, format.value, fail_on=fail, color=color), output)
        for fmt, path in extra:
            write_output(render(report, fmt, fail_on=fail, color=False), path)
        raise typer.Exit(exit_code(report, fail))


def parse_reports(specs: list[str]) -> list[tuple[str, Path]]:
    """--report FORMAT=FILE values, validated."""
    out = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or not path or fmt not in FORMATS:
            raise InputError(
                f"--report takes FORMAT=FILE with FORMAT one of {', '.join(FORMATS)}, got '{spec}'"
            )
        out.append((fmt, Path(path)))
    return out


def print_checks() -> None:
    """The catalogue, one line a finding: id, kind, summary."""
    from kerasdoctor.catalogue import one_line_list

    for line in one_line_list():
        sys.stdout.write(line + "\n")


def print_explain(finding_id: str) -> None:
    """One finding's explanation; an unknown id is an InputError naming the known ones."""
    from kerasdoctor.checks import get, registry

    check = get(finding_id)
    if check is None:
        known = ", ".join(c.spec.id for c in registry())
        raise InputError(f"unknown finding id '{finding_id}' (known: {known})")
    sys.stdout.write(check.spec.explain() + "\n")


def checks() -> None:
    """List the catalogue of findings, one line each."""
    with guard():
        print_checks()


def explain(finding_id: str = typer.Argument(..., metavar="ID")) -> None:
    """What a finding means, how it is measured, and how to fix it."""
    with guard():
        print_explain(finding_id)
