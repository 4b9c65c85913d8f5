"""untrained-model: weights still at their initial values / the optimizer never stepped."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._model import balanced_accuracy, chance_gain, label_classes
from kerasdoctor.checks.base import (
    OUTPUT,
    PREDICTIONS,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="untrained-model",
    kind=Kind.CAUSE,
    summary="Weights still at their initial values / the optimizer never stepped.",
    measures=(
        "Two independent signs. (1) The optimizer's iteration count saved in the file is 0 "
        "(only read when the file really holds optimizer state; a file saved without it "
        "gives no verdict). (2) The weights look freshly initialised: Keras initialises "
        "biases to exactly 0 and BatchNormalization to gamma=1, beta=0, moving mean 0, moving "
        "variance 1, and any optimizer step with a non-zero gradient moves them off those "
        "values, so every trainable bias vector exactly 0 and every trainable "
        "BatchNormalization at its initial values (at least one of either; frozen layers are "
        "left out, they may be pretrained) is what a network that never learned looks like. "
        "Both signs together are an error by themselves. One sign alone counts only with "
        "chance-level predictions (balanced accuracy at most max_chance_gain of the way from "
        "chance 1/K to perfect): a zero count with nothing to look at in the weights, or "
        "initial weights after optimizer steps (a zero gradient, see loss-mismatch). A zero "
        "iteration count on weights that moved (a model trained, then re-compiled before "
        "saving) is never flagged."
    ),
    fix=(
        "Train the model (model.fit) before saving it; if it was trained, make sure the "
        "trained weights are the ones saved (load_weights / the right checkpoint), and check "
        "that the loss gives a gradient (see loss-mismatch)."
    ),
    thresholds={
        "max_chance_gain": Threshold(
            0.25,
            "an untrained network's random features recover little of the way from chance to "
            "perfect, a trained classifier most of it; below a quarter the predictions carry "
            "too little to show that any training happened",
        ),
    },
    fires_on=("model_untrained",),
    order=180,
    explains=frozenset({OUTPUT, PREDICTIONS, "batchnorm-statistics", "dead-units"}),
    tier=1,
)


def run(ctx: Context) -> list[Finding]:
    facts = ctx.facts
    ev = ctx.evidence
    if not facts.inspectable:
        raise NotApplicable("the weights cannot be read (e.g. a SavedModel)")
    if label_classes(ev).size < 2:
        return []
    iters = facts.optimizer_iterations
    fresh, fresh_evidence = _fresh_weights(ctx)
    gain = chance_gain(ev)
    chance = bool(np.isfinite(gain) and gain <= ctx.threshold(SPEC, "max_chance_gain"))
    never_stepped = iters == 0
    if never_stepped and fresh is True:
        fires = True
    elif never_stepped and fresh is None:
        fires = chance
    elif fresh is True and not never_stepped:
        fires = chance  # stepped (or unknown) yet nothing moved: a zero gradient
    else:
        fires = False
    if not fires:
        return []
    k = int(label_classes(ev).size)
    bacc = balanced_accuracy(ev)
    evidence: dict[str, Any] = {
        "optimizer_iterations": iters,
        "weights_at_initial_values": fresh,
        "balanced_accuracy": bacc,
        "chance_level": 1.0 / k,
        "chance_gain": gain,
        **fresh_evidence,
    }
    signs = []
    if never_stepped:
        signs.append(f"the saved {facts.optimizer or 'optimizer'} has taken 0 steps")
    if fresh:
        signs.append(_fresh_text(fresh_evidence))
    if fresh and iters:
        title = f"The weights are still at their initial values after {iters} optimizer steps"
        cause = (
            " The optimizer stepped, so the gradient was zero: check the loss against the "
            "head (loss-mismatch) and frozen layers (trainable=False)."
        )
    else:
        title = "The model was never trained: " + "; ".join(signs)
        cause = (
            " It was most likely saved right after compile(), before fit()."
            if never_stepped
            else " It was never fitted, or the trained weights were never loaded into it."
        )
    said = "; ".join(signs)
    detail = (
        said[0].upper()
        + said[1:]
        + f". Its balanced accuracy is {bacc:.1%} where chance is {1.0 / k:.1%}: the "
        "predictions come from the random initial weights." + cause
    )
    return [
        finding(
            SPEC,
            Severity.ERROR,
            title,
            detail,
            evidence,
            [
                Fix(
                    "Train before saving (fit, then save the fitted model)",
                    code=(
                        "model.fit(x_train, y_train, validation_split=0.1, epochs=20)\n"
                        "model.save('model_trained.keras')"
                    ),
                ),
                Fix(
                    "If a checkpoint holds the trained weights, load them into the model",
                    code="model.load_weights('checkpoint.weights.h5')",
                ),
            ],
        )
    ]


def _fresh_weights(ctx: Context) -> tuple[bool | None, dict[str, Any]]:
    """True when every trainable bias is exactly 0 and every BatchNorm at its initial values;
    None when there is nothing of the sort to look at."""
    f = ctx.facts
    ev: dict[str, Any] = {
        "trainable_bias_vectors": f.trainable_bias_layers,
        "zero_bias_vectors": f.zero_trainable_bias_layers,
    }
    bn_init = 0
    bns = [b for b in f.batchnorms if b.trainable]  # frozen ones may be pretrained
    for b in bns:
        at_init = (
            not np.any(b.moving_mean)
            and np.all(b.moving_variance == 1.0)
            and (b.gamma is None or np.all(b.gamma == 1.0))
            and (b.beta is None or not np.any(b.beta))
        )
        bn_init += int(bool(at_init))
    ev["batchnorm_layers"] = len(f.batchnorms)
    ev["batchnorm_at_initial_values"] = bn_init
    looked = f.trainable_bias_layers + len(f.batchnorms)
    if looked == 0:
        return None, ev
    fresh = f.zero_trainable_bias_layers == f.trainable_bias_layers and bn_init == len(f.batchnorms)
    return fresh, ev


def _fresh_text(ev: dict[str, Any]) -> str:
    parts = []
    if ev["trainable_bias_vectors"]:
        parts.append(f"all {ev['trainable_bias_vectors']} trainable bias vectors are exactly 0")
    if ev["batchnorm_layers"]:
        parts.append(
            f"{ev['batchnorm_layers']} BatchNormalization layer(s) still hold gamma=1, beta=0, "
            "moving mean 0 and variance 1"
        )
    return " and ".join(parts) + " (their initial values)"
