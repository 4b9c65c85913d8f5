"""output-units-mismatch: the number of output units does not match the classes in the labels."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._model import fit_head_code, label_classes, py_path
from kerasdoctor.checks.base import (
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    finding,
    names_list,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="output-units-mismatch",
    kind=Kind.CAUSE,
    summary="The number of output units does not match the number of classes in the labels.",
    measures=(
        "The size of the output's last axis against the class indices in the labels. One "
        "unit (a sigmoid, or a logit) answers a yes/no question: it can express two classes, "
        "so labels 2 and above can never be predicted. K >= 2 units predict argmax in 0..K-1, "
        "so a label index >= K can never be predicted. Either is an error, because the "
        "samples of those classes are wrong whatever the weights, when those classes hold at "
        "least one sample. More units than classes is not flagged: an evaluation set may hold "
        "a subset of the classes."
    ),
    fix=(
        "Give the head one unit per class (Dense(K, activation='softmax') with "
        "sparse_categorical_crossentropy), or, if the data holds classes the model was never "
        "meant to know, drop or relabel them before evaluating."
    ),
    fires_on=("model_units_fewer",),
    order=130,
    explains=frozenset({PREDICTIONS, "loss-mismatch"}),
    tier=1,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    units = ctx.facts.n_outputs
    capacity = 2 if units == 1 else units  # classes the head can output
    y = ev.y_true
    beyond = np.flatnonzero((ev.label_counts > 0) & (np.arange(ev.label_counts.size) >= capacity))
    if beyond.size == 0:
        return []
    k_labels = int(label_classes(ev).size)
    n_beyond = int(ev.label_counts[beyond].sum())
    share = n_beyond / max(ev.n_samples, 1)
    evidence: dict[str, Any] = {
        "units": units,
        "classes_the_head_can_output": capacity,
        "label_classes": k_labels,
        "max_label": int(y.max(initial=0)),
        "unreachable_classes": [int(c) for c in beyond],
        "unreachable_samples": n_beyond,
        "unreachable_share": share,
        "head": ctx.facts.head,
        "loss": ctx.facts.loss,
    }
    if units == 1:
        title = (
            f"One output unit for {k_labels} classes: classes 2 and above can never be predicted"
        )
        detail = (
            "A single unit answers one yes/no question (P(class 1)), so it separates two "
            f"classes at most; the labels hold {k_labels}. The {n_beyond} samples of "
            f"{names_list(ctx, list(beyond))} ({share:.1%} of the data) are wrong whatever "
            "the weights."
        )
    else:
        title = (
            f"{units} output units but labels go up to {int(y.max(initial=0))}: "
            f"{names_list(ctx, list(beyond))} can never be predicted"
        )
        detail = (
            f"argmax over {units} units returns 0..{units - 1}; the {n_beyond} samples labelled "
            f"{names_list(ctx, list(beyond))} ({share:.1%} of the data) are wrong whatever "
            "the weights. Either the head is too small for the task or the data holds classes "
            "the model was never trained on."
        )
    k_fit = max(k_labels, int(y.max(initial=0)) + 1, 2)
    return [
        finding(
            SPEC,
            Severity.ERROR,
            title,
            detail,
            evidence,
            [
                Fix(
                    f"Give the head one unit per class ({k_fit}) and retrain",
                    code=fit_head_code(k_fit),
                ),
                Fix(
                    "Or evaluate only on the classes the model knows",
                    code=(
                        "import numpy as np\n"
                        f"d = dict(np.load({py_path(ctx.data_path)}))\n"
                        "y = d['y'] if d['y'].ndim == 1 else d['y'].argmax(-1)\n"
                        f"keep = y < {capacity}\n"
                        "np.savez('known_classes.npz', **{\n"
                        "    k: v if k == 'class_names' else v[keep] for k, v in d.items()})"
                    ),
                ),
            ],
        )
    ]
