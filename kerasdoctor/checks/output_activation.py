"""output-activation: the output activation does not fit the loss or the task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._model import (
    CATEGORICAL_LOSSES,
    CROSSENTROPY_LOSSES,
    PROBABILITY_HEADS,
    SPARSE_LOSSES,
    SQUASHING_HEADS,
    fit_head_code,
    from_logits,
    label_classes,
    loss_text,
)
from kerasdoctor.checks.base import (
    MULTILABEL,
    OUTPUT,
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    NotApplicable,
    finding,
    prediction_symptoms,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult

SPEC = CheckSpec(
    id="output-activation",
    kind=Kind.CAUSE,
    summary=(
        "The output activation does not fit the loss / task (e.g. relu or linear head under a "
        "probability loss)."
    ),
    measures=(
        "The head's activation is read from the layer configuration (never from layer names) "
        "and compared with the compiled loss and its from_logits flag. Three pairings are "
        "wrong: (1) a head that is not a probability (relu, linear, tanh, ...) under a "
        "cross-entropy with from_logits=False: the loss clips the output to [1e-7, 1 - 1e-7] "
        "before the log, so wherever the output leaves that range (a ReLU at 0, a negative "
        "linear value) the gradient is exactly zero and that unit can never recover; "
        "(2) a softmax/sigmoid head under from_logits=True: the loss squashes a second time "
        "(Keras 3 on TensorFlow notices and uses the logits, JAX/PyTorch backends and custom "
        "loops do not); (3) sigmoid over K > 1 units under a categorical loss on single-label "
        "data: the K outputs are not a distribution. A ReLU head is flagged even without a "
        "saved loss: its outputs tie at 0, where argmax picks class 0. It is an error when "
        "the predictions show a symptom (collapse, missing classes, constant output, low "
        "recall) and the pairing is (1), a warning for the milder pairings with a symptom, "
        "and info when the predictions are fine. A one-unit softmax is single-unit-softmax."
    ),
    fix=(
        "Single-label classification: Dense(K, activation='softmax') with "
        "sparse_categorical_crossentropy (or categorical_crossentropy for one-hot labels), or "
        "Dense(1, activation='sigmoid') with binary_crossentropy for two classes. To train on "
        "logits, keep the head linear and pass from_logits=True, then apply softmax/sigmoid at "
        "prediction time."
    ),
    fires_on=("model_relu_head",),
    order=110,
    tasks=frozenset({SINGLE_LABEL, MULTILABEL}),
    task_order=40,
    explains=frozenset({OUTPUT, PREDICTIONS, "dead-units"}),
    tier=2,
    needs=frozenset({"symptoms", "experiments"}),
    every_epoch=frozenset({SINGLE_LABEL, MULTILABEL}),
)


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.model_facts import RELU_FAMILY

    facts = ctx.facts
    if not facts.inspectable or facts.head == "unknown":
        raise NotApplicable("the output layer cannot be read (e.g. a SavedModel)")
    head = facts.head
    units = facts.n_outputs
    loss = facts.loss
    if head == "softmax" and facts.head_axis_size == 1:
        return []  # single-unit-softmax reports it
    k = max(2, int(label_classes(ctx.evidence).size))
    problem: str | None = None
    kind = ""
    if loss in CROSSENTROPY_LOSSES and not from_logits(ctx) and head not in PROBABILITY_HEADS:
        kind, problem = "not-a-probability", _not_probability_text(ctx)
    elif loss in CROSSENTROPY_LOSSES and from_logits(ctx) and head in SQUASHING_HEADS:
        kind, problem = (
            "double-squash",
            (
                f"The head applies {head} and the loss is {loss_text(ctx)}, which applies "
                f"{'softmax' if loss in CATEGORICAL_LOSSES | SPARSE_LOSSES else 'sigmoid'} again. "
                "Keras 3 on TensorFlow notices the activation and trains on its logits, but the "
                "JAX and PyTorch backends, older Keras and custom training loops compute the loss "
                "on squashed values: gradients shrink and training stalls."
            ),
        )
    elif (
        loss in CATEGORICAL_LOSSES | SPARSE_LOSSES
        and head in ("sigmoid", "hard_sigmoid")
        and units > 1
    ):
        kind, problem = (
            "sigmoid-categorical",
            (
                f"The head applies sigmoid to each of {units} units while the loss is "
                f"{loss_text(ctx)}, a single-label loss: the outputs are independent yes/no "
                "scores that do not sum to 1, so they are not class probabilities (thresholds, "
                "calibration and confidence read from them are wrong), and the loss only sees "
                "them after renormalisation."
            ),
        )
    elif loss is None and head in RELU_FAMILY:
        kind, problem = (
            "relu-no-loss",
            (
                f"The head applies {head}: outputs cannot go below 0, units that are 0 for a "
                "sample tie, and argmax then picks class 0; a classifier head is softmax/sigmoid, "
                "or linear logits. No compiled loss was saved to say how it was trained."
            ),
        )
    if problem is None:
        return []
    symptoms = prediction_symptoms(ctx)
    if not symptoms:
        severity = Severity.INFO
    elif kind == "not-a-probability":
        severity = Severity.ERROR
    else:
        severity = Severity.WARNING
    evidence: dict[str, Any] = {
        "head": head,
        "head_layer": facts.head_layer,
        "units": units,
        "loss": facts.loss,
        "from_logits": facts.loss_from_logits,
        "mismatch": kind,
        "symptoms": sorted(symptoms),
    }
    raw = ctx.evidence.output.raw
    if raw.count.sum():
        evidence["output_min"] = float(raw.min.min())
        evidence["output_max"] = float(raw.max.max())
    consequence = (
        f" The predictions show it: {', '.join(sorted(symptoms))}."
        if symptoms
        else " The predictions look fine on this data, so this is a latent defect."
    )
    if symptoms and head in RELU_FAMILY:
        tried = _preactivation_argmax(ctx)
        if tried is not None and tried.ok and tried.after is not None:
            evidence["experiment"] = tried.to_dict()
            exps = ctx.experiments
            evidence["cured"] = bool(exps is not None and exps.restores(tried))
            consequence += (
                f" Taking the argmax of the pre-activations (before the {head} clips them) on "
                f"{tried.rows} sampled rows: balanced accuracy {tried.before:.1%} -> "
                f"{tried.after:.1%}"
                + (
                    ": the units learned the classes, the clipping hides them."
                    if evidence["cured"]
                    else ": the clipping is not all that went wrong."
                )
            )
    return [
        finding(
            SPEC,
            severity,
            _title(ctx, kind),
            problem + consequence,
            evidence,
            _fixes(ctx, kind, k),
        )
    ]


def _not_probability_text(ctx: Context) -> str:
    from kerasdoctor.model_facts import RELU_FAMILY

    head = ctx.facts.head
    raw = ctx.evidence.output.raw
    span = ""
    if raw.count.sum():
        span = f" (observed outputs from {float(raw.min.min()):.3g} to {float(raw.max.max()):.3g})"
    return (
        f"The head applies {head}, so its outputs are not probabilities{span}, but the loss "
        f"is {loss_text(ctx)} and reads them as probabilities: it clips them into "
        "[1e-7, 1 - 1e-7] before taking the log, and wherever an output is outside that range "
        "the gradient is exactly zero. "
        + (
            "A ReLU unit pushed to 0 for a class's samples therefore never gets a gradient "
            "again and that class can stop being predicted."
            if head in RELU_FAMILY
            else "Negative or above-1 outputs stop learning, and the outputs the model "
            "produces are not comparable across units."
        )
    )


def _title(ctx: Context, kind: str) -> str:
    f = ctx.facts
    where = f" ('{f.head_layer}')" if f.head_layer else ""
    if kind == "not-a-probability":
        return (
            f"The output layer{where} applies {f.head} but the loss {loss_text(ctx)} expects "
            "probabilities"
        )
    if kind == "double-squash":
        return (
            f"The output layer{where} applies {f.head} and the loss {loss_text(ctx)} squashes again"
        )
    if kind == "sigmoid-categorical":
        return (
            f"Sigmoid over {f.n_outputs} units{where} under {loss_text(ctx)}: the outputs are "
            "not class probabilities"
        )
    return f"The output layer{where} applies {f.head}: outputs tie at 0"


def _fixes(ctx: Context, kind: str, k: int) -> list[Fix]:
    loss = ctx.facts.loss or "sparse_categorical_crossentropy"
    cls = {
        "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
        "categorical_crossentropy": "CategoricalCrossentropy",
        "binary_crossentropy": "BinaryCrossentropy",
        "binary_focal_crossentropy": "BinaryFocalCrossentropy",
        "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    }.get(loss, "SparseCategoricalCrossentropy")
    if kind == "double-squash":
        return [
            Fix(
                f"Keep the {ctx.facts.head} head and let the loss read probabilities",
                code=f"model.compile(optimizer='adam', loss=keras.losses.{cls}(from_logits=False))",
            ),
            Fix(
                "Or make the head linear (logits) and keep from_logits=True",
                code=(
                    f"outputs = keras.layers.Dense({ctx.facts.n_outputs})(features)  # logits\n"
                    f"model.compile(optimizer='adam', loss=keras.losses.{cls}(from_logits=True))"
                ),
            ),
        ]
    fixes = [
        Fix(
            f"Give the head the activation its loss expects ({'sigmoid' if k <= 2 else 'softmax'} "
            "probabilities) and retrain",
            code=fit_head_code(k),
        )
    ]
    if kind == "not-a-probability":
        fixes.append(
            Fix(
                "Or train on logits: a linear head and from_logits=True, squashing only at "
                "prediction time",
                code=(
                    f"outputs = keras.layers.Dense({ctx.facts.n_outputs})(features)  # logits\n"
                    "model = keras.Model(inputs, outputs)\n"
                    f"model.compile(optimizer='adam', loss=keras.losses.{cls}(from_logits=True))\n"
                    "# at prediction time\n"
                    + (
                        "probs = keras.ops.sigmoid(model.predict(x))"
                        if ctx.facts.n_outputs == 1
                        else "probs = keras.ops.softmax(model.predict(x))"
                    )
                ),
            )
        )
    return fixes


def _preactivation_argmax(ctx: Context) -> ExperimentResult | None:
    """The head experiment for a clipped (relu) head: argmax of what the layer computes
    before its activation, where ties at 0 cannot happen."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    tap = exps.head()
    if isinstance(tap, str) or tap.preacts.shape[1] != exps.k:
        return None
    pred = np.argmax(tap.preacts, axis=1).astype(np.int64)
    return exps.scored(
        "head-preactivation-argmax", "the argmax of the output layer's pre-activations", pred
    )
