"""constant-output: the model's output barely changes with its input."""

from __future__ import annotations

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import OUTPUT, SINGLE_LABEL, CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="constant-output",
    kind=Kind.SYMPTOM,
    summary="The model's output barely changes with its input.",
    measures=(
        "The outputs are turned into probabilities (softmax/sigmoid of logits when the head is "
        "linear) and, per output unit, the range max - min over every sample is taken. When no "
        "unit moves by more than max_range across the whole dataset, the output does not "
        "depend on the input: the network is dead or saturated before the head."
    ),
    fix=(
        "Find where the signal dies: dead ReLU layers (lower the learning rate, He "
        "initialisation, normalised inputs), NaN weights, or inputs far from unit scale."
    ),
    thresholds={
        "max_range": Threshold(
            0.01, "no probability moves by a full percentage point over the whole data"
        ),
    },
    fires_on=("scn_constant_minority",),
    order=40,
    group=OUTPUT,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    probs = ev.output.probs
    if ev.n_samples < 2 or probs.count.sum() == 0:
        return []
    spread = np.where(probs.count > 0, probs.max - probs.min, 0.0)
    max_range = float(spread.max())
    if max_range > ctx.threshold(SPEC, "max_range"):
        return []
    mean = probs.mean
    # the class it answers is the one predicted (argmax of a one-unit mean would say 0)
    answer = int(np.argmax(ev.predicted_counts))
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"The output is the same for every input (largest spread {max_range:.2g})",
            f"Across {ev.n_samples} samples no output probability moves by more than "
            f"{max_range:.2g}; the prediction is always class {ctx.cls(answer)} "
            "whatever the input. Something upstream (dead units, NaN, saturation) "
            "disconnects the output from the data.",
            {
                "max_range": max_range,
                "predicted_class": answer,
                "mean_output": mean.tolist(),
                "head_used": ev.output.head_used,
            },
            [
                Fix(
                    "Check the causes below (dead units, input scale, NaN weights)",
                    command="kerasdoctor explain dead-units",
                )
            ],
        )
    ]
