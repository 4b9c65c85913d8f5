"""chance-level: balanced accuracy no better than guessing, collapsed or not."""

from __future__ import annotations

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import ALL_TASKS, CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Kind, Severity

SPEC = CheckSpec(
    id="chance-level",
    kind=Kind.SYMPTOM,
    summary="Balanced accuracy is no better than chance (1/K) within its confidence bound.",
    measures=(
        "Balanced accuracy b (the mean recall over the K classes present) against chance 1/K. "
        "Under chance the predictions do not depend on the labels: class k's recall is then a "
        "binomial proportion whose success rate is q_k, the share of all predictions that go "
        "to k, so b has mean 1/K and standard error sqrt(sum_k q_k (1 - q_k) / n_k) / K on "
        "these class sizes n_k. The model is at chance when b <= 1/K + z * that error: a "
        "label-blind guesser with the same prediction shares would reach b that often. The "
        "bar depends on the sample size, never a fixed margin (below min_samples rows nothing "
        "is judged); a model that predicts one "
        "class for everything sits exactly at 1/K. It fires whether or not the predictions "
        "collapse, and the verdict is never healthy while it does."
    ),
    fix=(
        "The predictions carry no information about the labels: look at the causes below "
        "(inputs that do not match the labels, preprocessing, BatchNorm statistics, a dead or "
        "disconnected network). A model at chance is never fit to ship."
    ),
    thresholds={
        "z": Threshold(
            1.645,
            "one-sided 95%: a guesser with the model's prediction shares reaches this balanced "
            "accuracy in 1 of 20 draws, so beating it is evidence of signal",
        ),
        "min_samples": Threshold(
            20,
            "below 20 labelled rows the binomial error of every recall is so wide that the "
            "bound says nothing either way",
        ),
    },
    fires_on=("scn_shuffled",),
    order=15,
    tasks=ALL_TASKS,
    task_order=30,
)


def run(ctx: Context) -> list[Finding]:
    from kerasdoctor.experiments import chance_margin
    from kerasdoctor.metrics import recall_vector

    ev = ctx.evidence
    support = ev.label_counts.astype(np.int64)
    predicted = ev.predicted_counts.astype(np.int64)
    present = support > 0
    kp = int(present.sum())
    n = int(ev.n_samples)
    if kp < 2 or n < ctx.threshold(SPEC, "min_samples"):
        return []
    recall = recall_vector(ev.confusion)
    bal = float(np.mean(recall[present]))
    share = predicted / max(int(predicted.sum()), 1)
    chance = 1.0 / kp
    margin = chance_margin(support, share, ctx.threshold(SPEC, "z"))
    bar = chance + margin
    if bal > bar:
        return []
    evidence = {
        "balanced_accuracy": bal,
        "chance": chance,
        "bound": bar,
        "margin": margin,
        "n_classes_present": kp,
        "label_counts": support.tolist(),
        "predicted_counts": predicted.tolist(),
        "prediction_shares": [float(s) for s in share],
        "most_predicted_class": int(np.argmax(predicted)),
    }
    one_class = int((predicted > 0).sum()) == 1
    how = (
        f"every prediction is class {ctx.cls(int(np.argmax(predicted)))}, which scores "
        "exactly chance"
        if one_class
        else (
            f"a guesser that ignores the input and hands out the classes in the model's "
            f"proportions reaches up to {bar:.1%} (95% bound on {n} rows)"
        )
    )
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"Balanced accuracy {bal:.1%} is no better than chance ({chance:.1%} for {kp} classes)",
            f"Mean recall over the {kp} classes is {bal:.1%}; {how}. The predictions carry no "
            "measurable information about the labels.",
            evidence,
        )
    ]
