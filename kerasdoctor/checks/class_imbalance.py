"""class-imbalance: skewed labels, and the rare classes are the ones the model drops."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._data import fixed_model_name, prediction_symptoms
from kerasdoctor.checks.base import (
    ALL_TASKS,
    PREDICTIONS,
    CheckSpec,
    Context,
    Threshold,
    finding,
    names_list,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

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
        "collapses. When the predictions follow the prior, two experiments decide whether the "
        "imbalance is the disease: a class-balanced linear probe on the model's penultimate "
        "features (cross-validated on the bounded sample), and logit adjustment (subtract "
        "the log label prior, counted on one seeded half of the sample, from the logits; "
        "scored on the other half). Imbalance is the root cause only when the features "
        "recover the dropped classes (the probe finds at least min_probe_recall of their "
        "samples on average, beats chance, and does not fall more than probe_gap (or "
        "noise_z times the noise of a difference) below the same probe on the raw inputs) "
        "or the adjustment restores the model. When the probe runs and the features fail "
        "it, they do not separate those classes: reweighting could not make them right, "
        "the failure is upstream (dead units, scale, regularization), and the imbalance is "
        "context. Logit adjustment is tried whenever the predictions show a symptom (not on "
        "a constant output): when it restores the model, the prior is the cause even where "
        "the prediction counts do not show the pattern above."
    ),
    fix=(
        "Without retraining, subtract the log label prior from the logits (logit adjustment). "
        "To retrain: class weights from the training labels (kerasdoctor fix --class-weights "
        "TRAIN_DATA), oversample the rare classes (kerasdoctor fix --oversample TRAIN_DATA "
        "--output balanced.npz) or a focal loss, then retrain and measure on data never "
        "trained on (kerasdoctor fix --retrain MODEL TRAIN_DATA --eval DATA --output "
        "fixed.keras)."
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
        "min_probe_recall": Threshold(
            0.5,
            "the features recover a class when a linear probe finds it more often than it "
            "misses it: then reweighting the loss can move the boundary onto it",
        ),
        "probe_gap": Threshold(
            0.1,
            "features that score 10 points of balanced accuracy below the raw inputs lost "
            "signal the inputs carry: the model failed to learn, the prior is not the story",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors of a difference of two balanced accuracies, so fold noise "
            "is not read as lost signal",
        ),
    },
    fires_on=("collapsed",),
    repair=(
        "subtract the log label prior from the output logits (logit adjustment as a bias "
        "shift), or re-fit the output layer on the frozen penultimate features with class-"
        "balanced weights, whichever wins on held-out rows"
    ),
    order=50,
    tasks=ALL_TASKS,
    task_order=70,
    explains=frozenset({PREDICTIONS}),
    tier=7,
    needs=frozenset({"symptoms", "experiments"}),
    every_epoch=ALL_TASKS,
)


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.metrics import recall_vector

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
    frozen = "constant-output" in prediction_symptoms(ctx)
    evidence["output_constant"] = frozen
    # the prior's cure is tried whenever the predictions show a symptom: the prediction
    # counts only order the experiments, they never suppress one
    exps = ctx.experiments
    adjusted = (
        exps.logit_adjustment()
        if ctx.symptoms and not frozen and exps is not None and exps.available
        else None
    )
    prior_cures = bool(adjusted is not None and exps is not None and exps.restores(adjusted))
    if adjusted is not None and adjusted.ok:
        evidence["experiment"] = adjusted.to_dict()
        evidence["cured"] = prior_cures
    if (not follows_prior and not prior_cures) or frozen:
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
            )
        ]
    dropped = [int(k) for k in np.flatnonzero(under & rare)] or [
        int(k) for k in np.flatnonzero(rare & judged)
    ]
    judged_by = _experiments(ctx, dropped, evidence)
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
    if judged_by == "not-recovered":
        probe = evidence["feature_probe"]
        return [
            finding(
                SPEC,
                Severity.INFO,
                f"Labels are imbalanced {ratio:.1f}:1, but the model's features do not "
                f"separate the dropped classes {names_list(ctx, dropped)}",
                f"{parts}. The predictions follow the label prior, yet a class-balanced linear "
                f"probe on the model's penultimate features reaches balanced accuracy "
                f"{probe['balanced_accuracy']:.1%} and finds {probe['dropped_recall']:.0%} of "
                "the dropped classes' samples"
                + (
                    f", against {ib:.1%} for the same probe on the raw inputs"
                    if (ib := evidence.get("input_probe_balanced_accuracy")) is not None
                    else ""
                )
                + ": the features do not carry what separates those classes, so class weights "
                "would move the guesses without making them right. Look at the causes "
                "upstream of the features.",
                evidence,
            )
        ]
    severity = Severity.ERROR if never else Severity.WARNING
    if judged_by == "recovered":
        probe = evidence["feature_probe"]
        parts += (
            f". A class-balanced linear probe on the model's own penultimate features finds "
            f"{probe['dropped_recall']:.0%} of the dropped classes' samples: the features "
            "separate them, the head's prior hides them"
        )
    exp = evidence.get("experiment")
    if exp is not None and evidence.get("cured"):
        parts += (
            f". {exp['what'][0].upper()}{exp['what'][1:]} raises balanced accuracy from "
            f"{exp['balanced_accuracy_before']:.1%} to {exp['balanced_accuracy_after']:.1%} "
            f"on {exp['rows']} held-out rows"
        )
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
            # the repair is offered where its cure was measured: the features separate the
            # dropped classes, or the prior's removal restored the model
            ([repair_fix(ctx, SPEC)] if judged_by == "recovered" else []) + _fixes(ctx, support),
        )
    ]


def _experiments(ctx: Context, dropped: list[int], evidence: dict[str, Any]) -> str:
    """Probe the features and try logit adjustment; 'recovered', 'not-recovered' or
    'unprobed' (no model to re-run, or the output layer cannot be tapped)."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return "unprobed"
    adjusted = exps.logit_adjustment()
    if adjusted.ok:
        evidence["experiment"] = adjusted.to_dict()
        evidence["cured"] = exps.restores(adjusted)
    probe = exps.feature_probe()
    if not probe.ok:
        evidence["feature_probe"] = probe.to_dict()
        return "recovered" if evidence.get("cured") else "unprobed"
    rec = np.asarray(probe.recall, np.float64)
    dropped_recall = float(np.nanmean(rec[dropped])) if dropped else float("nan")
    evidence["feature_probe"] = {**probe.to_dict(), "dropped_recall": dropped_recall}
    signal = exps.features_keep_signal(
        ctx.threshold(SPEC, "probe_gap"), ctx.threshold(SPEC, "noise_z")
    )
    if signal is not None:
        evidence["input_probe_balanced_accuracy"] = signal["input_probe"]
    recovered = (
        not probe.at_chance
        and dropped_recall >= ctx.threshold(SPEC, "min_probe_recall")
        and not (signal is not None and signal["features_fail"])
    )
    evidence["features_recover_dropped_classes"] = bool(recovered)
    return "recovered" if recovered or evidence.get("cured") else "not-recovered"


def _weights_fix(ctx: Context, support: np.ndarray) -> Fix:
    """Class weights are learnt from the labels of the data the model TRAINS on: the command
    names TRAIN_DATA (the diagnosed data is often the validation set) with the diagnosed
    data's reading flags; the snippet's weights come from the diagnosed labels and says so."""
    import shlex

    from kerasdoctor.class_weights import class_weights, python_line

    y = np.repeat(np.arange(support.size), support)
    weights = class_weights(y, support.size)
    flags = shlex.split(ctx.data_args)[1:]
    if "--labels" in flags:  # a per-file flag: the training data has its own labels file
        flags[flags.index("--labels") + 1] = "TRAIN_LABELS"
    train = " ".join(["TRAIN_DATA", *(shlex.quote(f) for f in flags)])
    return Fix(
        "Train with class weights so the rare classes count as much as the common ones "
        "(computed from the labels of your training data, TRAIN_DATA)",
        command=f"kerasdoctor fix --class-weights {train}",
        code=(
            "# from the labels diagnosed here; the command computes them on TRAIN_DATA\n"
            + python_line(weights)
            + "\nmodel.fit(x, y, class_weight=class_weight, ...)"
        ),
    )


def _fixes(ctx: Context, support: np.ndarray) -> list[Fix]:
    """The remedies for imbalance. Those that learn from data (weights, resampling, bias,
    retraining) name TRAIN_DATA, the data the model trains on; retraining measures itself on
    the diagnosed data (--eval DATA, read with the same flags), which it never trains on."""
    import shlex

    k = int(support.size)
    tokens = shlex.split(ctx.data_args)
    flags = tokens[1:]
    eval_labels: list[str] = []
    if "--labels" in flags:  # per file: TRAIN_DATA's labels are its own, DATA's go to --eval
        i = flags.index("--labels")
        eval_labels = ["--eval-labels", flags[i + 1]]
        flags[i + 1] = "TRAIN_LABELS"
    train = " ".join(["TRAIN_DATA", *(shlex.quote(f) for f in flags)])
    evaluate = " ".join(shlex.quote(t) for t in ["--eval", tokens[0], *eval_labels])
    n = int(support.sum())
    # the log prior, with half a sample for absent classes (log 0 would freeze the unit)
    share = np.where(support == 0, 0.5, support) / n
    binary_head = ctx.facts.n_outputs == 1
    if binary_head:
        focal = (
            "loss = keras.losses.BinaryFocalCrossentropy(\n"
            f"    apply_class_balancing=True, alpha={share[0]:.3g}, gamma=2.0)\n"
            "model.compile(optimizer='adam', loss=loss)"
        )
    else:
        focal = (
            "loss = keras.losses.CategoricalFocalCrossentropy(gamma=2.0)\n"
            + (
                f"y_onehot = keras.utils.to_categorical(y, {k})  # the focal loss takes one-hot\n"
                if ctx.label_encoding != "one-hot"
                else ""
            )
            + "model.compile(optimizer='adam', loss=loss)"
        )
    prior = "[" + ", ".join(f"{v:.4g}" for v in share) + "]"
    return [
        _weights_fix(ctx, support),
        Fix(
            "Without retraining: subtract the log label prior from the model's log-"
            "probabilities before the argmax (logit adjustment, Menon et al. 2021)",
            code=(
                f"prior = np.array({prior})  # label shares of the training data\n"
                "probs = model.predict(x)\n"
                + ("probs = np.concatenate([1 - probs, probs], axis=1)\n" if binary_head else "")
                + "y_pred = np.argmax(np.log(probs + 1e-12) - np.log(prior), axis=1)"
            ),
        ),
        Fix(
            "Oversample the rare classes of your training data (TRAIN_DATA) to the size of "
            "the largest",
            command=(
                f"kerasdoctor fix --oversample {train} --output {ctx.resampled_name}"
                if ctx.resampled_name
                else None
            ),  # written in the kind it reads
        ),
        Fix(
            "Retrain the model with class weights on its training data (TRAIN_DATA), "
            "measured on the data diagnosed here, which it does not train on",
            command=(
                f"kerasdoctor fix --retrain {ctx.model_path} {train} {evaluate} "
                f"--output {fixed_model_name(ctx)}"
            ),
        ),
        Fix(
            "Use a focal loss, which down-weights the easy (common) samples",
            code=focal,
        ),
    ]
    # No output-bias initialisation here: it is for a head about to be trained; on this
    # trained model it would push the predictions further toward the prior. Its cure without
    # retraining is the logit adjustment above, which `fix --repair` bakes into the model.
