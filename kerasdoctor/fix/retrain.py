"""Fine-tune a saved model with balanced class weights and prove it on rows it never saw.

The model is loaded with its TRAINING data, its output bias re-fitted when that lowers the
class-balanced loss, then trained for a few epochs with scikit-learn's 'balanced' class
weights. Per-class recall before and after is measured only on rows the fine-tuning never
touches: EVAL_DATA when given (--eval), otherwise a seeded stratified held-out part of the
training data, whose row indices are saved next to the new model (FIXED.heldout.json) so
nothing later mistakes trained-on rows for evaluation data. The result goes to a NEW file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasdoctor.errors import InputError
from kerasdoctor.fix.common import (
    INTERVAL_LEVEL,
    INTERVAL_METHOD,
    ModelData,
    ProgressFn,
)
from kerasdoctor.fix.results import BiasRefit, Interval, RetrainReport, Summary

# Losses whose targets kerasdoctor knows how to encode, by the canonical names of model_facts.
SPARSE_LOSSES = {"sparse_categorical_crossentropy"}
ONE_HOT_LOSSES = {"categorical_crossentropy", "categorical_focal_crossentropy", "kl_divergence"}
BINARY_LOSSES = {"binary_crossentropy", "binary_focal_crossentropy"}
DEFAULT_LEARNING_RATE = 1e-3  # Adam's default, used only when the file has no optimizer
# The re-fitted output bias replaces the saved one only when it lowers the class-balanced
# cross-entropy by more than this many nats per sample: 0.01 nats means the probability given
# to the true class changes by about 1% (e^0.01), below which the saved bias costs nothing a
# prediction would show and replacing it would only fit the noise of the sample.
BIAS_MIN_GAIN = 0.01
BIAS_SAMPLE = 4096  # rows of the training part used to re-fit the bias (stratified)
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
# Without --eval, the share of the data held out (stratified) to measure before/after on.
# 0.3 rather than the 0.2 of a training recipe: this part is all the evidence the command
# gives, and a balanced accuracy's interval narrows as 1/sqrt(held-out rows): 0.3 makes it
# sqrt(1.5) = 1.22x narrower than 0.2 for 1/8 fewer training rows (70 against 80 of 100),
# and on a small folder (about 5 images a class) it holds out 2 a class instead of 1, so no
# class's recall rests on a single image.
DEFAULT_HELDOUT = 0.3


@dataclass
class LossPlan:
    """Which loss the fine-tuning uses and how its targets are encoded."""

    loss: Any  # a Keras loss object, or None to keep the model's compiled loss
    name: str
    from_logits: bool
    targets: str  # "index" | "one-hot" | "column"
    source: str  # "compiled" | "chosen"
    note: str | None = None


def _head_check(md: ModelData, k: int) -> tuple[int, str]:
    """(units, head) of a model that can be fine-tuned on these labels; else exit 2."""
    lm, facts = md.lm, md.facts
    if lm.keras_model is None:
        raise InputError(
            f"MODEL: {lm.path} is a SavedModel: it cannot be trained further here; "
            "give the .keras or .h5 file it was exported from"
        )
    if len(lm.keras_model.outputs) > 1:
        raise InputError(
            f"MODEL: {lm.path} has {len(lm.keras_model.outputs)} outputs; --retrain fine-tunes "
            "single-output classifiers"
        )
    if len(lm.output_shape) != 2:
        raise InputError(
            f"MODEL: {lm.path} outputs shape {tuple(lm.output_shape)}; --retrain expects "
            "(batch, classes)"
        )
    units, head = facts.n_outputs, facts.head
    y_max = int(md.raw.labels.y.max())
    if units == 1 and head == "softmax":
        raise InputError(
            f"MODEL: {lm.path} has a softmax over a single unit, which always outputs 1.0: "
            "training cannot fix it; replace the head (kerasdoctor explain single-unit-softmax)"
        )
    if (units == 1 and y_max > 1) or (units > 1 and k != units):
        classes = y_max + 1 if units == 1 else k
        raise InputError(
            f"MODEL: {lm.path} has {units} output unit(s) but DATA {md.raw.path} has {classes} "
            "classes; fine-tuning cannot fix that (kerasdoctor explain output-units-mismatch)"
        )
    if facts.nonfinite_weights:
        bad = facts.nonfinite_weights[0]
        raise InputError(
            f"MODEL: {lm.path} has NaN/Inf weights (layer '{bad.layer}': {bad.n_nan} NaN, "
            f"{bad.n_inf} Inf); fine-tuning cannot start from them: train it again from "
            "scratch (kerasdoctor explain nonfinite-weights)"
        )
    if head not in ("softmax", "sigmoid", "linear"):
        raise InputError(
            f"MODEL: {lm.path} ends in a '{head}' activation, which is not a classifier head "
            "(softmax, sigmoid or linear logits); see kerasdoctor explain output-activation"
        )
    return units, head


def plan_loss(md: ModelData, units: int, head: str) -> LossPlan:
    """The model's compiled loss when it fits its head; otherwise the loss that does."""
    from kerasdoctor._keras import keras

    k = keras()
    facts = md.facts
    logits = head == "linear"
    note = None
    if facts.compiled and facts.loss:
        name, fl = facts.loss, bool(facts.loss_from_logits)
        targets = None
        if units > 1 and head in ("softmax", "linear"):
            if name in SPARSE_LOSSES:
                targets = "index"
            elif name in ONE_HOT_LOSSES and (name != "kl_divergence" or not logits):
                targets = "one-hot"
        elif head in ("sigmoid", "linear") and name in BINARY_LOSSES:
            targets = "column" if units == 1 else "one-hot"
        fits = targets is not None and (name == "kl_divergence" or fl == logits)
        if fits and targets is not None:
            return LossPlan(None, name, fl, targets, "compiled")
        note = (
            f"the compiled loss {name}{' (from_logits=True)' if fl else ''} does not fit a "
            f"{head} head of {units} unit(s); fine-tuned with the loss that does instead"
        )
    if units > 1 and head in ("softmax", "linear"):
        loss = k.losses.SparseCategoricalCrossentropy(from_logits=logits)
        return LossPlan(loss, "sparse_categorical_crossentropy", logits, "index", "chosen", note)
    loss = k.losses.BinaryCrossentropy(from_logits=logits)
    targets = "column" if units == 1 else "one-hot"
    return LossPlan(loss, "binary_crossentropy", logits, targets, "chosen", note)


def encode_targets(y: np.ndarray, kind: str, k: int) -> np.ndarray:
    if kind == "index":
        return y.astype(np.int64)
    if kind == "column":
        return y.astype(np.float32).reshape(-1, 1)
    out: np.ndarray = np.eye(k, dtype=np.float32)[y]
    return out


# ---------------------------------------------------------------- the output bias


def _head_dense(model: Any, facts: Any) -> Any:
    """The Dense layer whose bias feeds the output (through an Activation/Softmax layer)."""
    from kerasdoctor.model_facts import TRANSPARENT, _parents

    if not facts.head_layer:
        return None
    try:
        layer = model.get_layer(facts.head_layer)
    except ValueError:  # inside a nested model
        return None
    for _ in range(10):
        cls = type(layer).__name__
        if cls == "Dense":
            bias = getattr(layer, "bias", None)
            return layer if bias is not None and tuple(bias.shape) == (facts.n_outputs,) else None
        if cls in ("Activation", "Softmax") or cls in TRANSPARENT:
            parents = _parents(layer)
            if len(parents) != 1:
                return None
            layer = parents[0]
            continue
        return None
    return None


def balanced_loss(
    z0: np.ndarray, y: np.ndarray, b: np.ndarray, kind: str
) -> tuple[float, np.ndarray]:
    """Class-balanced cross-entropy of logits z0 + b, and its gradient in b.

    Each present class weighs the same in total (scikit-learn's 'balanced' weighting), which
    is what the fine-tuning minimises. kind: "softmax" (categorical) or "sigmoid" (per unit).
    """
    counts = np.bincount(y, minlength=max(z0.shape[1], 2))
    present = np.flatnonzero(counts)
    w = 1.0 / (present.size * counts[y])  # per-sample weight; they sum to 1
    z = z0 + b
    if kind == "softmax":
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        p = np.exp(z - lse[:, None])
        losses = lse - z[np.arange(y.size), y]
        t = np.eye(z.shape[1])[y]
    else:
        t = y.reshape(-1, 1).astype(np.float64) if z.shape[1] == 1 else np.eye(z.shape[1])[y]
        losses = (np.logaddexp(0.0, z) - t * z).sum(axis=1)
        p = 1.0 / (1.0 + np.exp(-z))
    grad = (w[:, None] * (p - t)).sum(axis=0)
    return float((w * losses).sum()), grad


def refit_bias(
    md: ModelData, train: np.ndarray, kind: str, seed: int, predictor: Any
) -> tuple[Any, BiasRefit]:
    """The output bias minimising the class-balanced loss with the features held fixed.

    A model trained on imbalanced data stores the imbalance in its output bias (the bias of an
    optimal plain-loss model is the log label prior plus what the features do not explain).
    Class-weighted training wants each class to count the same, so the bias it converges to
    differs; finding it is a small convex problem, solved here exactly on a stratified sample
    of the training part instead of being left to the first epochs of gradient steps.
    """
    model = md.lm.keras_model
    dense = _head_dense(model, md.facts)
    if dense is None:
        return None, BiasRefit(False, "the output layer is not a Dense layer")
    from kerasdoctor._keras import keras
    from kerasdoctor.probe import stratified_sample

    k = keras()
    try:
        features = k.Model(model.inputs, dense.input)
    except Exception as exc:  # a graph we cannot cut (nested models, shared layers)
        return None, BiasRefit(False, f"features not reachable ({type(exc).__name__})")
    y = md.raw.labels.y
    rows = train[stratified_sample(y[train], md.arrays, seed, limit=BIAS_SAMPLE)]
    xs = predictor.cast([a[rows] for a in md.arrays])
    h = np.asarray(features.predict(xs if len(xs) > 1 else xs[0], batch_size=256, verbose=0))
    if h.ndim != 2:
        return None, BiasRefit(False, "the output layer's input is not 2-D")
    kernel = np.asarray(dense.kernel, dtype=np.float64)
    b0 = np.asarray(dense.bias, dtype=np.float64)
    z0 = h.astype(np.float64) @ kernel
    from scipy.optimize import minimize

    yr = y[rows]
    loss0, _ = balanced_loss(z0, yr, b0, kind)
    res = minimize(lambda b: balanced_loss(z0, yr, b, kind), b0, jac=True, method="L-BFGS-B")
    b1 = np.asarray(res.x, dtype=np.float64)
    loss1, _ = balanced_loss(z0, yr, b1, kind)
    gain = loss0 - loss1
    applied = bool(np.isfinite(loss1) and gain > BIAS_MIN_GAIN)
    info = BiasRefit(
        applied=applied,
        layer=dense.name,
        before=tuple(float(v) for v in b0),
        refit=tuple(float(v) for v in b1),
        balanced_loss_before=float(loss0),
        balanced_loss_refit=float(loss1),
        reason=(
            f"the saved bias cost {gain:.3f} nats of class-balanced loss: re-fitted"
            if applied
            else f"the saved bias is within {BIAS_MIN_GAIN} nats of the class-balanced optimum: "
            "kept"
        ),
    )
    return (dense, b1) if applied else None, info


# ---------------------------------------------------------------- fine-tuning


def fresh_optimizer(saved: Any, learning_rate: float | None) -> tuple[Any, str | None]:
    """A new optimizer like `saved` (same class and settings), learning rate overridden.

    Without a saved optimizer, or one that cannot be rebuilt from its config, Adam.
    """
    from kerasdoctor._keras import keras

    k = keras()
    if saved is not None:
        try:
            cfg = dict(saved.get_config())
            if learning_rate is not None:
                cfg["learning_rate"] = learning_rate  # replaces a schedule too
            return type(saved).from_config(cfg), None
        except Exception as exc:  # a custom optimizer without a usable config
            note = f"the saved {type(saved).__name__} could not be rebuilt ({type(exc).__name__})"
    else:
        note = "the file holds no optimizer"
    lr = learning_rate or DEFAULT_LEARNING_RATE
    return k.optimizers.Adam(lr), f"{note}: fine-tuned with Adam"


def _learning_rate_of(model: Any) -> float | None:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None


def _progress_callback(k: Any, progress: ProgressFn, total: int) -> Any:
    class _Bar(k.callbacks.Callback):
        done = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.done += 1
            progress(self.done, total)

    return _Bar()


def heldout_path(output: Path) -> Path:
    """Where the held-out row indices of a retrain without --eval go: next to the model."""
    return output.with_suffix(".heldout.json")


def retrain(
    md: ModelData,
    output: Path,
    *,
    epochs: int = 10,
    learning_rate: float | None = None,
    validation_split: float = DEFAULT_HELDOUT,
    seed: int = 0,
    batch_size: int = 32,
    bias_reset: bool = True,
    progress: ProgressFn | None = None,
    eval_md: ModelData | None = None,
) -> RetrainReport:
    """Fine-tune md's model with balanced class weights, save it to `output`, report.

    md is the training data. With eval_md (EVAL_DATA), all of md trains and before/after are
    measured on eval_md; without it, a seeded stratified `validation_split` share of md is
    held out, never trained on, measured, and its row indices written to heldout_path(output).
    """
    from kerasdoctor._keras import keras
    from kerasdoctor.class_weights import class_weights
    from kerasdoctor.fix.common import (
        n_classes_of,
        names_for,
        predict_outputs,
        stratified_split,
        summarize,
    )
    from kerasdoctor.io import atomic_write, atomic_write_text
    from kerasdoctor.probe import Predictor

    k = keras()
    kc = n_classes_of(md.raw, md.facts.n_outputs)
    units, head = _head_check(md, kc)
    names = names_for(md.raw, kc)
    y = md.raw.labels.y
    plan = plan_loss(md, units, head)
    if eval_md is not None:
        y_eval = eval_md.raw.labels.y
        if y_eval.size and int(y_eval.max()) >= kc:
            raise InputError(
                f"EVAL_DATA: {eval_md.raw.path} has labels up to {int(y_eval.max())} but the "
                f"model and TRAIN_DATA {md.raw.path} have {kc} classes"
            )
        train, held = np.arange(y.size), np.arange(y_eval.size)
        scored = eval_md
    else:
        train, held = stratified_split(y, validation_split, seed)
        y_eval, scored = y, md
        if held.size == 0:
            raise InputError(
                f"--validation-split {validation_split} leaves no held-out sample in "
                f"TRAIN_DATA {md.raw.path} ({y.shape[0]} samples)"
            )
    if held.size == 0:
        raise InputError(f"EVAL_DATA: {scored.raw.path} holds no samples")
    model = md.lm.keras_model
    saved_optimizer = getattr(model, "optimizer", None)  # absent on a never-compiled model
    predictor = Predictor(md.lm, md.facts, taps=False)

    def measure() -> Summary:
        # only rows the fine-tuning never sees: EVAL_DATA, or the held-out part
        idx = None if eval_md is not None else held
        preds = predict_outputs(scored, idx, predictor=predictor).preds
        return summarize(y_eval[held], preds, names)

    before = measure()

    notes: list[str] = [plan.note] if plan.note else []
    if bias_reset:
        kind = "softmax" if plan.name in SPARSE_LOSSES | ONE_HOT_LOSSES else "sigmoid"
        new_bias, bias = refit_bias(md, train, kind, seed, predictor)
        if new_bias is not None:
            dense, b1 = new_bias
            dense.bias.assign(b1.astype(np.dtype(dense.bias.dtype)))
    else:
        bias = BiasRefit(False, "--no-bias-reset")

    weights = class_weights(y[train], kc)
    per_class = np.ones(kc)
    for c, wc in weights.class_weight.items():
        per_class[int(c)] = wc
    # The saved optimizer's kind and settings are kept, its state is not: a fresh instance
    # (moments from the old, unweighted loss would steer the first steps; and an optimizer
    # restored from a legacy file may be bound to other variable objects than the model's).
    optimizer, opt_note = fresh_optimizer(saved_optimizer, learning_rate)
    if opt_note:
        notes.append(opt_note)
    model.compile(optimizer=optimizer, loss=plan.loss if plan.loss is not None else model.loss)

    x_train = predictor.cast([a[train] for a in md.arrays])
    targets = encode_targets(y[train], plan.targets, kc)
    steps = int(np.ceil(train.size / batch_size)) * epochs
    callbacks = [_progress_callback(k, progress, steps)] if progress is not None else []
    history: list[float] = []
    if epochs > 0:
        k.utils.set_random_seed(seed)
        hist = model.fit(
            x_train if len(x_train) > 1 else x_train[0],
            targets,
            sample_weight=per_class[y[train]].astype(np.float32),
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
        history = [float(v) for v in hist.history.get("loss", [])]
        if history and not np.isfinite(history[-1]):
            raise InputError(
                f"fine-tuning diverged (loss {history[-1]}); nothing written: try a smaller "
                "--learning-rate"
            )
    after = measure()

    suffix = output.suffix.lower()

    def write(tmp: str) -> None:
        # Keras picks the format from the name, so save under a name with the right suffix,
        # then move it onto the temporary file that atomic_write renames into place.
        named = tmp + suffix
        try:
            model.save(named)
            os.replace(named, tmp)
        finally:
            if os.path.exists(named):
                os.unlink(named)

    atomic_write(output, write)
    rows_file = None
    if eval_md is None:
        rows_file = heldout_path(output)
        atomic_write_text(rows_file, heldout_json(md, train, held, validation_split, seed, output))
    return RetrainReport(
        model=md.lm.path,
        data=md.raw.path,
        eval_data=None if eval_md is None else eval_md.raw.path,
        output=str(output),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=_learning_rate_of(model),
        optimizer=type(model.optimizer).__name__,  # compiled above in every case
        loss=plan.name,
        loss_from_logits=plan.from_logits,
        loss_source=plan.source,
        validation_split=None if eval_md is not None else validation_split,
        seed=seed,
        n_train=int(train.size),
        n_heldout=int(held.size),
        heldout_file=None if rows_file is None else str(rows_file),
        interval=Interval(INTERVAL_LEVEL, INTERVAL_METHOD),
        class_names=tuple(names),
        class_weight=weights.class_weight,
        bias=bias,
        train_loss=tuple(history),
        before=before,
        after=after,
        notes=tuple(notes),
    )


def heldout_json(
    md: ModelData, train: np.ndarray, held: np.ndarray, share: float, seed: int, output: Path
) -> str:
    """The held-out rows of TRAIN_DATA, by index (and by file for an image folder)."""
    import json

    doc: dict[str, Any] = {
        "model": str(output),
        "data": md.raw.path,
        "n_samples": int(md.raw.n_samples),
        "heldout_share": share,
        "seed": seed,
        "n_train": int(train.size),
        "n_heldout": int(held.size),
        "note": (
            "rows of DATA the fine-tuning of this model never used, by their 0-based position "
            "in the order kerasdoctor reads DATA with this seed; every other row trained it"
        ),
        "heldout": [int(i) for i in held],
    }
    if md.row_names is not None:
        doc["files"] = [md.row_names[int(i)] for i in held]
    # one key a line, each list on one line: readable, and diff-able between runs
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
    return "{\n" + body + "\n}\n"


def check_output_name(output: Path) -> None:
    if output.suffix.lower() not in MODEL_SUFFIXES:
        raise InputError(
            f"--output {output}: a model file must end in .keras (or .h5 for the legacy format)"
        )
