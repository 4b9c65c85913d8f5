"""loss-mismatch: the compiled loss does not fit the labels or the number of output units."""

from __future__ import annotations

from typing import Any

from kerasdoctor.checks._model import (
    BINARY_LOSSES,
    CATEGORICAL_LOSSES,
    SPARSE_LOSSES,
    fit_head_code,
    label_classes,
)
from kerasdoctor.checks.base import (
    MULTILABEL,
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    NotApplicable,
    finding,
    prediction_symptoms,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# Losses that regress the label value: on class indices they learn a number, not a class.
REGRESSION_LOSSES = frozenset(
    {
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "huber",
        "log_cosh",
    }
)

SPEC = CheckSpec(
    id="loss-mismatch",
    kind=Kind.CAUSE,
    summary="The compiled loss does not fit the labels or the number of output units.",
    measures=(
        "The loss saved with the model (its compile config; when the file holds none, this "
        "check is silent and the report notes that the loss is unknown) against the classes "
        "present in the labels and the number of output units. Errors, because training "
        "cannot work whatever the data: binary cross-entropy with one unit on more than two "
        "classes (a label 2 is a target above 1, which pushes P towards 1 without bound, so "
        "classes 1..K-1 merge); a categorical cross-entropy on one unit (a softmax over one "
        "value is 1, the loss is identically 0 and nothing is learned: the biases still at "
        "exactly 0 after optimizer steps confirm it). Warnings when the predictions show a "
        "symptom, info otherwise: binary cross-entropy on K >= 2 units of single-label data "
        "(one-vs-rest: fine with one-hot targets, but the reported 'accuracy' is binary "
        "accuracy, inflated by the K-1 easy zeros per sample) and a regression loss (MSE, "
        "MAE, ...) on class labels. How the training labels were encoded (integers or "
        "one-hot) cannot be read from the evaluation file, so sparse vs one-hot is judged "
        "only through the unit count (see output-units-mismatch)."
    ),
    fix=(
        "K classes: K softmax units with sparse_categorical_crossentropy (integer labels) or "
        "categorical_crossentropy (one-hot labels). Two classes: one sigmoid unit with "
        "binary_crossentropy."
    ),
    fires_on=("model_cce_one_unit",),
    order=120,
    tasks=frozenset({SINGLE_LABEL, MULTILABEL}),
    task_order=50,
    needs=frozenset({"symptoms"}),
    explains=frozenset({PREDICTIONS, "untrained-model"}),
    tier=1,
    every_epoch=frozenset({MULTILABEL}),
)


def run(ctx: Context) -> list[Finding]:
    facts = ctx.facts
    loss = facts.loss
    if loss is None or not facts.inspectable:
        raise NotApplicable("no compiled loss saved with the model")
    ev = ctx.evidence
    classes = label_classes(ev)
    k = int(classes.size)
    k_max = int(ev.y_true.max(initial=0)) + 1
    units = facts.n_outputs
    evidence: dict[str, Any] = {
        "loss": loss,
        "from_logits": facts.loss_from_logits,
        "units": units,
        "head": facts.head,
        "label_classes": k,
        "max_label": k_max - 1,
    }
    severity: Severity
    if loss in BINARY_LOSSES and units == 1 and k_max > 2:
        above = int((ev.y_true >= 2).sum())
        evidence["samples_with_label_above_1"] = above
        severity = Severity.ERROR
        title = f"{loss} with one output unit on {k} classes"
        detail = (
            f"Binary cross-entropy treats the label as P(class 1); {above} of "
            f"{ev.n_samples} samples have labels "
            f"{'2' if k_max == 3 else f'2..{k_max - 1}'}, targets above 1 that push "
            "the output towards 1 without bound. Classes 1 and above merge into one 'high' "
            "answer and the head cannot express more than two classes anyway."
        )
    elif loss in CATEGORICAL_LOSSES | SPARSE_LOSSES and units == 1:
        severity = Severity.ERROR
        title = f"{loss} on a single output unit: the loss is always 0"
        detail = (
            "A categorical cross-entropy normalises over the output units; over one unit the "
            "normalised value is 1 for every input, so the loss is identically 0 and no "
            "gradient reaches any weight: the model learns nothing."
        )
        _add_stuck_evidence(ctx, evidence)
        if evidence.get("biases_still_zero"):
            detail += (
                f" Confirmed: after {facts.optimizer_iterations} optimizer steps all "
                f"{facts.trainable_bias_layers} trainable bias vectors are still exactly 0."
                if facts.optimizer_iterations
                else " Confirmed: every trainable bias vector is still exactly 0."
            )
    elif loss in BINARY_LOSSES and units >= 2 and units >= k:
        symptoms = prediction_symptoms(ctx)
        severity = Severity.WARNING if symptoms else Severity.INFO
        evidence["symptoms"] = sorted(symptoms)
        title = f"{loss} on {units} output units of single-label data"
        detail = (
            f"Binary cross-entropy scores each of the {units} units as its own yes/no "
            "question (one-vs-rest). It trains with one-hot targets, but the units are not "
            "pushed to sum to 1 and Keras' 'accuracy' becomes binary accuracy, inflated by the "
            f"{units - 1} easy zeros per sample."
            + (
                f" The predictions show a symptom: {', '.join(sorted(symptoms))}."
                if symptoms
                else " The predictions look fine here."
            )
        )
    elif loss in REGRESSION_LOSSES and k >= 2:
        symptoms = prediction_symptoms(ctx)
        severity = Severity.WARNING if symptoms else Severity.INFO
        evidence["symptoms"] = sorted(symptoms)
        title = f"Regression loss {loss} on class labels"
        detail = (
            f"{loss} fits the label value as a number: class indices become distances (class "
            f"2 is 'twice' class 1) and a one-unit output regressed towards 0/1 is "
            "thresholded at 0.5, not at 0 as logits are."
            + (
                f" The predictions show a symptom: {', '.join(sorted(symptoms))}."
                if symptoms
                else " The predictions look fine here."
            )
        )
    else:
        return []
    return [
        finding(
            SPEC,
            severity,
            title,
            detail,
            evidence,
            [
                Fix(
                    f"Use the loss and head that fit {max(k, 2)} single-label classes",
                    code=fit_head_code(max(k, 2)),
                )
            ],
        )
    ]


def _add_stuck_evidence(ctx: Context, evidence: dict[str, Any]) -> None:
    f = ctx.facts
    evidence["optimizer_iterations"] = f.optimizer_iterations
    if f.trainable_bias_layers:
        evidence["trainable_bias_vectors"] = f.trainable_bias_layers
        evidence["zero_bias_vectors"] = f.zero_trainable_bias_layers
        evidence["biases_still_zero"] = bool(
            f.zero_trainable_bias_layers == f.trainable_bias_layers
        )
