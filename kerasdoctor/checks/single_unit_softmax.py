"""single-unit-softmax: a softmax over a last axis of size 1, whose output is always 1.0."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._model import loss_text, py_path
from kerasdoctor.checks.base import (
    ALL_TASKS,
    OUTPUT,
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    Threshold,
    finding,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="single-unit-softmax",
    kind=Kind.CAUSE,
    summary="Softmax over a last axis of size 1: the output is always 1.0.",
    measures=(
        "The output activation is read from the layer configuration (Dense(1, "
        "activation='softmax'), or an Activation('softmax') / Softmax layer after a 1-unit "
        "layer) together with the size of the axis it normalises. softmax(z) = exp(z) / "
        "sum(exp(z)) over one value is exp(z) / exp(z) = 1 whatever z is, so P(class 1) = 1.0 "
        "for every input and the softmax passes no gradient back: an error by itself. The "
        "logits under the softmax are recomputed on the bounded sample: if sigmoid(logits) "
        "already separates the classes (balanced accuracy at least rescue_balanced_accuracy; "
        "Keras on TensorFlow trains the logits under a softmax directly), swapping the "
        "activation fixes the model without retraining. For "
        "a model whose layers cannot be read (SavedModel), a one-unit output exactly 1.0 for "
        "every sample is reported as info only: a sigmoid saturated everywhere looks the same."
    ),
    fix=(
        "Binary task: Dense(1, activation='sigmoid') with binary_crossentropy. K classes: "
        "Dense(K, activation='softmax') with sparse_categorical_crossentropy. If the logits "
        "already separate the classes, set the head layer's activation to sigmoid and save."
    ),
    thresholds={
        "rescue_balanced_accuracy": Threshold(
            0.75,
            "sigmoid(logits) counts as already trained when its balanced accuracy on the sample "
            "is at least halfway from a coin toss (0.5) to perfect",
        ),
    },
    fires_on=("model_single_softmax",),
    repair=(
        "swap the softmax for a sigmoid on the same logit, where that logit ranks the classes "
        "(the softmax was added after training)"
    ),
    order=100,
    tasks=ALL_TASKS,
    task_order=30,
    needs=frozenset({"experiments"}),
    explains=frozenset(
        {
            OUTPUT,
            PREDICTIONS,
            "decision-threshold",
            "loss-mismatch",
            "output-activation",
            "output-units-mismatch",
            "untrained-model",
        }
    ),
    tier=0,
    every_epoch=frozenset({SINGLE_LABEL}),
)


# four float32 ulps below 1: np.finfo(np.float32).eps is exactly 2**-23, written out so
# that importing this module (to list the specs) does not import numpy
ONE_ULPS = 1.0 - 4 * 2.0**-23


def run(ctx: Context) -> list[Finding]:
    facts = ctx.facts
    ev = ctx.evidence
    raw = ev.output.raw
    if facts.inspectable:
        if facts.head != "softmax" or facts.head_axis_size != 1:
            return []
        inferred = False
    else:  # no layers to read: the outputs themselves must show it
        if facts.n_outputs != 1 or raw.count.sum() == 0:
            return []
        # exp(z) / exp(z) is 1.0 up to float32 rounding (a fused CPU kernel that multiplies
        # by a reciprocal gives 0.99999994): a few ulps, never a saturated sigmoid's 1 - 1e-7
        if not (float(raw.min.min()) >= ONE_ULPS and float(raw.max.max()) <= 1.0):
            return []
        inferred = True
    n = ev.n_samples
    n_ones = int(ev.predicted_counts[1]) if ev.predicted_counts.size > 1 else 0
    evidence: dict[str, Any] = {
        "head_layer": facts.head_layer,
        "softmax_axis_size": 1,
        "output_min": float(raw.min.min()) if raw.count.sum() else None,
        "output_max": float(raw.max.max()) if raw.count.sum() else None,
        "predicted_class_1": n_ones,
        "n_samples": n,
        "loss": facts.loss,
        "inferred_from_outputs": inferred,
    }
    rescue = _sigmoid_rescue(ctx) if not inferred else None
    if rescue is not None:
        evidence["sigmoid_balanced_accuracy_on_sample"] = rescue["balanced_accuracy"]
        evidence["sample_size"] = rescue["n"]
        evidence["experiment"] = rescue["experiment"]
    where = f"layer '{facts.head_layer}'" if facts.head_layer else "the output"
    detail = (
        f"softmax normalises over the last axis, which has one unit here ({where}): "
        "exp(z) / exp(z) = 1.0 whatever z is. Every one of the "
        f"{n} samples gets P(class 1) = 1.0 ({n_ones} predicted as class {ctx.cls(1)}): "
        f"whatever the network computes is hidden by the last activation (loss: "
        f"{loss_text(ctx)})."
    )
    good = ctx.threshold(SPEC, "rescue_balanced_accuracy")
    fixes = [Fix("Use a sigmoid unit for a binary task, or K softmax units", code=_code(ctx))]
    if rescue is not None:
        bacc = rescue["balanced_accuracy"]
        detail += (
            f" The logits under the softmax, read through a sigmoid, reach balanced accuracy "
            f"{bacc:.1%} on a {rescue['n']}-sample subset"
        )
        evidence["cured"] = bool(bacc >= good)
        if bacc >= good:
            detail += (
                ": the weights learned the task (a softmax appended after training, or "
                "Keras computing binary cross-entropy from the logit under the "
                "activation), only the last activation hides it."
            )
            fixes[:0] = [repair_fix(ctx, SPEC), _swap_fix(ctx)]
        else:
            detail += (
                ": the softmax passed no gradient to the logit, which never learned; the "
                "network has to be retrained with a proper head."
            )
    if inferred:
        # a sigmoid saturated for every input also gives exactly 1.0: without the layers to
        # read this is a hint, never the root cause
        return [
            finding(
                SPEC,
                Severity.INFO,
                "Every output is exactly 1.0, as a softmax over one unit gives",
                f"The one-unit output is 1.0 for all {n} samples. A softmax over one unit "
                "(exp(z) / exp(z)) does that; so does a sigmoid saturated for every input. The "
                "layers of this model cannot be read to tell which.",
                evidence,
                fixes,
            )
        ]
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"The output is a softmax over 1 unit ({where}): it is 1.0 for every input",
            detail,
            evidence,
            fixes,
        )
    ]


def _sigmoid_rescue(ctx: Context) -> dict[str, Any] | None:
    """The head experiment: sigmoid(logit under the softmax) on the bounded sample."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    tap = exps.head()
    y = exps.y
    if isinstance(tap, str) or tap.preacts.shape[1] != 1 or np.unique(y).size != 2 or y.max() > 1:
        return None
    pred = (tap.preacts[:, 0] > 0).astype(np.int64)  # sigmoid(z) > 0.5
    res = exps.scored(
        "head-sigmoid", "reading the logit under the one-unit softmax through a sigmoid", pred
    )
    return {"balanced_accuracy": res.after, "n": res.rows, "experiment": res.to_dict()}


def _swap_fix(ctx: Context) -> Fix:
    head = ctx.facts.head_layer
    if ctx.facts.head_class == "Dense":
        body = f"model.get_layer({head!r}).activation = keras.activations.sigmoid\n"
    else:  # a separate Activation/Softmax layer: replace it by its input's sigmoid
        body = (
            f"logits = model.get_layer({head!r}).input\n"
            "outputs = keras.layers.Activation('sigmoid')(logits)\n"
            "model = keras.Model(model.inputs, outputs)\n"
            "model.compile(optimizer='adam', loss='binary_crossentropy')\n"
        )
    return Fix(
        "The logits already separate the classes: replace the softmax by a sigmoid, no "
        "retraining needed",
        code=(
            "import keras\n"
            f"model = keras.saving.load_model({py_path(ctx.model_path)})\n"
            + body
            + "model.save('model_sigmoid.keras')"
        ),
    )


def _code(ctx: Context) -> str:
    k = max(2, int((ctx.evidence.label_counts > 0).sum()))
    if k == 2:
        return (
            "# binary: one sigmoid unit\n"
            "outputs = keras.layers.Dense(1, activation='sigmoid')(features)\n"
            "model.compile(optimizer='adam', loss='binary_crossentropy')\n"
            "# or, equivalently, two softmax units with integer labels\n"
            "outputs = keras.layers.Dense(2, activation='softmax')(features)\n"
            "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')"
        )
    return (
        f"outputs = keras.layers.Dense({k}, activation='softmax')(features)\n"
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')"
    )
