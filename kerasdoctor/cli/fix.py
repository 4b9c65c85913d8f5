"""`kerasdoctor fix`: class weights, output bias, threshold, resampling and retraining.

The remedies that learn from data (class weights, output bias, resampling, retraining) take
TRAINING data, named TRAIN_DATA in help and output: data that trained a model can no longer
measure it. `--retrain` measures before/after on EVAL_DATA (--eval) or on a held-out part of
TRAIN_DATA that it never trains on, and suggests a follow-up that never re-reads trained rows.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from kerasdoctor.cli.common import guard, progress, progress_enabled, write_output
from kerasdoctor.errors import InputError
from kerasdoctor.policy import EXIT_FINDINGS

if TYPE_CHECKING:
    from kerasdoctor.dataspec import DataSpec
    from kerasdoctor.fix.repair_result import LabelThresholds, PositionThreshold
    from kerasdoctor.fix.results import FollowUp, RetrainReport


class FixFormat(str, Enum):
    """fix's report formats; MODE_FORMATS says which apply to each mode."""

    table = "table"
    json = "json"
    python = "python"


# mode flag -> (positional arguments, usage example)
MODES: dict[str, tuple[tuple[str, ...], str]] = {
    "class-weights": (("TRAIN_DATA",), "kerasdoctor fix --class-weights train.npz"),
    "output-bias": (("TRAIN_DATA",), "kerasdoctor fix --output-bias train.npz"),
    "threshold": (("MODEL", "DATA"), "kerasdoctor fix --threshold model.keras data.npz"),
    "oversample": (
        ("TRAIN_DATA",),
        "kerasdoctor fix --oversample train.npz --output balanced.npz (or train.csv -o "
        "balanced.csv, or photos/train --output balanced/)",
    ),
    "undersample": (
        ("TRAIN_DATA",),
        "kerasdoctor fix --undersample train.npz --output balanced.npz",
    ),
    "retrain": (
        ("MODEL", "TRAIN_DATA"),
        "kerasdoctor fix --retrain model.keras train.npz --eval val.npz --output fixed.keras",
    ),
    "repair": (
        ("MODEL", "DATA"),
        "kerasdoctor fix --repair model.keras data.npz --output fixed.keras",
    ),
}
# option -> the modes it applies to (given with another mode, it is an error, not ignored)
OPTION_MODES: dict[str, tuple[str, ...]] = {
    "--method": ("class-weights",),
    "--beta": ("class-weights",),
    "--objective": ("threshold",),
    "--seed": ("threshold", "oversample", "undersample", "retrain", "repair"),
    "--cause": ("repair",),
    "--epochs": ("retrain",),
    "--learning-rate": ("retrain",),
    "--validation-split": ("retrain",),
    "--eval": ("retrain",),
    "--eval-labels": ("retrain",),
    "--batch-size": ("retrain",),
    "--no-bias-reset": ("retrain",),
    "--unsafe": ("threshold", "retrain"),
    "--output-name": ("threshold",),
    # issue 16: how to read dense / multi-label DATA (the modes that read them)
    "--ignore-label": ("threshold", "repair"),
    "--multi-label": ("threshold", "repair"),
    # a data flag: suggested commands carry every flag that read DATA, so every mode takes it
    # (the label-only modes read y and leave the inputs alone)
    "--x-key": (
        "class-weights",
        "output-bias",
        "threshold",
        "oversample",
        "undersample",
        "retrain",
        "repair",
    ),
}
_ALL, _REPORTS = tuple(FixFormat), (FixFormat.table, FixFormat.json)  # python: a snippet
MODE_FORMATS: dict[str, tuple[FixFormat, ...]] = {
    "class-weights": _ALL,
    "output-bias": _ALL,
    "threshold": _REPORTS,
    "oversample": _REPORTS,
    "undersample": _REPORTS,
    "retrain": _REPORTS,
    "repair": _REPORTS,
}
WRITES_FILE = ("oversample", "undersample", "retrain", "repair")  # --output is the result, required
TRAIN_NOTE = (
    "give the data model.fit trains on as TRAIN_DATA, not validation or test data: a remedy "
    "learnt from the data that measures a model is fitted to what it measures"
)


def fix(
    paths: list[str] = typer.Argument(
        None, metavar="[MODE] [MODEL] TRAIN_DATA|DATA", show_default=False
    ),
    class_weights: bool = typer.Option(
        False,
        "--class-weights",
        help="Class weights for model.fit, from the labels of TRAIN_DATA (the training data).",
    ),
    output_bias: bool = typer.Option(
        False, "--output-bias", help="The output-layer bias at the label prior of TRAIN_DATA."
    ),
    threshold: bool = typer.Option(
        False,
        "--threshold",
        help="Best decision threshold of a binary MODEL on DATA; per "
        "label for a multi-label model (y multi-hot), over the positions for a one-sigmoid "
        "dense model (y (N, H, W)): chosen on one seeded half, checked on the other.",
    ),
    oversample: bool = typer.Option(
        False,
        "--oversample",
        help="Write TRAIN_DATA with the rare classes repeated (--output): an .npz, .csv/.tsv or "
        ".parquet in the same format, or an image folder as a new folder of links.",
    ),
    undersample: bool = typer.Option(
        False,
        "--undersample",
        help="Write TRAIN_DATA with the frequent classes cut down (--output), in its format.",
    ),
    retrain: bool = typer.Option(
        False,
        "--retrain",
        help="Fine-tune MODEL on TRAIN_DATA with class weights; save to --output; "
        "before/after on --eval EVAL_DATA, else on a held-out part of TRAIN_DATA.",
    ),
    repair: bool = typer.Option(
        False,
        "--repair",
        help="Repair the diagnosed root cause inside MODEL without training (BatchNorm "
        "statistics, preprocessing, output order, threshold, label prior; per-label "
        "thresholds of a multi-label model, the threshold or position prior of a dense one); "
        "fitted on one half of DATA, measured on the other; save to --output FIXED.keras.",
    ),
    cause: str | None = typer.Option(
        None,
        "--cause",
        help="Repair: the cause to repair, from the diagnosis's causes [default: its root cause].",
    ),
    eval_data: str | None = typer.Option(
        None,
        "--eval",
        metavar="EVAL_DATA",
        help="Retrain: data to measure before/after on, never trained on (e.g. the data you "
        "diagnosed); read with the same data flags. Without it, a held-out part of TRAIN_DATA.",
    ),
    eval_labels: str | None = typer.Option(
        None, "--eval-labels", help="Retrain: y.npy of an x.npy EVAL_DATA (--labels: TRAIN_DATA's)."
    ),
    method: str | None = typer.Option(
        None, "--method", help="Class weights: balanced | effective-number [default: balanced]."
    ),
    beta: float | None = typer.Option(
        None, "--beta", help="beta of the effective-number method [default: 0.999]."
    ),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="Threshold: balanced-accuracy | f1 [default: balanced-accuracy].",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed [default: 0]."),
    epochs: int | None = typer.Option(None, "--epochs", help="Retrain: epochs [default: 10]."),
    learning_rate: float | None = typer.Option(
        None, "--learning-rate", help="Retrain: learning rate [default: the model's optimizer's]."
    ),
    validation_split: float | None = typer.Option(
        None,
        "--validation-split",
        help="Retrain without --eval: share of TRAIN_DATA held out (stratified, seeded) and "
        "never trained on [default: 0.3].",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Retrain: batch size [default: 32]."
    ),
    no_bias_reset: bool = typer.Option(
        False, "--no-bias-reset", help="Retrain: keep the saved output bias as it is."
    ),
    format: FixFormat = typer.Option(FixFormat.table, "--format", "-f"),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="The new data/model file (resampling, retrain), or where to write the result.",
    ),
    x_key: str | None = typer.Option(None, "--x-key", help="The .npz array holding the input."),
    y_key: str = typer.Option("y", "--y-key", help="The .npz array holding the labels."),
    labels: str | None = typer.Option(None, "--labels", help="y.npy, when DATA is x.npy."),
    label_column: str | None = typer.Option(
        None, "--label-column", help="The label column of a .csv/.parquet DATA."
    ),
    feature_columns: str | None = typer.Option(
        None, "--feature-columns", help="Feature columns of a .csv/.parquet DATA, a,b,c."
    ),
    drop_columns: str | None = typer.Option(
        None,
        "--drop-columns",
        help="Columns of a .csv/.parquet DATA that are not features (an id), a,b.",
    ),
    class_names: str | None = typer.Option(
        None, "--class-names", help="Class order a,b,c for .npy, table or tf.data DATA."
    ),
    image_size: str | None = typer.Option(
        None, "--image-size", help="HxW for an image-folder DATA and a model of any size."
    ),
    unsafe: bool = typer.Option(
        False, "--unsafe", help="Allow Lambda layers: this runs Python code stored in the file."
    ),
    output_name: str | None = typer.Option(
        None, "--output-name", help="Which output of a multi-output model to use."
    ),
    # issue 16: dense and multi-label DATA, read as `diagnose` reads them
    ignore_label: int | None = typer.Option(
        None,
        "--ignore-label",
        help="Threshold, repair: dense labels (y (N, H, W) or (N, T)): positions labelled V do "
        "not count (a boolean 'mask' array in the .npz does the same).",
    ),
    multi_label: bool = typer.Option(
        False,
        "--multi-label",
        help="Threshold, repair: read y in the .npz as multi-hot (N, K) [default: when it is].",
    ),
) -> None:
    """Compute or apply a remedy for a classifier that drops its rare classes.

    \b
      fix class-weights TRAIN_DATA                  weights for model.fit
      fix output-bias TRAIN_DATA                    output bias at the label prior
      fix threshold MODEL DATA                      best threshold of a binary model
                                                    (per label: multi-label; per position:
                                                    one-sigmoid dense)
      fix oversample TRAIN_DATA -o balanced.npz     (or undersample) rebalanced data
      fix retrain MODEL TRAIN_DATA --eval EVAL_DATA -o fixed.keras
                                                    fine-tune with class weights
      fix repair MODEL DATA -o fixed.keras          repair the diagnosed cause in the
                                                    model, no training (exit 1: cannot)

    Each mode is also a flag: fix --class-weights TRAIN_DATA is fix class-weights TRAIN_DATA.
    TRAIN_DATA is the data the model trains on: remedies learnt from validation or test
    data spend it (it can no longer measure the model). Without --eval, retrain holds out
    a seeded stratified part of TRAIN_DATA, never trains on it, and lists it in
    FIXED.heldout.json.
    """
    with guard():
        flags = {
            "class-weights": class_weights,
            "output-bias": output_bias,
            "threshold": threshold,
            "oversample": oversample,
            "undersample": undersample,
            "retrain": retrain,
            "repair": repair,
        }
        chosen = [m for m, on in flags.items() if on]
        paths = list(paths or [])
        if (
            not chosen and paths and paths[0] in flags and not Path(paths[0]).exists()
        ):  # the subcommand form: fix repair M D
            chosen, paths = [paths[0]], paths[1:]
        if not chosen:
            raise InputError(
                "choose a remedy: --class-weights, --output-bias, --threshold, --oversample, "
                "--undersample, --retrain or --repair (e.g. kerasdoctor fix --class-weights "
                "data.npz)"
            )
        if len(chosen) > 1:
            raise InputError(
                f"choose one remedy at a time, got {', '.join('--' + m for m in chosen)}"
            )
        mode = chosen[0]
        # --oversample/--undersample: which data flags apply is decided by the kind of
        # TRAIN_DATA (resample.resample_data refuses the others, and .npy / tf.data data)
        given = {
            "--method": method is not None,
            "--beta": beta is not None,
            "--objective": objective is not None,
            "--seed": seed is not None,
            "--epochs": epochs is not None,
            "--learning-rate": learning_rate is not None,
            "--validation-split": validation_split is not None,
            "--eval": eval_data is not None,
            "--eval-labels": eval_labels is not None,
            "--batch-size": batch_size is not None,
            "--no-bias-reset": no_bias_reset,
            "--unsafe": unsafe,
            "--output-name": output_name is not None,
            "--x-key": x_key is not None,
            "--cause": cause is not None,
            "--ignore-label": ignore_label is not None,
            "--multi-label": multi_label,
        }
        for opt, on in given.items():
            if on and mode not in OPTION_MODES[opt]:
                where = ", ".join("--" + m for m in OPTION_MODES[opt])
                raise InputError(f"{opt} applies to {where}, not to --{mode}")
        if eval_labels is not None and eval_data is None:
            raise InputError("--eval-labels gives the labels of --eval EVAL_DATA: add --eval")
        if eval_data is not None and validation_split is not None:
            raise InputError(
                "--validation-split holds out part of TRAIN_DATA when there is no --eval; "
                "with --eval EVAL_DATA all of TRAIN_DATA trains: drop one of them"
            )
        if format not in MODE_FORMATS[mode]:
            raise InputError(
                f"--format {format.value} does not apply to --{mode} "
                f"(choose {' or '.join(f.value for f in MODE_FORMATS[mode])})"
            )
        want, usage = MODES[mode]
        if len(paths) != len(want):
            raise InputError(
                f"--{mode} takes {' '.join(want)} ({len(want)} path(s)), got {len(paths)}: {usage}"
            )
        if mode in WRITES_FILE and output is None:
            what = "model" if mode == "retrain" else "data"
            raise InputError(f"--{mode} writes a new {what} file: give it with --output ({usage})")
        if output is not None:
            from kerasdoctor.fix.common import refuse_overwrite

            inputs = list(zip(want, paths))
            if eval_data is not None:
                inputs.append(("EVAL_DATA", eval_data))
            refuse_overwrite(output, inputs)
            if mode == "retrain" and eval_data is None:
                from kerasdoctor.fix.retrain import heldout_path

                refuse_overwrite(heldout_path(output), inputs)

        from kerasdoctor.dataspec import DataSpec
        from kerasdoctor.load import MultiHotLabels

        spec = DataSpec.of(  # how to read DATA: the same flags, and meaning, as diagnose's
            {
                "x_key": x_key,
                "y_key": y_key,
                "labels": labels,
                "label_column": label_column,
                "feature_columns": feature_columns,
                "drop_columns": drop_columns,
                "class_names": class_names,
                "image_size": image_size,
                "ignore_label": ignore_label,
                "multi_label": multi_label,
            }
        )
        try:  # issue 16: the label-only modes refuse multi-hot labels with a pointer
            if mode == "class-weights":
                _class_weights(
                    paths[0],
                    method or "balanced",
                    0.999 if beta is None else beta,
                    format.value,
                    output,
                    spec,
                )
            elif mode == "output-bias":
                _output_bias(paths[0], format.value, output, spec)
            elif mode == "threshold":
                _threshold(
                    paths,
                    objective or "balanced-accuracy",
                    seed or 0,
                    format.value,
                    output,
                    unsafe,
                    output_name,
                    spec,
                )
            elif mode == "repair":
                assert output is not None
                _repair(paths, output, format.value, cause, seed or 0, spec)
            elif mode in ("oversample", "undersample"):
                assert output is not None
                _resample(paths[0], mode, seed or 0, format.value, output, spec)
            else:
                assert output is not None
                _retrain(
                    paths,
                    output,
                    format.value,
                    epochs=10 if epochs is None else epochs,
                    learning_rate=learning_rate,
                    validation_split=validation_split,
                    seed=seed or 0,
                    batch_size=32 if batch_size is None else batch_size,
                    bias_reset=not no_bias_reset,
                    unsafe=unsafe,
                    spec=spec,
                    eval_data=eval_data,
                    eval_labels=eval_labels,
                )
        except MultiHotLabels as exc:
            what = str(exc).split(": multi-label targets")[0]
            if mode in ("threshold", "repair"):  # DATA of another kind than .npz
                raise InputError(
                    f"{what}: --{mode} reads multi-hot labels from an .npz (x, y multi-hot (N, K))"
                ) from exc
            raise InputError(
                f"{what}: --{mode} takes single-label targets (Keras's class_weight does not "
                "apply to multi-label outputs); for a multi-label model: kerasdoctor fix "
                "--threshold MODEL DATA (a threshold per label) or fix --repair"
            ) from exc


def _json(result: Any) -> str:
    """A typed result (or its dict) as the JSON the command prints: NaN/Inf as null."""
    import json

    from kerasdoctor.fix.results import finite

    return json.dumps(finite(result), indent=2, allow_nan=False) + "\n"


def _class_weights(
    data: str, method: str, beta: float, fmt: str, output: Path | None, spec: DataSpec
) -> None:
    from dataclasses import replace

    from kerasdoctor.class_weights import METHODS, python_line
    from kerasdoctor.class_weights import class_weights as compute
    from kerasdoctor.fix.common import n_classes_of, read_labels_raw

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if not 0.0 <= beta < 1.0:
        raise InputError(f"--beta must be in [0, 1), got {beta}")
    raw = read_labels_raw(data, spec)
    n_classes = n_classes_of(raw)
    computed = compute(raw.labels.y, n_classes, method=method, beta=beta)
    result = replace(computed, train_data=data, note=TRAIN_NOTE)
    if fmt == "json":
        text = _json(result)
    elif fmt == "python":
        text = f"{python_line(result)}  # from the labels of TRAIN_DATA {data}\n"
    else:
        from kerasdoctor.render.simple import weights_table

        text = weights_table(result, raw.labels.class_names)
    write_output(text, output)


def _output_bias(data: str, fmt: str, output: Path | None, spec: DataSpec) -> None:
    from dataclasses import replace

    from kerasdoctor.fix.common import n_classes_of, names_for, read_labels_raw
    from kerasdoctor.fix.output_bias import prior_bias, python_text

    raw = read_labels_raw(data, spec)
    k = n_classes_of(raw)
    result = replace(prior_bias(raw.labels.y, k, names_for(raw, k)), train_data=data)
    if fmt == "json":
        text = _json(result)
    elif fmt == "python":
        text = python_text(result)
    else:
        from kerasdoctor.render.simple import bias_table

        text = bias_table(result)
    write_output(text, output)


def _threshold(
    paths: list[str],
    objective: str,
    seed: int,
    fmt: str,
    output: Path | None,
    unsafe: bool,
    output_name: str | None,
    spec: DataSpec,
) -> None:
    from kerasdoctor.fix.common import load_model_and_data
    from kerasdoctor.fix.threshold import OBJECTIVES, find_threshold
    from kerasdoctor.load import DenseLabels, MultiHotLabels

    if objective not in OBJECTIVES:  # before loading anything
        raise InputError(f"--objective must be one of {', '.join(OBJECTIVES)}, got '{objective}'")
    if spec.multi_label:
        multi = _threshold_multi(paths, None, objective, seed, unsafe, output_name, spec)
        write_output(_json(multi) if fmt == "json" else _threshold_text(multi), output)
        return
    try:
        md = load_model_and_data(
            paths[0],
            paths[1],
            spec=spec,
            seed=seed,
            unsafe=unsafe,
            output_name=output_name,
        )
    except (MultiHotLabels, DenseLabels) as exc:  # issue 16: multi-label or dense DATA
        multi = _threshold_multi(paths, exc, objective, seed, unsafe, output_name, spec)
        write_output(_json(multi) if fmt == "json" else _threshold_text(multi), output)
    else:
        if spec.ignore_label is not None:
            raise InputError(
                f"--ignore-label applies to dense labels (y (N, H, W) or (N, T)); "
                f"DATA {paths[1]} holds one label per sample"
            )
        from kerasdoctor.render.simple import threshold_table

        report = find_threshold(md, objective, seed)
        text = _json(report) if fmt == "json" else threshold_table(report)
        write_output(text, output)


def _threshold_text(report: LabelThresholds | PositionThreshold) -> str:
    from kerasdoctor.fix.repair_result import PositionThreshold
    from kerasdoctor.render.repair import label_threshold_table, position_threshold_table

    if isinstance(report, PositionThreshold):
        return position_threshold_table(report)
    return label_threshold_table(report)


def _threshold_multi(
    paths: list[str],
    exc: Exception | None,
    objective: str,
    seed: int,
    unsafe: bool,
    output_name: str | None,
    opts: DataSpec,
) -> LabelThresholds | PositionThreshold:
    """`fix --threshold` on multi-hot or dense labels in an .npz: per-label thresholds
    (fix.per_label) or one threshold over the positions (fix.per_position)."""
    from kerasdoctor.dense import is_dense_output
    from kerasdoctor.fix import per_label, per_position
    from kerasdoctor.load import MultiHotLabels, load_model
    from kerasdoctor.multilabel import is_npz_path
    from kerasdoctor.seg_folder import is_seg_folder

    if not is_npz_path(paths[1]) and not (is_seg_folder(paths[1]) and not opts.multi_label):
        if opts.multi_label:
            raise InputError(
                f"--multi-label reads DATA from an .npz (x, y multi-hot (N, K)); "
                f"{paths[1]} is not an .npz"
            )
        raise InputError(
            f"DATA: {paths[1]}: multi-hot or dense labels are read from an .npz "
            "(x, y): save them as one, or give single-label targets"
        )
    if objective != "balanced-accuracy":
        raise InputError(
            "--objective f1 applies to a binary model; per-label and per-position "
            "thresholds maximise balanced accuracy"
        )
    lm = load_model(paths[0], unsafe=unsafe, output_name=output_name)
    if not opts.multi_label and is_dense_output(lm):
        dd = per_position.load_npz(paths[0], paths[1], opts, lm=lm)
        return per_position.threshold_report(dd, seed, opts)
    if not (opts.multi_label or isinstance(exc, MultiHotLabels)):
        assert exc is not None
        raise exc
    if opts.ignore_label is not None:
        raise InputError(
            "--ignore-label applies to dense labels (y (N, H, W) or (N, T)), not "
            "to multi-hot labels"
        )
    ld = per_label.load_npz(paths[0], paths[1], opts, lm=lm)
    return per_label.threshold_report(ld, seed, opts)


def _resample(data: str, mode: str, seed: int, fmt: str, output: Path, spec: DataSpec) -> None:
    from dataclasses import replace

    from kerasdoctor.fix.resample import resample_data

    result = replace(resample_data(data, output, mode, seed, spec), train_data=data)
    if fmt == "json":
        text = _json(result)  # with an image folder's file list: JSON only
    else:
        from kerasdoctor.render.simple import resample_table

        text = resample_table(result)
    write_output(text, None)  # --output is the data file: the report goes to stdout


def _retrain(
    paths: list[str],
    output: Path,
    fmt: str,
    *,
    epochs: int,
    learning_rate: float | None,
    validation_split: float | None,
    seed: int,
    batch_size: int,
    bias_reset: bool,
    unsafe: bool,
    spec: DataSpec,
    eval_data: str | None = None,
    eval_labels: str | None = None,
) -> None:
    from dataclasses import replace

    from kerasdoctor.fix.common import load_model_and_data, load_more_data
    from kerasdoctor.fix.retrain import DEFAULT_HELDOUT, check_output_name, retrain

    check_output_name(output)
    if epochs < 0:
        raise InputError(f"--epochs must be 0 or more, got {epochs}")
    if batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {batch_size}")
    if learning_rate is not None and not learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {learning_rate}")
    share = DEFAULT_HELDOUT if validation_split is None else validation_split
    if not 0.0 < share < 1.0:
        raise InputError(f"--validation-split must be between 0 and 1, got {share}")
    if eval_data is not None:
        from kerasdoctor.fix.common import same_file

        if same_file(eval_data, paths[1]):
            raise InputError(
                f"--eval {eval_data} is TRAIN_DATA itself: rows a model trained on cannot "
                "measure it; give other data, or leave --eval out to hold out part of "
                "TRAIN_DATA"
            )
    md = load_model_and_data(paths[0], paths[1], spec=spec, seed=seed, unsafe=unsafe)
    eval_spec = replace(spec, labels=eval_labels)  # EVAL_DATA: the same flags, its own labels
    eval_md = None if eval_data is None else load_more_data(md, eval_data, eval_spec, seed)
    with progress(progress_enabled(fmt), "fine-tuning") as update:
        result = retrain(
            md,
            output,
            epochs=epochs,
            learning_rate=learning_rate,
            validation_split=share,
            seed=seed,
            batch_size=batch_size,
            bias_reset=bias_reset,
            progress=update,
            eval_md=eval_md,
        )
    result = replace(
        result, follow_up=_follow_up(result, paths[1], output, eval_data, spec, eval_spec)
    )
    if fmt == "json":
        text = _json(result)
    else:
        from kerasdoctor.render.simple import retrain_table

        text = retrain_table(result)
    write_output(text, None)  # --output is the model file: the report goes to stdout


def _repair(
    paths: list[str], output: Path, fmt: str, cause: str | None, seed: int, spec: DataSpec
) -> None:
    from kerasdoctor.fix.repair import check_output, repair_paths

    check_output(output, paths[0], paths[1])  # before the diagnosis: exit 2 at once
    result = repair_paths(paths[0], paths[1], output, cause=cause, seed=seed, spec=spec)
    if fmt == "json":
        text = _json(result)
    else:
        from kerasdoctor.render.repair import repair_table

        text = repair_table(result)
    write_output(text, None)  # --output is the model file: the report goes to stdout
    if not result.repaired and not result.healthy:
        raise typer.Exit(EXIT_FINDINGS)  # not repaired: 1, as diagnose exits on the finding


def _follow_up(
    r: RetrainReport,
    train_data: str,
    output: Path,
    eval_data: str | None,
    spec: DataSpec,
    eval_spec: DataSpec,
) -> FollowUp:
    """What to run next, and what not to: never a diagnosis on rows the model trained on.

    With --eval: diagnose FIXED on EVAL_DATA. Without: the only unseen rows of TRAIN_DATA are
    the held-out part, already measured above; `diagnose` reads whole datasets, so the honest
    next step is data the model never saw (the held-out indices are in FIXED.heldout.json).
    """
    import shlex

    from kerasdoctor.fix.common import data_arguments
    from kerasdoctor.fix.results import FollowUp

    model = shlex.quote(str(output))
    if eval_data is not None:
        args = data_arguments(eval_data, eval_spec, eval_spec.labels)
        return FollowUp(
            command=f"kerasdoctor diagnose {model} {args}",
            why="EVAL_DATA, never trained on",
            spent=None,
        )
    flags = data_arguments("NEW_DATA", spec, "NEW_LABELS" if spec.labels else None)
    n_held, n_train = r.n_heldout, r.n_train
    return FollowUp(
        command=f"kerasdoctor diagnose {model} {flags}",
        why=(
            f"data it never saw; not {train_data}: {n_train} of its rows trained this model "
            "and diagnose reads them all"
        ),
        spent=(
            f"fine-tuning on evaluation data spends it: if {train_data} was your validation or "
            f"test set, only its {n_held} held-out rows can still measure this model; fine-tune on "
            "the training data instead: kerasdoctor fix --retrain MODEL TRAIN_DATA "
            f"--eval {shlex.quote(train_data)}"
        ),
    )
