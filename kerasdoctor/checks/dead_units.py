"""dead-units: ReLU units that are zero for every sample, a layer's worth of them."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    OUTPUT,
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
    prediction_symptoms,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="dead-units",
    kind=Kind.CAUSE,
    summary="ReLU units that are zero for every sample, a layer's worth of them.",
    measures=(
        "During the single pass, every ReLU-family layer's output is reduced per sample to "
        "its maximum over the spatial positions, and each unit counts the samples in which "
        "it was above 0 anywhere. A unit at 0 for every sample of the data is dead: it passes "
        "no signal and, since ReLU's gradient is 0 there, no gradient either, so training "
        "cannot revive it. Per layer, the dead share is compared with mostly_dead; a layer "
        "with every unit dead outputs a constant, and so does everything after it unless a "
        "skip connection goes around it. The verdict needs min_samples samples. Severity "
        "follows the predictions: an entirely dead layer is an error and a mostly dead one a "
        "warning when the predictions show a symptom (constant output, collapse, missing "
        "classes, low recall); with healthy predictions (e.g. a residual path carries the "
        "signal) it is info. A mostly (not entirely) dead layer is a warning only when the "
        "model's features fail a learnability probe while the inputs pass it (for a hidden "
        "layer; dead units of the output layer drop their classes directly): a "
        "class-balanced linear probe on the penultimate features, cross-validated on the "
        "bounded sample, is at chance or falls short of the same probe on the raw inputs by "
        "more than probe_gap (and noise_z times the sampling noise of a difference). When the "
        "surviving units still carry the classes, or the inputs carry nothing to learn, the "
        "dead ones are not what breaks the predictions: info."
    ),
    fix=(
        "Lower the learning rate, normalise the inputs, use He initialisation, LeakyReLU "
        "(negative_slope ~0.01) instead of ReLU, or BatchNormalization before the activation; "
        "then retrain."
    ),
    thresholds={
        "mostly_dead": Threshold(
            0.5,
            "at He initialisation a ReLU unit fires on about half the inputs, so essentially "
            "none is silent on a whole dataset; trained networks lose some units, and once "
            "more than half of a layer is silent the layer has lost most of its capacity",
        ),
        "min_samples": Threshold(
            100,
            "a unit that fires on 5% of the inputs still fires somewhere in 100 samples with "
            "probability 1 - 0.95^100 = 99.4%; with fewer samples 'zero for every sample' "
            "may just be a rarely active unit",
        ),
        "probe_gap": Threshold(
            0.1,
            "the features lost the signal when a probe on them scores 10 points of balanced "
            "accuracy below the same probe on the raw inputs (the restoring bar of the "
            "experiments, here read the other way)",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors of a difference of two balanced accuracies on these class "
            "sizes, so a probe's fold noise is not read as lost signal",
        ),
    },
    fires_on=("model_dead_relu",),
    order=140,
    explains=frozenset({OUTPUT, PREDICTIONS}),
    tier=5,
    needs=frozenset({"symptoms", "experiments"}),
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    stats = [a for a in ev.activations if a.active_count.size > 0]
    if not stats:
        raise NotApplicable("no ReLU-family layer to watch")
    min_samples = ctx.threshold(SPEC, "min_samples")
    mostly = ctx.threshold(SPEC, "mostly_dead")
    n = min(a.n_samples for a in stats)
    if n < min_samples:
        return []
    layers: list[dict[str, Any]] = []
    nan_layers = {b.layer for b in ctx.facts.nonfinite_weights}
    for a in stats:
        # NaN is never > 0 (and some kernels turn relu(NaN) into 0), so units fed by NaN
        # weights look dead: that is nonfinite-weights' finding, not a dead layer
        finite = np.isfinite(a.max)
        if a.layer in nan_layers or not finite.any():
            continue
        n_dead = int((a.dead & finite).sum())
        n_units = int(finite.sum())
        layers.append(
            {
                "layer": a.layer,
                "activation": a.activation,
                "units": n_units,
                "dead": n_dead,
                "dead_fraction": n_dead / n_units,
                "nonfinite_units": int((~finite).sum()),
                "output_layer": a.layer == ctx.facts.head_layer,
            }
        )
    flagged = [d for d in layers if d["dead_fraction"] >= mostly and d["dead"] > 0]
    if not flagged:
        return []
    entire = [d for d in flagged if d["dead"] == d["units"]]
    worst = entire[0] if entire else max(flagged, key=lambda d: d["dead_fraction"])
    symptoms = prediction_symptoms(ctx)
    if not symptoms:
        severity = Severity.INFO
    elif entire:
        severity = Severity.ERROR
    else:
        severity = Severity.WARNING
    # the probe reads the penultimate features: it judges hidden layers, not dead units of
    # the output layer itself (those drop their classes directly)
    hidden = not worst["output_layer"]
    probes = _probes(ctx) if severity is Severity.WARNING and hidden else None
    if probes is not None and not probes["features_fail"]:
        severity = Severity.INFO
    spread = _output_spread(ctx)
    evidence: dict[str, Any] = {
        "layer": worst["layer"],
        "dead": worst["dead"],
        "units": worst["units"],
        "dead_fraction": worst["dead_fraction"],
        "entirely_dead_layers": [d["layer"] for d in entire],
        "n_samples": n,
        "output_spread": spread,
        "optimizer_learning_rate": lr[1] if (lr := _learning_rate(ctx)) else None,
        "symptoms": sorted(symptoms),
        "layers": layers,
    }
    if probes is not None:
        evidence["probes"] = probes
    if entire:
        title = (
            f"ReLU layer '{worst['layer']}' is entirely dead: all {worst['units']} units are "
            f"0 for every one of {n} samples"
        )
        detail = (
            f"No unit of '{worst['layer']}' is ever above 0, so it outputs zeros whatever the "
            "input and everything after it is a constant unless a skip connection goes "
            f"around it (the output probabilities move by at most {spread:.2g} over the "
            "data). ReLU passes no gradient at 0, so more training cannot revive it: the "
            "usual cause is a learning rate too high or unscaled inputs that threw the "
            "pre-activations below zero for every sample."
        )
    else:
        title = (
            f"{worst['dead']} of {worst['units']} ReLU units in '{worst['layer']}' "
            f"({worst['dead_fraction']:.0%}) are 0 for every one of {n} samples"
        )
        detail = (
            f"{len(flagged)} layer(s) have at least {mostly:.0%} of their units silent on the "
            "whole dataset; those units carry neither signal nor gradient, so the layer works "
            "with a fraction of its capacity."
        )
    detail += (
        f" The predictions show: {', '.join(sorted(symptoms))}."
        if symptoms
        else " The predictions look fine, so the rest of the network copes."
    )
    if probes is not None:
        fb, ib = probes["feature_probe"], probes["input_probe"]
        on_inputs = f", on the raw inputs {ib:.1%}" if ib is not None else ""
        detail += (
            f" A class-balanced linear probe on the penultimate features reaches "
            f"{fb:.1%} balanced accuracy{on_inputs}: "
            + (
                "the features lost the signal the inputs carry."
                if probes["features_fail"]
                else "the inputs carry nothing the probe can find either, so the dead units "
                "are not what breaks the predictions."
                if not probes["inputs_carry_signal"]
                else "the surviving units still carry the classes, so the dead ones are not "
                "what breaks the predictions."
            )
        )
    return [
        finding(
            SPEC,
            severity,
            title,
            detail,
            evidence,
            _fixes(ctx) if severity is not Severity.INFO else [],
        )
    ]


def _probes(ctx: Context) -> dict[str, Any] | None:
    """Do the features still carry what the inputs carry? None when they cannot be probed."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    return exps.features_keep_signal(
        ctx.threshold(SPEC, "probe_gap"), ctx.threshold(SPEC, "noise_z")
    )


def _output_spread(ctx: Context) -> float:
    probs = ctx.evidence.output.probs
    if probs.count.sum() == 0:
        return float("nan")
    spread = np.where(probs.count > 0, probs.max - probs.min, 0.0)
    return float(np.nanmax(spread))


def _learning_rate(ctx: Context) -> tuple[str, float] | None:
    """The saved optimizer's name and constant learning rate, when the file holds them."""
    lr = ctx.facts.learning_rate
    if lr is None or ctx.facts.optimizer is None or not ctx.facts.compiled:
        return None
    return ctx.facts.optimizer, lr


def _fixes(ctx: Context) -> list[Fix]:
    saved = _learning_rate(ctx)
    if saved is not None:
        name, lr = saved
        lower = f"{lr / 10:.3g}"
        summary = (
            f"Retrain from fresh weights with a lower learning rate (the saved {name} uses "
            f"{lr:.3g}; try {lower}): dead units do not come back"
        )
        code = (
            "model = build_model()  # fresh weights\n"
            f"model.compile(optimizer=keras.optimizers.{name}(learning_rate={lower}), "
            "loss=...)"
        )
    else:
        summary = (
            "Retrain from fresh weights with a lower learning rate (10x lower is a good first "
            "step): dead units do not come back"
        )
        code = (
            "model = build_model()  # fresh weights\n"
            "model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4), loss=...)"
        )
    return [
        Fix(summary, code=code),
        Fix(
            "Normalise the inputs inside the model, so no pre-activation starts far off",
            code=(
                "norm = keras.layers.Normalization()\n"
                "norm.adapt(x_train)\n"
                "inputs = keras.Input(x_train.shape[1:])\n"
                "h = norm(inputs)  # then the rest of the network"
            ),
        ),
        Fix(
            "Use He initialisation and LeakyReLU so a unit pushed below 0 still gets a gradient",
            code=(
                "h = keras.layers.Dense(64, kernel_initializer='he_normal')(h)\n"
                "h = keras.layers.BatchNormalization()(h)  # keeps pre-activations centred\n"
                "h = keras.layers.LeakyReLU(negative_slope=0.01)(h)"
            ),
        ),
        Fix(
            "Check the inputs' scale first: unscaled inputs are the usual upstream cause",
            command="kerasdoctor explain input-scale",
        ),
    ]
