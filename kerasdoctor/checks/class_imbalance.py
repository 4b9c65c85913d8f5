"""class-imbalance: skewed labels, and the rare classes are the ones the model drops."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasdoctor.checks._data import fixed_model_name, prediction_symptoms
from kerasdoctor.checks.base import CheckSpec, Context, Threshold, finding, names_list
from kerasdoctor.findings import Finding, Fix, Kind, Severity
from kerasdoctor.metrics import recall_vector

SPEC = CheckSpec(
    id="class-imbalance",
    kind=Kind.CAUSE,
    summary="Skewed labels, and the rare classes are the ones the model drops.",
    measures=(
        "The label count of every class, its share, and the imbalance ratio largest / smallest "
        "class. A class is rare when the largest class is at least min_ratio times bigger. "
        "Cross-entropy training learns the label prior: a model unsure of a sample adds "
        "log(n_large / n_rare) to the common class's logit, so when classes overlap the rare "
        "ones lose the borderline samples first. Imbalance is a ROOT cause only when the "
        "predictions follow that prior: the classes that get at most under_ratio of the "
        "predictions their labels call for (with at least min_support samples) are all rare, "
        "and the class that receives the surplus of predictions is a common one. Then it is a "
        "warning, an error when a rare class is never predicted. Imbalanced labels on a model "
        "that still predicts every rare class about as often as it occurs are context (info), "
        "and so they are when the output does not depend on the input at all "
        "(constant-output): a dead network outputs its bias, which training sets to the "
        "label prior, so the imbalance only decides which class it falls on, not that it "
        "collapses."
    ),
    fix=(
        "Train with class weights (kerasdoctor fix --class-weights DATA), oversample the rare "
        "classes (kerasdoctor fix --oversample DATA --output balanced.npz), use a focal loss, "
        "and initialise the output bias to the log label prior (kerasdoctor fix --output-bias "
        "DATA); then retrain (kerasdoctor fix --retrain MODEL DATA --output fixed.keras)."
    ),
    thresholds={
        "min_ratio": Threshold(
            3.0,
            "a prior ratio r shifts the decision boundary by log(r) logits: log 3 = 1.1, as "
            "much evidence as a sample half a standard deviation inside a rare class two "
            "standard deviations away from the common one carries, so from 3:1 on the prior "
            "alone can flip the borderline samples of overlapping classes",
        ),
        "under_ratio": Threshold(
            0.5,
            "a class under-predicted by the prior gets at most half the predictions its "
            "labels call for (the same bar as prediction-collapse)",
        ),
        "min_support": Threshold(
            5,
            "with fewer than 5 samples a class's predicted count is too noisy to say it is "
            "dropped (the missing-classes bar: a half-learned class shows up in 5 samples "
            "with probability 97%)",
        ),
    },
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    support = ev.label_counts.astype(np.int64)
    predicted = ev.predicted_counts.astype(np.int64)
    n = int(ev.n_samples)
    present = support > 0
    if n == 0 or int(present.sum()) < 2:
        return []
    largest = int(support.max())
    smallest = int(support[present].min())
    ratio = largest / smallest
    min_ratio = ctx.threshold(SPEC, "min_ratio")
    rare = present & (support * min_ratio <= largest)
    if not rare.any():
        return []
    under_ratio = ctx.threshold(SPEC, "under_ratio")
    min_support = ctx.threshold(SPEC, "min_support")
    judged = present & (support >= min_support)
    under = judged & (predicted <= under_ratio * support)
    surplus = predicted - support
    top = int(np.argmax(surplus))
    # The prior explains the failure when only rare classes lose predictions and they go to a
    # common class; a common class dropped as well points at another cause.
    follows_prior = (
        bool((under & rare).any())
        and not bool((under & ~rare).any())
        and surplus[top] > 0
        and not rare[top]
    )
    recall = recall_vector(ev.confusion)
    shares = support / n
    evidence: dict[str, Any] = {
        "label_counts": support.tolist(),
        "label_shares": [float(s) for s in shares],
        "predicted_counts": predicted.tolist(),
        "imbalance_ratio": float(ratio),
        "largest_class": int(np.argmax(support)),
        "rare_classes": [int(k) for k in np.flatnonzero(rare)],
        "recall": [None if not np.isfinite(r) else float(r) for r in recall],
        "predictions_follow_prior": follows_prior,
    }
    big = ctx.cls(int(np.argmax(support)))
    small = ctx.cls(int(np.flatnonzero(support == smallest)[0]))
    frozen = follows_prior and "constant-output" in prediction_symptoms(ctx)
    evidence["output_constant"] = frozen
    if not follows_prior or frozen:
        dropped_common = [int(k) for k in np.flatnonzero(under & ~rare)]
        evidence["under_predicted_common_classes"] = dropped_common
        if frozen:
            why = (
                "but the output does not depend on the input (constant-output): the network "
                "outputs its bias, which sits at the label prior, so the imbalance only decides "
                "which class the dead model answers; look for what disconnected the output"
            )
        elif dropped_common:
            why = (
                f"but common class(es) {names_list(ctx, dropped_common)} are under-predicted "
                "too, so the label prior does not explain the failure"
            )
        else:
            why = (
                f"but every rare class is still predicted at least {under_ratio:.0%} as often "
                "as it occurs: the model learned them"
            )
        return [
            finding(
                SPEC,
                Severity.INFO,
                f"Labels are imbalanced {ratio:.1f}:1 ({big}: {largest}, {small}: {smallest})",
                f"The largest class is {ratio:.1f} times the smallest, {why}. Imbalance is "
                "context here, not the disease.",
                evidence,
                [_weights_fix(ctx, support)],
            )
        ]
    dropped = [int(k) for k in np.flatnonzero(under & rare)]
    never = [k for k in dropped if predicted[k] == 0]
    rows: list[dict[str, Any]] = [
        {
            "class": k,
            "name": ctx.class_names[k] if k < len(ctx.class_names) else str(k),
            "support": int(support[k]),
            "label_share": float(shares[k]),
            "predicted": int(predicted[k]),
            "recall": float(recall[k]),
        }
        for k in dropped
    ]
    evidence["under_predicted"] = rows
    evidence["over_predicted_class"] = top
    evidence["over_predicted_by"] = int(surplus[top])
    parts = "; ".join(
        f"class {ctx.cls(int(r['class']))}: {r['label_share']:.1%} of the labels, "
        f"{r['predicted']} of {r['support']} predicted (recall {r['recall']:.0%})"
        for r in rows[:6]
    )
    severity = Severity.ERROR if never else Severity.WARNING
    return [
        finding(
            SPEC,
            severity,
            f"Labels are imbalanced {ratio:.1f}:1 and the rare classes "
            f"{names_list(ctx, dropped)} are the ones the model drops",
            f"{parts}. Meanwhile class {ctx.cls(top)} ({shares[top]:.1%} of the labels) gets "
            f"{int(surplus[top])} more predictions than it has samples: the predictions follow "
            "the label prior, which is what cross-entropy learns when the rare classes carry "
            "too little weight in the loss.",
            evidence,
            _fixes(ctx, support),
        )
    ]


def _weights_fix(ctx: Context, support: np.ndarray) -> Fix:
    from kerasdoctor.fix.class_weights import class_weights, python_line

    y = np.repeat(np.arange(support.size), support)
    weights = class_weights(y, support.size)
    return Fix(
        "Train with class weights so the rare classes count as much as the common ones",
        command=f"kerasdoctor fix --class-weights {ctx.data_args}",
        code=python_line(weights) + "\nmodel.fit(x, y, class_weight=class_weight, ...)",
    )


def _fixes(ctx: Context, support: np.ndarray) -> list[Fix]:
    k = int(support.size)
    n = int(support.sum())
    # the log prior, with half a sample for absent classes (log 0 would freeze the unit)
    share = np.where(support == 0, 0.5, support) / n
    binary_head = ctx.facts.n_outputs == 1
    if binary_head:
        bias = f"[{np.log(share[1] / share[0]):.4g}]"
        head = "keras.layers.Dense(1, activation='sigmoid', bias_initializer=init)"
        focal = (
            "loss = keras.losses.BinaryFocalCrossentropy(\n"
            f"    apply_class_balancing=True, alpha={share[0]:.3g}, gamma=2.0)\n"
            "model.compile(optimizer='adam', loss=loss)"
        )
    else:
        bias = "[" + ", ".join(f"{v:.4g}" for v in np.log(share)) + "]"
        head = f"keras.layers.Dense({k}, activation='softmax', bias_initializer=init)"
        focal = (
            "loss = keras.losses.CategoricalFocalCrossentropy(gamma=2.0)\n"
            + (
                f"y_onehot = keras.utils.to_categorical(y, {k})  # the focal loss takes one-hot\n"
                if ctx.label_encoding != "one-hot"
                else ""
            )
            + "model.compile(optimizer='adam', loss=loss)"
        )
    return [
        _weights_fix(ctx, support),
        Fix(
            "Oversample the rare classes to the size of the largest",
            command=(f"kerasdoctor fix --oversample {ctx.data_args} --output balanced.npz"
                     if ctx.data_is_npz else None),  # fix --oversample reads/writes .npz
        ),
        Fix(
            "Retrain the model with class weights",
            command=(
                f"kerasdoctor fix --retrain {ctx.model_path} {ctx.data_args} "
                f"--output {fixed_model_name(ctx)}"
            ),
        ),
        Fix(
            "Use a focal loss, which down-weights the easy (common) samples",
            code=focal,
        ),
        Fix(
            "Initialise the output bias to the log label prior so training does not spend "
            "its first steps learning the imbalance",
            command=f"kerasdoctor fix --output-bias {ctx.data_args}",
            code=(
                f"init = keras.initializers.Constant({bias})  # log label prior\noutput = {head}"
            ),
        ),
    ]
