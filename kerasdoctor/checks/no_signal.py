"""no-signal: neither the model's features nor the raw inputs carry the labels."""

from __future__ import annotations

from typing import Any

from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="no-signal",
    kind=Kind.CAUSE,
    summary=(
        "The inputs carry no information about the labels that the model, or a simple probe "
        "on the inputs, can find: the model can only learn the label prior."
    ),
    measures=(
        "Only when the model is at chance (the chance-level symptom). Two class-balanced "
        "linear probes (a ridge classifier, stratified k-fold out-of-fold predictions on the "
        "bounded sample) are fitted: one on the model's penultimate features, one on the raw "
        "inputs (flattened, standardised, reduced to 64 principal components when wide; "
        "images add each channel's mean over a 4x4 grid and its spread). A "
        "probe is at chance when its balanced accuracy stays within the one-sided 95% bound "
        "of a label-blind guesser with the same prediction shares (the chance-level "
        "statistic). Both at chance: an error, nothing in the data tells the classes apart "
        "for the model or for the probe. Only the input probe available (the output layer "
        "cannot be tapped) and at chance: a warning. When another experiment of this "
        "diagnosis restored the model (a cure gaining at least min_restored_gain), the "
        "signal was there and this stays quiet."
    ),
    fix=(
        "Check that the labels belong to the inputs (a generator or tf.data pipeline shuffled "
        "at predict time, labels read in another order than the files), then get data whose "
        "inputs predict the labels. Class weights or resampling would only spread the "
        "guesses over the classes: with nothing to learn, they cannot make them right."
    ),
    thresholds={
        "min_restored_gain": Threshold(
            0.1,
            "a cure tried on the same rows that wins 10 points of balanced accuracy (the "
            "restoring bar of the other experiments) proves the inputs carry the labels",
        ),
    },
    fires_on=("scn_noise_blog",),
    order=240,
    explains=frozenset(
        {PREDICTIONS, OUTPUT, "class-imbalance", "dead-units", "decision-threshold"}
    ),
    tier=2,
    needs=frozenset({"symptoms", "experiments"}),
)


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.experiments import ExperimentResult

    exps = ctx.experiments
    if "chance-level" not in ctx.symptoms or exps is None or not exps.available:
        return []
    # a cure that already restored the model shows there is signal to learn
    bar = ctx.threshold(SPEC, "min_restored_gain")
    for r in exps.results():
        if isinstance(r, ExperimentResult) and r.ok and exps.restores(r, bar):
            return []
    inputs = exps.input_probe()
    if not inputs.ok or not inputs.at_chance:
        return []
    feats = exps.feature_probe()
    if feats.ok and not feats.at_chance:
        return []  # the model's features separate the classes: it learned something
    severity = Severity.ERROR if feats.ok else Severity.WARNING
    evidence: dict[str, Any] = {
        "input_probe": inputs.to_dict(),
        "feature_probe": feats.to_dict(),
        "model_balanced_accuracy": exps.before,
        "chance": inputs.chance,
    }
    ib = float(inputs.balanced_accuracy or 0.0)
    parts = [
        f"The model is at chance, and so is a class-balanced linear probe on the raw inputs: "
        f"balanced accuracy {ib:.1%} on {inputs.rows} rows, against {inputs.chance:.1%} for "
        f"a guess (bar for signal {inputs.chance + inputs.bound:.1%})"
    ]
    if feats.ok:
        fb = float(feats.balanced_accuracy or 0.0)
        parts.append(
            f"a probe on the model's own penultimate features reaches {fb:.1%}: neither the "
            "inputs nor what the network made of them tell the classes apart"
        )
    else:
        parts.append(f"the model's features could not be probed ({feats.error})")
    detail = "; ".join(parts) + (
        ". With nothing to learn, training can only fit the label prior, so the model "
        "answers the common class; class weights would spread those guesses, not make them "
        "right. Check that each label belongs to its input (shuffle=False when predicting "
        "from a generator; labels read in the same order as the files)."
    )
    return [
        finding(
            SPEC,
            severity,
            f"Nothing in the inputs predicts the labels: a linear probe on them reaches "
            f"{ib:.1%} balanced accuracy, chance is {inputs.chance:.1%}",
            detail,
            evidence,
            [
                Fix(
                    "Check that labels and inputs are paired (no shuffling at predict time, "
                    "same order as the files); then collect inputs that carry the classes",
                    code=(
                        "# predict from a generator without shuffling, so rows keep their "
                        "labels\n"
                        "ds = keras.utils.image_dataset_from_directory(path, shuffle=False)\n"
                        "y_true = np.concatenate([y for _, y in ds])\n"
                        "y_pred = model.predict(ds).argmax(axis=1)"
                    ),
                )
            ],
        )
    ]
