"""`kerasdoctor fix --repair`: cure the diagnosed root cause inside a copy of the model.

No training: the trained weights are kept and only the part around them that the diagnosis
blames is edited, with standard Keras layers (BatchNorm moving statistics re-estimated, the
restoring preprocessing prepended as Rescaling / Normalization / a fixed 1x1 Conv2D, the output
units reordered, the decision cut or the label prior moved into the output bias). DATA is split
into two seeded, stratified halves: the repair is fitted on one and measured on the other, and
the model is written (atomically, reloaded in safe mode first) only when that half improves.

Multi-label and dense models (issue 16) are routed by the task of their diagnosis to
fix.per_label (per-label thresholds into the output bias) and fix.per_position (a threshold
or the position prior into the output bias); both edit the head with shift_output_logits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Report
from kerasdoctor.fix.common import ModelData, Outputs
from kerasdoctor.fix.repair_result import (
    Rediagnosis,
    RepairDetails,
    RepairReport,
    RepairResult,
    Summary,
)
from kerasdoctor.fix.surgery import (
    BatchNormSurgery,
    ClassImbalanceSurgery,
    InputTransform,
    InputTransformSurgery,
    LogitShiftSurgery,
    OutputOrderSurgery,
    SigmoidSurgery,
    Surgery,
    ThresholdSurgery,
)
from kerasdoctor.keras_graph import innermost_head, output_layer, producer

# The held-out gain that counts as a repair: two standard errors of the difference of two
# balanced accuracies on the held-out class sizes (experiments.noise_bound, the binomial worst
# case), so a repair that only moves predictions around by chance is not written.
MIN_GAIN_Z = 2.0
# BatchNorm re-estimation batch: small enough that a few hundred fitting rows make several
# batches to average, large enough that each batch's statistics mix the classes.
BN_BATCH = 64

SPLIT = (
    "two seeded, stratified halves of DATA: the repair is fitted on the first and "
    "measured on the second, which it never saw"
)

# Causes whose cure is a change to training, the data or the model's design: no edit of the
# saved weights gives back what training never learned. (why, what to do instead)
UNREPAIRABLE: dict[str, str] = {
    "no-signal": "the inputs carry no information about the labels that the model or a "
    "linear probe can find; no edit of the model can create it (class weights would only "
    "spread wrong answers)",
    "untrained-model": "the weights never trained: there is no learned model around which to "
    "repair anything",
    "nonfinite-weights": "weights are NaN or infinite (training diverged): the values the "
    "model would need are lost",
    "dead-units": "whole layers of units output zero for every input: what they would have "
    "carried was never learned, and cannot be restored without training",
    "loss-mismatch": "the loss trained the head for another task, so the weights never "
    "learned the task the labels describe",
    "output-units-mismatch": "the output layer has a different number of units than the data "
    "has classes: the missing classes were never learned",
    "over-regularization": "the weight penalties kept the weights near zero: the model learned "
    "the label prior, not the classes",
    "degenerate-inputs": "the inputs do not vary (constant rows or features, all-padding "
    "tokens): the data pipeline must be fixed, not the model",
    "single-unit-softmax": "a softmax over one unit is constant 1 and passed no gradient to "
    "the logit under it, which does not rank the classes: retrain with a sigmoid head",
    "nonfinite-inputs": "the data holds NaN or infinite values: clean the data",
    "padding-side": "the sequences are padded on the other side than in training: re-pad them "
    'as the training data was padded (keras.utils.pad_sequences(..., padding="pre" or "post")); '
    "no change inside the model can move the padding of the data it is given",
}


class CannotRepair(Exception):
    """The cause is repairable in general but not in this model (a head without a bias...)."""


@dataclass
class _Job:
    md: ModelData
    finding: Finding
    fit: np.ndarray
    held: np.ndarray
    base: Outputs  # the model's outputs on every row of DATA
    k: int
    seed: int

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.md.raw.labels.y)


# ------------------------------------------------------------------ entry point


def check_output(output: Path, model_path: str, data_path: str) -> None:
    """Exit 2 before any work: a bad --output name, the input itself, a SavedModel input."""
    from kerasdoctor.fix.common import refuse_overwrite

    if output.suffix.lower() != ".keras":
        raise InputError(
            f"--output {output}: the repaired model is a .keras file: name it FIXED.keras"
        )
    refuse_overwrite(output, [("MODEL", model_path), ("DATA", data_path)])
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--output: directory {parent} does not exist")
    if output.is_dir():
        raise InputError(f"--output: {output} is a directory")
    if Path(model_path).is_dir():
        raise InputError(
            f"MODEL: {model_path} is a SavedModel, which has no Keras layers to "
            "edit; repair the .keras (or .h5) file it was exported from"
        )


def repair_paths(
    model_path: str,
    data_path: str,
    output: Path,
    *,
    cause: str | None = None,
    seed: int = 0,
    spec: DataSpec | None = None,
) -> RepairResult:
    """Diagnose MODEL on DATA, repair the root cause (or `cause`), measure on a held-out half
    and write the repaired model to `output` when it improves."""
    from kerasdoctor.core import Options, diagnose_paths
    from kerasdoctor.fix.common import load_model_and_data

    opts = spec or DataSpec()
    check_output(output, model_path, data_path)
    report = diagnose_paths(model_path, data_path, Options(seed=seed, **opts.options()))
    task = report.metrics.task
    if opts.ignore_label is not None and task != "dense":
        held = "multi-hot labels" if task == "multilabel" else "one label per sample"
        raise InputError(
            f"--ignore-label applies to dense labels (y (N, H, W) or (N, T)); "
            f"DATA {data_path} holds {held}"
        )
    finding = choose_cause(report, cause)
    if task == "multilabel":  # issue 16: per-label thresholds into the output bias
        from kerasdoctor.fix import per_label

        result = per_label.repair(
            per_label.load_npz(model_path, data_path, opts), report, finding, output, seed
        )
    elif task == "dense":  # issue 16: a threshold or the position prior into the bias
        from kerasdoctor.fix import per_position

        result = per_position.repair(
            per_position.load_npz(model_path, data_path, opts), report, finding, output, seed
        )
    else:
        md = load_model_and_data(model_path, data_path, spec=opts, seed=seed)
        result = repair(md, report, finding, output, seed)
    return replace(result, model=model_path, data=data_path)


def repair_arrays(
    model: Any, x: Any, y: Any, *, cause: str | None = None, seed: int = 0, **options: Any
) -> tuple[Any, RepairReport]:
    """`fix --repair` on a model object (or path) and in-memory arrays, for notebooks: the
    diagnosis, the repair fitted on one seeded stratified half of (x, y) and measured on the
    other. Returns the repaired model (a new object; `model` is never changed) or, when
    nothing was repaired, `model` itself, and the RepairReport."""
    from kerasdoctor.core import Options, _diagnose, raw_arrays
    from kerasdoctor.fix.common import bind_arrays
    from kerasdoctor.load import from_keras_model, load_model

    options = dict(options)
    mask = options.pop("mask", None)  # dense labels: the positions that count (issue 16)
    opts = Options.from_keywords({**options, "seed": seed}, "kerasdoctor.repair()")
    if isinstance(model, (str, os.PathLike)):
        lm = load_model(
            model,
            unsafe=opts.unsafe,
            custom_objects=opts.custom_objects,
            output_name=opts.output_name,
        )
    else:
        lm = from_keras_model(model, output_name=opts.output_name)
    if lm.keras_model is None:
        raise InputError(f"MODEL: {lm.path} has no Keras layers to edit")
    fixer = _multi_fixer(lm, x, y, mask, opts)  # issue 16: dense or multi-hot y
    if fixer is not None:
        report, finding = fixer[0], choose_cause(fixer[0], cause)
    else:
        if mask is not None:
            raise InputError(
                "mask= marks the positions of dense labels (y (N, H, W) or "
                "(N, T)); y holds one label per sample"
            )
        raw = raw_arrays(x, y, opts)
        report = _diagnose(lm, raw, opts)
        finding = choose_cause(report, cause)
        md = bind_arrays(lm, raw)
    with tempfile.TemporaryDirectory(prefix="kerasdoctor-repair-") as tmp:
        out = Path(tmp) / "repaired.keras"
        if fixer is not None:
            result = fixer[1](report, finding, out)
        else:
            result = repair(md, report, finding, out, seed)
        fixed = model
        if result.repaired:
            from kerasdoctor._keras import keras

            fixed = keras().saving.load_model(str(out), safe_mode=True)
            result = replace(result, output=None)  # the file lived in a temporary directory
    return fixed, RepairReport(result)


_Fixer = Callable[[Report, "Finding | None", Path], RepairResult]


def _multi_fixer(lm: Any, x: Any, y: Any, mask: Any, opts: Any) -> tuple[Report, _Fixer] | None:
    """For repair(): the diagnosis of dense labels (y (N, H, W) / (N, T)) or multi-hot ones,
    and the repair that goes with it; None for single-label y (as core.diagnose_arrays
    routes them)."""
    from collections.abc import Mapping

    from kerasdoctor.dense import labels_fit
    from kerasdoctor.multilabel import is_multi_hot

    y = np.asarray(y)
    if isinstance(x, Mapping):
        arrays = {str(key): np.asarray(v) for key, v in x.items()}
    elif isinstance(x, (list, tuple)):
        arrays = {f"x{i}": np.asarray(v) for i, v in enumerate(x)}
    else:
        arrays = {"x": np.asarray(x)}
    names = None if opts.class_names is None else [str(v) for v in opts.class_names]
    seed = opts.seed
    if not opts.multi_label and labels_fit(y, tuple(lm.output_shape)):
        from kerasdoctor.dense import diagnose_arrays as diagnose_dense
        from kerasdoctor.fix import per_position

        report = diagnose_dense(lm, x, y, opts, mask=mask)
        dd = per_position.bind(lm, "<arrays>", arrays, y, mask, names, opts.ignore_label)
        return report, lambda rep, f, out: per_position.repair(dd, rep, f, out, seed)
    if opts.multi_label or (opts.multi_label is None and is_multi_hot(y)):
        from kerasdoctor.fix import per_label
        from kerasdoctor.multilabel import diagnose_arrays as diagnose_multi

        report = diagnose_multi(lm, x, y, opts)
        ld = per_label.bind(lm, "<arrays>", arrays, y, names)
        return report, lambda rep, f, out: per_label.repair(ld, rep, f, out, seed)
    return None


def choose_cause(report: Report, cause: str | None) -> Finding | None:
    """The root cause, or the cause `--cause` names (exit 2 when the report has no such
    cause)."""
    if cause is None:
        return report.root_cause
    found = next((f for f in report.causes if f.id == cause), None)
    if found is None:
        listed = ", ".join(f.id for f in report.causes) or "none"
        raise InputError(
            f"--cause {cause}: the diagnosis did not find this cause (its causes: {listed})"
        )
    return found


def repair(
    md: ModelData, report: Report, finding: Finding | None, output: Path, seed: int = 0
) -> RepairResult:
    """Repair `finding` in md's model; write `output` only when the held-out half improves."""
    from kerasdoctor.experiments import noise_bound, split_halves
    from kerasdoctor.fix.common import n_classes_of, names_for, predict_outputs, summarize

    if md.lm.keras_model is None:
        raise InputError(f"MODEL: {md.lm.path} has no Keras layers to edit")
    y = np.asarray(md.raw.labels.y)
    k = n_classes_of(md.raw, md.facts.n_outputs)
    names = names_for(md.raw, k)
    fit, held = split_halves(y, seed)
    base = predict_outputs(md)
    before = summarize(y[held], base.preds[held], names)
    result = replace(
        RepairResult.start(
            "single-label",
            report,
            finding,
            split=SPLIT,
            seed=seed,
            fit_rows=int(fit.size),
            heldout_rows=int(held.size),
        ),
        before=before,
    )
    if finding is None:
        return result
    job = _Job(md, finding, fit, held, base, k, seed)
    fn = REPAIRS.get(finding.id)
    if fn is None:
        return replace(result, why=unrepairable_why(finding), instead=_instead(md, finding))
    try:
        model, what, details = fn(job)
    except CannotRepair as exc:
        return replace(result, why=str(exc), instead=_instead(md, finding))
    support = np.bincount(y[held], minlength=k)[:k]
    required = MIN_GAIN_Z * noise_bound(support)
    result = replace(
        result, repair=what, details=RepairDetails(surgery=details), required_gain=required
    )
    with _saved(model, output) as tmp:
        # measured on the file as written, loaded back by plain Keras in safe mode
        from kerasdoctor.load import load_model
        from kerasdoctor.model_facts import read_facts

        lm = load_model(
            tmp, output_name=md.lm.output_name if len(md.lm.keras_model.outputs) > 1 else None
        )
        after_md = replace(md, lm=lm, facts=read_facts(lm))
        after = summarize(y[held], predict_outputs(after_md, held).preds, names)
        standard = _standard(lm.keras_model)
        gain = float(_ba(after) - _ba(before))
        result = replace(result, after=after, standard_layers_only=standard, gain=gain)
        if not standard:
            return replace(result, why="the repaired model holds non-standard layers: not written")
        if not gain >= required or gain <= 0:
            return replace(
                result,
                why=f"on the held-out half the repair moves balanced accuracy by {gain:+.1%}, "
                f"less than the {required:.1%} that sampling noise could explain: not written",
                instead=tuple(finding.fixes),
            )
        result = replace(result, diagnosis_after=_rediagnose(tmp, md, held, names))
        os.replace(tmp, output)
    return replace(result, repaired=True, output=str(output))


def _ba(s: Summary) -> float:
    return float("nan") if s.balanced_accuracy is None else s.balanced_accuracy


def unrepairable_why(finding: Finding, needs: str = "a change to training or data") -> str:
    """Why no edit of the model cures `finding` (its cure is in training or in the data)."""
    if finding.id == "padding-side":
        return _padding_why(finding)
    return UNREPAIRABLE.get(
        finding.id, f"{finding.id} has no repair inside the model: it needs {needs}"
    )


def _padding_why(finding: Finding) -> str:
    """padding-side: the data is padded on the other side than in training; the cure is to
    pad it as in training, which no edit of the weights can stand in for."""
    inputs = finding.evidence.get("inputs") or [{}]
    side = inputs[0].get("side")
    if side not in ("pre", "post"):
        return UNREPAIRABLE["padding-side"]
    other = "pre" if side == "post" else "post"
    where = "at the end" if side == "post" else "at the front"
    return (
        f"the sequences are padded {where} ('{side}') but the model was trained on them padded "
        f"'{other}': re-pad them as in training, keras.utils.pad_sequences(sequences, "
        f'padding="{other}"); no change inside the model can move the padding of the data '
        "it is given (or build the Embedding with mask_zero=True and retrain)"
    )


def _instead(md: ModelData, finding: Finding) -> tuple[Fix, ...]:
    """What to do when surgery cannot cure: the finding's own remedies; fine-tuning with
    class weights only where the cause is the imbalance it cures."""
    fixes = tuple(finding.fixes)
    if finding.id == "class-imbalance" and not any("--retrain" in (f.command or "") for f in fixes):
        fixes += (_retrain_fix(md),)
    return fixes


def _retrain_fix(md: ModelData) -> Fix:
    return Fix(
        "Fine-tune the model with class weights on the training data",
        command=f"kerasdoctor fix --retrain {md.lm.path} TRAIN_DATA --eval "
        f"{md.raw.path} --output fixed.keras",
    )


class _saved:
    """The model saved to a temporary .keras file next to `output`; removed on exit unless
    it was moved into place (os.replace by the caller)."""

    def __init__(self, model: Any, output: Path) -> None:
        self.model, self.output = model, output

    def __enter__(self) -> str:
        parent = self.output.parent if str(self.output.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"--output: directory {parent} does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.output.name}.", suffix=".keras", dir=parent)
        os.close(fd)
        os.unlink(self.tmp)  # Keras writes the file itself
        self.model.save(self.tmp)
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _standard(model: Any) -> bool:
    """Every layer (nested models' too) is a class of Keras itself."""
    from kerasdoctor.predictor_graph import all_layers

    return all(type(layer).__module__.startswith("keras.") for layer in [model, *all_layers(model)])


def _rediagnose(path: str, md: ModelData, held: np.ndarray, names: list[str]) -> Rediagnosis:
    """The diagnosis of the repaired model on the held-out half (the rows it never saw)."""
    from kerasdoctor.core import diagnose_arrays

    try:
        xs = {s.name: a[held] for s, a in zip(md.lm.inputs, md.arrays)}
        report = diagnose_arrays(
            path,
            xs if len(xs) > 1 else next(iter(xs.values())),
            md.raw.labels.y[held],
            class_names=names,
        )
    except Exception as exc:  # reported, never fatal: the repair itself is measured above
        return Rediagnosis.failed(exc)
    return Rediagnosis.of(report, with_errors=True)


# ------------------------------------------------------------------ model surgery helpers


def _clone(model: Any) -> Any:
    """A copy with the same weights (predictor_graph.copy_model), compiled as the original."""
    from kerasdoctor.predictor_graph import copy_model

    clone = copy_model(model)
    _recompile(model, clone)
    return clone


def _recompile(source: Any, target: Any) -> None:
    """Carry the loss and optimizer settings, so the repaired file can be fine-tuned and
    diagnosed as the original (its loss is a model fact); best effort."""
    if not getattr(source, "compiled", False):
        return
    import contextlib

    # a custom loss that does not deserialise: the repaired model is saved uncompiled
    with contextlib.suppress(Exception):
        target.compile_from_config(source.get_compile_config())


def _find(model: Any, name: str) -> Any:
    from kerasdoctor.predictor_graph import all_layers

    for layer in all_layers(model):
        if layer.name == name:
            return layer
    raise CannotRepair(f"layer '{name}' not found in the copy of the model")


def _output_dense(md: ModelData, model: Any) -> tuple[Any, str]:
    """The Dense layer whose output is the head's pre-activation in `model` (a clone of md's
    model, same layer names), and the head's activation."""
    orig = md.lm.keras_model
    layer = output_layer(orig, md.lm.output_index)
    if layer is None:
        raise CannotRepair("the output has no layer history to edit")
    name = type(layer).__name__
    if name == "Dense":
        act = layer.get_config().get("activation", "linear")
        act = act if isinstance(act, str) else "custom"
        dense = layer
    elif name in ("Activation", "Softmax"):
        act = "softmax" if name == "Softmax" else str(layer.get_config().get("activation"))
        dense = producer(layer.input)
        if (
            dense is None
            or type(dense).__name__ != "Dense"
            or dense.get_config().get("activation") != "linear"
        ):
            raise CannotRepair(
                "the activation at the output is not fed by a linear Dense "
                "layer: no logit to shift or reorder"
            )
    else:
        raise CannotRepair(
            f"the output layer is a {name}, not a Dense layer (or a Dense "
            "followed by its activation): no logit to shift or reorder"
        )
    if act not in ("softmax", "sigmoid", "linear"):
        raise CannotRepair(
            f"the output activation is {act}: only softmax, sigmoid or "
            "linear (logit) heads can be edited this way"
        )
    if not dense.use_bias:
        raise CannotRepair(f"the output Dense '{dense.name}' has no bias to shift")
    return _find(model, dense.name), act


def _dense_weights(dense: Any) -> tuple[np.ndarray, np.ndarray]:
    w, b = dense.get_weights()[:2]
    return np.asarray(w, np.float64), np.asarray(b, np.float64)


def _set_dense(dense: Any, w: np.ndarray, b: np.ndarray) -> None:
    old = dense.get_weights()
    dense.set_weights([w.astype(old[0].dtype), b.astype(old[1].dtype), *old[2:]])


# ------------------------------------------------------------------ logit shifts (issue 16)

# Layers whose output is an affine map of their input plus a bias per unit of the last axis
# (channels_last), so that subtracting c from that bias subtracts c from the logit.
LOGIT_LAYERS = (
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "SeparableConv1D",
    "SeparableConv2D",
)


def _act_name(layer: Any) -> str:
    act = layer.get_config().get("activation", "linear")
    return act if isinstance(act, str) else "custom"


def _logit_layer(layer: Any) -> Any | None:
    """`layer` (or the layer a TimeDistributed wraps) when it is one of LOGIT_LAYERS with a
    bias over the last axis; None otherwise."""
    if type(layer).__name__ == "TimeDistributed":
        layer = layer.layer
    if type(layer).__name__ not in LOGIT_LAYERS:
        return None
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None
    return layer


def shift_output_logits(
    lm: Any, shift: np.ndarray, activations: tuple[str, ...]
) -> tuple[Any, str, LogitShiftSurgery]:
    """A copy of lm's model whose output logits z (the last axis, before its sigmoid or
    softmax) become z - shift, made of standard layers only:

    - the head is a Dense / Conv (or TimeDistributed(Dense)) whose activation is in
      `activations`, or a linear one feeding an Activation / Softmax layer: its bias -= shift;
    - an Activation / Softmax layer fed by anything else: a fixed Normalization(mean=shift,
      variance=1), which computes z - shift, is inserted before it.

    For a sigmoid, sigmoid(z - logit t) > 0.5 exactly when sigmoid(z) > t; for a softmax,
    argmax softmax(z - c) = argmax (log p - c). CannotRepair when neither applies."""
    from kerasdoctor._keras import keras

    k = keras()
    model = _clone(lm.keras_model)
    units = int(lm.output_shape[-1] or 0)
    shift = np.asarray(shift, np.float64).reshape(-1)
    if shift.size != units:
        raise CannotRepair(f"{shift.size} shifts for an output of {units} units")
    layer = output_layer(model, lm.output_index)
    if layer is None:
        raise CannotRepair("the output has no layer history to edit")
    layer = innermost_head(layer)  # a nested model at the output: its head
    kind = type(layer).__name__
    wanted = " or ".join(activations)
    target, act = _logit_layer(layer), ""
    if target is not None:
        act = _act_name(target)
        if act not in activations:
            raise CannotRepair(
                f"the output layer '{layer.name}' has a {act} activation; this "
                f"repair shifts the logits of a {wanted} head"
            )
    elif kind in ("Activation", "Softmax"):
        act = "softmax" if kind == "Softmax" else str(layer.get_config().get("activation"))
        if act not in activations:
            raise CannotRepair(
                f"the output activation is {act}; this repair shifts the logits of a {wanted} head"
            )
        if kind == "Softmax" and layer.get_config().get("axis", -1) not in (
            -1,
            len(lm.output_shape) - 1,
        ):
            raise CannotRepair("the output softmax is not over the last axis")
        prev = producer(layer.input)
        feeder = _logit_layer(prev) if prev is not None else None
        if feeder is not None and _act_name(feeder) == "linear" and feeder.use_bias:
            target = feeder
        else:  # no bias to shift: a fixed Normalization computes z - shift before it
            if len(model.outputs) != 1:
                raise CannotRepair(
                    f"the {act} layer '{layer.name}' is fed by no linear layer "
                    "with a bias, in a model with several outputs"
                )
            norm = k.layers.Normalization(
                axis=-1,
                mean=shift,
                variance=np.ones_like(shift),
                name=f"repair_logit_shift_{layer.name}",
            )
            rebuilt = k.Model(model.inputs, layer(norm(layer.input)), name=model.name)
            _recompile(lm.keras_model, rebuilt)
            return (
                rebuilt,
                (
                    f"inserted a fixed Normalization (subtracts the shift from the "
                    f"logits) before the {act} layer '{layer.name}'"
                ),
                LogitShiftSurgery(norm.name, "normalization", tuple(shift.tolist())),
            )
    else:
        raise CannotRepair(
            f"the output layer is a {kind}, not a Dense/Conv layer (or one "
            "followed by its activation): no logit to shift"
        )
    if not target.use_bias:
        raise CannotRepair(f"the output layer '{target.name}' has no bias to shift")
    weights = target.get_weights()
    bias_at = 2 if type(target).__name__.startswith("SeparableConv") else 1  # after kernels
    bias = np.asarray(weights[bias_at], np.float64)
    if bias.shape != (units,):
        raise CannotRepair(
            f"the bias of '{target.name}' has shape {bias.shape}, not one "
            f"value per output unit ({units})"
        )
    weights[bias_at] = (bias - shift).astype(weights[bias_at].dtype)
    target.set_weights(weights)
    return (
        model,
        f"shifted the output bias of '{target.name}'",
        LogitShiftSurgery(target.name, "bias", tuple(shift.tolist())),
    )


# ------------------------------------------------------------------ the repairs


def _batchnorm(job: _Job) -> tuple[Any, str, BatchNormSurgery]:
    """AdaBN on the fitting half (reestimate_batchnorm)."""
    md = job.md
    return reestimate_batchnorm(md.lm, md.facts, md.arrays, job.fit, job.seed)


def reestimate_batchnorm(
    lm: Any,
    facts: Any,
    arrays: list[np.ndarray],
    rows: np.ndarray,
    seed: int,
    batch: int = BN_BATCH,
) -> tuple[Any, str, BatchNormSurgery]:
    """AdaBN / update_bn on a copy of lm's model: every BatchNormalization layer's moving mean
    and variance become the average of its batch statistics over `rows` of `arrays` (batches
    weighted by their rows); no weight is trained. The other layers run in inference mode
    (Dropout stays off). Shared by the single-label, dense and multi-label repairs."""
    from kerasdoctor.predictor_graph import all_layers
    from kerasdoctor.probe import Predictor

    model = _clone(lm.keras_model)
    bns = [layer for layer in all_layers(model) if type(layer).__name__ == "BatchNormalization"]
    if not bns:
        raise CannotRepair(
            "the model has no BatchNormalization layer: no statistics to re-estimate"
        )
    cast = Predictor(lm, facts, taps=False).cast
    # shuffled: DATA may be sorted by class, and a batch of one class has other statistics
    order = np.random.default_rng(seed).permutation(np.asarray(rows))
    originals = [(b.call, b.momentum) for b in bns]

    def forced(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return call(inputs, training=True, mask=mask)

        return run

    for b in bns:
        b.call = forced(b.call)
    seen = 0
    try:
        for s in range(0, order.size, batch):
            part_rows = np.sort(order[s : s + batch])  # sorted: h5py-style arrays need it
            for b in bns:  # moving = moving * seen/(seen+n) + batch * n/(seen+n)
                b.momentum = seen / (seen + part_rows.size)
            part = cast([np.asarray(a[part_rows]) for a in arrays])
            model(part if len(part) > 1 else part[0], training=False)
            seen += part_rows.size
    finally:
        for b, (_, momentum) in zip(bns, originals):
            b.__dict__.pop("call", None)  # back to the class's own call
            b.momentum = momentum
    what = (
        f"re-estimated the moving mean and variance of {len(bns)} BatchNormalization "
        f"layer(s) from {seen} rows (average over shuffled batches of {batch}; no "
        "weight trained)"
    )
    return model, what, BatchNormSurgery(tuple(b.name for b in bns), seen, batch)


# transform -> (scale, offset) of a Rescaling layer doing it
RESCALINGS: dict[str, tuple[float, float]] = {
    "x255": (255.0, 0.0),
    "/255": (1.0 / 255.0, 0.0),
    "[0,1]->[-1,1]": (2.0, -1.0),
    "[0,255]->[-1,1]": (1.0 / 127.5, -1.0),
    "[-1,1]->[0,1]": (0.5, 0.5),
    "[-1,1]->[0,255]": (127.5, 127.5),
}
CAFFE_MEAN = (103.939, 116.779, 123.68)


def _preprocessing(job: _Job) -> tuple[Any, str, InputTransformSurgery]:
    """The diagnosis's restoring transform, prepended as standard layers."""
    ev = job.finding.evidence
    rt = ev.get("restoring_transform")
    if not rt:
        raise CannotRepair(
            "the diagnosis found no transform of the data that restores the "
            "model (only a static disagreement with its preprocessing layer): "
            "prepare the data as in training"
        )
    per_input: dict[str, str] = {}
    if rt["transform"] == "combined":
        trials = (ev.get("sweep") or {}).get("trials", [])
        for name in rt["inputs"]:
            mine = [t for t in trials if t["inputs"] == [name]]
            if mine:
                per_input[name] = max(mine, key=lambda t: t["balanced_accuracy"])["transform"]
    else:
        per_input[rt["input"]] = rt["transform"]
    md = job.md
    model, what, details = prepend_transforms(md.lm, md.facts, md.arrays, job.fit, per_input)
    return model, what, replace(details, code=rt.get("code"))


def prepend_transforms(
    lm: Any, facts: Any, arrays: list[np.ndarray], fit: np.ndarray, per_input: dict[str, str]
) -> tuple[Any, str, InputTransformSurgery]:
    """A model that takes the data as it is: `per_input` (input name -> a transform of
    checks.preprocessing_mismatch._transforms) done by fixed standard layers in front of a
    copy of lm's model. A statistic a transform needs (standardise) is counted on the `fit`
    rows only. Shared by the single-label, dense and multi-label repairs."""
    from kerasdoctor._keras import keras

    k = keras()
    inner = _clone(lm.keras_model)
    new_inputs, tensors, done = [], [], []
    for i, (spec, tensor) in enumerate(zip(lm.inputs, lm.keras_model.inputs)):
        inp = k.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype, name=spec.name)
        t = inp
        transform = per_input.get(spec.name)
        if transform is not None:
            t = _transform_layers(lm, facts, arrays, fit, i, spec.name, transform, inp)
            done.append(InputTransform(spec.name, transform))
        new_inputs.append(inp)
        tensors.append(t)
    if not done:
        raise CannotRepair("the restoring transform names no input of this model")
    out = inner(tensors if len(tensors) > 1 else tensors[0])
    model = k.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0], out, name=f"{inner.name}_repaired"
    )
    _recompile(lm.keras_model, model)
    what = "prepended " + "; ".join(f"{_described(d)} to input '{d.input}'" for d in done)
    return model, what, InputTransformSurgery(tuple(done))


def _described(done: InputTransform) -> str:
    """The transform in words, as the diagnosis describes it."""
    from kerasdoctor.checks.preprocessing_mismatch import DESCRIBE

    return DESCRIBE.get(done.transform, done.transform).format("the data") + " (as layers)"


def _transform_layers(
    lm: Any,
    facts: Any,
    arrays: list[np.ndarray],
    fit: np.ndarray,
    index: int,
    name: str,
    transform: str,
    inp: Any,
) -> Any:
    """inp through the standard layers that do `transform` (fixed, non-trainable)."""
    from kerasdoctor._keras import keras

    k = keras()
    shape = tuple(inp.shape[1:])
    if transform in RESCALINGS:
        scale, offset = RESCALINGS[transform]
        return k.layers.Rescaling(scale, offset, name=f"repair_rescale_{index}")(inp)
    if transform in ("bgr<->rgb", "caffe"):
        if len(shape) != 3:
            raise CannotRepair(f"input '{name}' is not an image (H, W, C): no channels to reorder")
        c = int(shape[-1])
        caffe = transform == "caffe"
        conv = k.layers.Conv2D(
            c, 1, use_bias=caffe, trainable=False, name=f"repair_channel_order_{index}"
        )
        out = conv(inp)
        kernel = np.zeros((1, 1, c, c), np.float32)
        for j in range(c):  # output channel j is input channel c-1-j
            kernel[0, 0, c - 1 - j, j] = 1.0
        conv.set_weights([kernel, -np.asarray(CAFFE_MEAN, np.float32)] if caffe else [kernel])
        return out
    if transform == "undo-normalization":
        norm = facts.input_normalizers.get(name)
        if norm is None:
            raise CannotRepair(f"input '{name}' has no Normalization layer to undo")
        layer = _find(lm.keras_model, norm.layer)
        mean = np.asarray(layer.mean, np.float64)
        var = np.asarray(layer.variance, np.float64)
        axis = layer.axis
        return k.layers.Normalization(
            axis=axis,
            mean=_squeeze_for(mean, axis),
            variance=_squeeze_for(var, axis),
            invert=True,
            name=f"repair_unstandardise_{index}",
        )(inp)
    if transform == "undo-rescaling":
        norm = facts.input_normalizers.get(name)
        if norm is None:
            raise CannotRepair(f"input '{name}' has no Rescaling layer to undo")
        sc = float(np.asarray(norm.params.get("scale", 1.0)).reshape(-1)[0])
        off = float(np.asarray(norm.params.get("offset", 0.0) or 0.0).reshape(-1)[0])
        return k.layers.Rescaling(1.0 / sc, -off / sc, name=f"repair_rescale_{index}")(inp)
    if transform == "standardise":
        # per feature (last axis), counted on the fitting half only
        a = np.asarray(arrays[index][np.sort(np.asarray(fit))], np.float64).reshape(
            -1, shape[-1] if shape else 1
        )
        mean = np.nanmean(a, axis=0)
        var = np.nanvar(a, axis=0)
        var = np.where(np.isfinite(var) & (var > 0), var, 1.0)
        return k.layers.Normalization(
            axis=-1, mean=mean, variance=var, name=f"repair_standardise_{index}"
        )(inp)
    raise CannotRepair(f"no layer does the transform '{transform}'")


def _squeeze_for(values: np.ndarray, axis: Any) -> np.ndarray:
    """A Normalization layer's broadcast statistics as its constructor takes them."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis or ())
    return values.reshape(-1) if len(axes) <= 1 else np.squeeze(values)


def _label_permutation(job: _Job) -> tuple[Any, str, OutputOrderSurgery]:
    """Reorder the output units (kernel columns and bias) by the one-to-one matching of units
    to classes fitted on the fitting half."""
    from scipy.optimize import linear_sum_assignment

    md, k = job.md, job.k
    units = int(md.lm.output_shape[-1] or 1)
    model = _clone(md.lm.keras_model)
    dense, act = _output_dense(md, model)
    w, b = _dense_weights(dense)
    y, pred = job.y[job.fit], job.base.preds[job.fit]
    classes = 2 if units == 1 else units
    if classes != k:
        raise CannotRepair(
            f"the model has {classes} outputs classes and the data {k}: a "
            "reordering cannot map one onto the other"
        )
    conf = np.zeros((k, k))
    np.add.at(conf, (y, np.clip(pred, 0, k - 1)), 1.0)
    sup = conf.sum(axis=1)
    seen = np.flatnonzero(sup > 0)
    rows, cols = linear_sum_assignment(conf[seen] / sup[seen, None], maximize=True)
    to_label = np.full(k, -1)
    to_label[cols] = seen[rows]  # output unit -> label class
    free = [c for c in range(k) if c not in set(to_label.tolist())]
    for u in np.flatnonzero(to_label < 0):  # units no class claimed keep the free labels
        to_label[u] = free.pop(0)
    if np.array_equal(to_label, np.arange(k)):
        raise CannotRepair(
            "on the fitting half the best matching of output units to classes "
            "is the order the model has: nothing to reorder"
        )
    if units == 1:  # binary sigmoid/logit: the swap is P(1) <-> P(0), a negated logit
        if act not in ("sigmoid", "linear"):
            raise CannotRepair(f"a one-unit {act} head cannot be swapped")
        _set_dense(dense, -w, -b)
        what = "swapped the two classes of the one-unit output (negated its kernel and bias)"
    else:
        perm = np.argsort(to_label)  # new unit L is the old unit that meant class L
        _set_dense(dense, w[:, perm], b[perm])
        what = (
            f"reordered the {units} output units of '{dense.name}' (kernel columns and "
            "bias) into the labels' class order"
        )
    return model, what, OutputOrderSurgery(dense.name, tuple(to_label.tolist()))


def _scores(job: _Job) -> np.ndarray:
    """P(class 1) of a binary model on every row."""
    probs = job.base.probs
    return probs[:, 0] if probs.shape[1] == 1 else probs[:, 1]


def _decision_threshold(job: _Job) -> tuple[Any, str, ThresholdSurgery]:
    """The Youden cut on P(class 1), chosen on the fitting half, moved into the logit's bias:
    sigmoid(z - logit t) > 1/2 exactly when sigmoid(z) > t (softmax: z1 - z0 > logit t)."""
    from sklearn.metrics import roc_curve

    md = job.md
    units = int(md.lm.output_shape[-1] or 1)
    if job.k != 2 or units > 2:
        raise CannotRepair("not a binary model: no single cut decides the class")
    y, s = job.y[job.fit], _scores(job)[job.fit]
    ok = np.isfinite(s)
    if np.unique(y[ok]).size < 2:
        raise CannotRepair("the fitting half holds one class only: no cut can be chosen")
    fpr, tpr, thr = roc_curve(y[ok], s[ok])
    t = float(np.clip(min(thr[int(np.argmax(tpr - fpr))], 1.0), 1e-7, 1 - 1e-7))
    model = _clone(md.lm.keras_model)
    dense, act = _output_dense(md, model)
    if units == 2 and act not in ("softmax", "linear"):
        raise CannotRepair("two independent sigmoid units: no single cut decides the class")
    w, b = _dense_weights(dense)
    shift = float(np.log(t / (1.0 - t)))
    b = b.copy()
    b[-1] -= shift  # one unit: its logit; two units: z1 (P1 > t iff z1 - z0 > logit t)
    _set_dense(dense, w, b)
    what = (
        f"moved the decision cut P(class 1) = {t:.4g} (chosen on the fitting half) into "
        f"the output bias of '{dense.name}' (bias -= logit({t:.4g}) = {shift:.4g}), so the "
        "usual 0.5 / argmax rule applies it"
    )
    return model, what, ThresholdSurgery(dense.name, t, -shift)


def _class_imbalance(job: _Job) -> tuple[Any, str, ClassImbalanceSurgery]:
    """Two cures of a head that follows the label prior, chosen on the fitting half:

    - logit adjustment (Menon et al., ICLR 2021): the log label prior subtracted from the
      output bias;
    - classifier re-training (cRT, Kang et al., ICLR 2020): the output layer re-fitted on the
      frozen penultimate features by a class-balanced logistic regression.

    The fitting half is split again: both are fitted on one quarter and scored on the other;
    the winner is re-fitted on the whole fitting half. The held-out half judges it after.
    """
    from kerasdoctor.experiments import balanced_accuracy, split_halves
    from kerasdoctor.predictor_graph import head_tap
    from kerasdoctor.probe import Predictor

    md, k = job.md, job.k
    units = int(md.lm.output_shape[-1] or 1)
    model = _clone(md.lm.keras_model)
    dense, act = _output_dense(md, model)
    if not (
        (units == k and act in ("softmax", "linear"))
        or (units == 1 and k == 2 and act in ("sigmoid", "linear"))
    ):
        raise CannotRepair(
            f"the output is {units} {act} unit(s) for {k} classes: these "
            "repairs need a softmax/linear unit per class (or one sigmoid unit "
            "for two)"
        )
    w, b = _dense_weights(dense)
    fit_x = [a[job.fit] for a in md.arrays]
    tap = head_tap(Predictor(md.lm, md.facts, taps=False), fit_x)
    feats = None if tap.features is None else np.asarray(tap.features, np.float64)
    y = job.y[job.fit]

    def adjusted(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = np.bincount(y[rows], minlength=k)[:k].astype(np.float64)
        prior = (counts + 0.5) / (counts.sum() + 0.5 * k)  # no log 0 for an absent class
        shift = np.log(prior) if units == k else np.array([np.log(prior[1] / prior[0])])
        return w, b - shift

    def crt(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert feats is not None
        return _balanced_head(feats[rows], y[rows], k, units, job.seed)

    def preds(wb: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
        assert feats is not None
        z = feats[rows] @ wb[0] + wb[1]
        out: np.ndarray = (z[:, 0] > 0).astype(np.int64) if units == 1 else np.argmax(z, axis=1)
        return out

    fitters: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
        "logit-adjustment": adjusted
    }
    scores: dict[str, float] = {}
    if feats is not None and feats.shape[1] > 0:
        fitters["classifier-retraining"] = crt
        qa, qb = split_halves(y, job.seed + 1)
        if np.unique(y[qa]).size == k and qb.size:
            for name, fitter in fitters.items():
                scores[name] = balanced_accuracy(y[qb], preds(fitter(qa), qb), k)
    chosen = max(scores, key=lambda n: scores[n]) if scores else "logit-adjustment"
    if chosen != "logit-adjustment" and scores[chosen] <= scores["logit-adjustment"]:
        chosen = "logit-adjustment"  # a tie goes to the smaller edit
    w2, b2 = fitters[chosen](np.arange(y.size))
    _set_dense(dense, w2, b2)
    if chosen == "logit-adjustment":
        what = (
            "logit adjustment: subtracted the log label prior (counted on the fitting "
            f"half) from the output bias of '{dense.name}'"
        )
    else:
        what = (
            f"re-fitted the output layer '{dense.name}' on the model's frozen penultimate "
            "features with a class-balanced logistic regression (cRT; fitting half only)"
        )
    return model, what, ClassImbalanceSurgery(dense.name, chosen, tuple(scores.items()))


def _balanced_head(
    feats: np.ndarray, y: np.ndarray, k: int, units: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of a class-balanced logistic regression on the features, as the
    output Dense takes them (standardisation folded in)."""
    from sklearn.linear_model import LogisticRegression

    mu = feats.mean(axis=0)
    sd = feats.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed).fit(
        (feats - mu) / sd, y
    )
    coef = np.zeros((k, feats.shape[1]))
    icpt = np.zeros(k)
    classes = clf.classes_.astype(np.int64)
    if clf.coef_.shape[0] == 1:  # binary: one row for class classes_[1] against classes_[0]
        coef[classes[1]], icpt[classes[1]] = clf.coef_[0], clf.intercept_[0]
    else:
        coef[classes], icpt[classes] = clf.coef_, clf.intercept_
        icpt[np.setdiff1d(np.arange(k), classes)] = -1e4  # a class never seen: never chosen
    w = (coef / sd).T  # (d, k)
    b = icpt - (mu / sd) @ coef.T
    if units == 1:  # one logit: z1 - z0
        return w[:, 1:2] - w[:, 0:1], b[1:2] - b[0:1]
    return w, b


def _single_unit_softmax(job: _Job) -> tuple[Any, str, SigmoidSurgery]:
    """A softmax over one unit is 1.0 whatever its logit. Where that logit was learned (the
    model trained with a sigmoid or from logits, the softmax added afterwards, as in
    `keras.Sequential([model, keras.layers.Softmax()])`), a sigmoid on the same logit is the
    model that was trained: swap it in, but only when the logit ranks the classes on the
    fitting half beyond chance and its noise. A softmax present during training passed no
    gradient, so its logit is whatever the initialisation gave: exit 1 then."""
    from kerasdoctor.experiments import balanced_accuracy, noise_bound
    from kerasdoctor.predictor_graph import head_tap
    from kerasdoctor.probe import Predictor

    md = job.md
    if job.k != 2:
        raise CannotRepair(
            f"the labels hold {job.k} classes; a sigmoid decides two: retrain "
            f"with {job.k} softmax units (kerasdoctor explain single-unit-softmax)"
        )
    tap = head_tap(Predictor(md.lm, md.facts, taps=False), [a[job.fit] for a in md.arrays])
    z = np.asarray(tap.preacts, np.float64).reshape(len(job.fit), -1)[:, 0]
    y = job.y[job.fit]
    bacc = balanced_accuracy(y, (z > 0).astype(np.int64), 2)
    need = 0.5 + MIN_GAIN_Z * noise_bound(np.bincount(y, minlength=2)[:2])
    if not bacc > need:
        raise CannotRepair(
            f"read through a sigmoid, the logit under the softmax reaches balanced accuracy "
            f"{bacc:.1%} on the fitting half, not above chance and its noise ({need:.1%}): "
            f"{UNREPAIRABLE['single-unit-softmax']}"
        )
    model, what, details = sigmoid_head(md.lm)
    return model, what, replace(details, fit_balanced_accuracy=bacc)


def sigmoid_head(lm: Any) -> tuple[Any, str, SigmoidSurgery]:
    """A copy of lm's model whose one-unit softmax output is a sigmoid on the same logit: the
    activation of the Dense / Conv (or TimeDistributed) head swapped, or a Softmax/Activation
    layer at the output replaced by Activation('sigmoid') on its input. Needs no fitting.
    Shared by the single-label, dense and multi-label repairs."""
    from kerasdoctor._keras import keras

    if int(lm.output_shape[-1] or 0) != 1:
        raise CannotRepair(
            f"the output has {lm.output_shape[-1]} units, not one: a softmax "
            "over them is no single-unit softmax"
        )
    model = _clone(lm.keras_model)
    head = output_layer(model, lm.output_index)
    if head is None:
        raise CannotRepair("the output has no layer history to edit")
    head = innermost_head(head)  # a nested model at the output: its head
    target = _logit_layer(head)
    if target is not None:
        if _act_name(target) != "softmax":
            raise CannotRepair(
                f"the output layer '{target.name}' has a {_act_name(target)} "
                "activation, not a softmax"
            )
        target.activation = keras().activations.get("sigmoid")
        what = f"replaced the softmax of the one-unit output layer '{target.name}' by a sigmoid"
        return model, what, SigmoidSurgery(target.name)
    kind = type(head).__name__
    act = (
        "softmax"
        if kind == "Softmax"
        else (str(head.get_config().get("activation")) if kind == "Activation" else kind)
    )
    if act != "softmax":
        raise CannotRepair(
            f"the output layer '{head.name}' is a {kind} ({act}), not a softmax over one unit"
        )
    if len(model.outputs) != 1 or head not in model.layers:
        raise CannotRepair(
            "the one-unit softmax is a separate layer of a model with several "
            "outputs (or inside a nested model): rebuild the head with a "
            "sigmoid by hand"
        )
    outputs = keras().layers.Activation("sigmoid", name=f"{head.name}_sigmoid")(head.input)
    rebuilt = keras().Model(model.inputs, outputs, name=model.name)
    _recompile(lm.keras_model, rebuilt)
    return (
        rebuilt,
        (f"replaced the one-unit softmax layer '{head.name}' by a sigmoid on its input"),
        SigmoidSurgery(head.name),
    )


REPAIRS: dict[str, Callable[[_Job], tuple[Any, str, Surgery]]] = {
    "batchnorm-statistics": _batchnorm,
    "preprocessing-mismatch": _preprocessing,
    "label-permutation": _label_permutation,
    "decision-threshold": _decision_threshold,
    "class-imbalance": _class_imbalance,
    "single-unit-softmax": _single_unit_softmax,
}
