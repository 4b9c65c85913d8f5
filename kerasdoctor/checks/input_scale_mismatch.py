"""input-scale-mismatch: a multi-input model whose inputs differ in scale by orders of magnitude."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._data import (
    JudgedInput,
    prediction_symptoms,
    severity_for_symptoms,
    symptom_ids,
    value_inputs,
)
from kerasdoctor.checks.base import (
    OUTPUT,
    PREDICTIONS,
    SINGLE_LABEL,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
)
from kerasdoctor.checks.input_scale import describe, scaling_code
from kerasdoctor.findings import Finding, Fix, Kind

SPEC = CheckSpec(
    id="input-scale-mismatch",
    kind=Kind.CAUSE,
    summary="In a multi-input model, inputs whose scales differ by orders of magnitude.",
    measures=(
        "For every input of a multi-input model (token-id inputs excluded), its typical "
        "magnitude as the model's first weighted layer sees it: the RMS of the values, after "
        "the model's own Rescaling/Normalization layer when it has one (a BatchNormalization "
        "or LayerNormalization output counts as 1). The branches' features end up side by "
        "side in a shared layer, whose pre-activation variance is the sum of their "
        "contributions, each proportional to its input's mean square. When the largest and "
        "the smallest magnitude differ by max_ratio or more, and at least one of the two is "
        "not normalised by the model, the small input is drowned: it contributes "
        "1/max_ratio^2 of the variance and its weights learn max_ratio times slower. "
        "Severity: info on its own; a warning when the predictions show a symptom this "
        "explains (collapse, missing classes), an error when the output is constant."
    ),
    fix=(
        "Normalise each input separately, before training and prediction: a "
        "keras.layers.Normalization layer per input adapted on that input's training data, "
        "or a per-input scaling (x / 255 for pixels, (x - mean) / std otherwise); retrain."
    ),
    thresholds={
        "max_ratio": Threshold(
            100.0,
            "two orders of magnitude: the small input then carries 1/10^4 of a shared unit's "
            "pre-activation variance at initialisation, below the noise of the large one, and "
            "its gradients are 100 times smaller",
        ),
    },
    fires_on=("data_multi_scale",),
    order=70,
    needs=frozenset({"symptoms"}),
    explains=frozenset({OUTPUT, PREDICTIONS, "batchnorm-statistics", "dead-units", "input-scale"}),
    tier=3,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def effective_rms(ji: JudgedInput) -> float:
    """The input's RMS as the first weighted layer sees it, through the model's normaliser."""
    m = ji.stats.moments
    valid = m.count > 0
    mean, var = m.mean[valid], m.var[valid]
    norm = ji.normalizer
    if norm is None:
        return float(m.rms())
    params = norm.params or {}
    if norm.class_name == "Rescaling":
        scale = np.asarray(params.get("scale", 1.0), dtype=np.float64).reshape(-1)
        offset = np.asarray(params.get("offset", 0.0), dtype=np.float64).reshape(-1)
        if scale.size not in (1, mean.size) or offset.size not in (1, mean.size):
            return float(m.rms())
        ms = scale**2 * (var + mean**2) + 2 * scale * offset * mean + offset**2
        return float(np.sqrt(np.mean(ms)))
    if norm.class_name == "Normalization" and "mean" in params and not params.get("invert"):
        mu = np.asarray(params["mean"], dtype=np.float64).reshape(-1)
        sd = np.sqrt(np.maximum(np.asarray(params["variance"], dtype=np.float64), 1e-12))
        sd = sd.reshape(-1)
        if mu.size in (1, mean.size) and sd.size in (1, mean.size):
            return float(np.sqrt(np.mean((var + (mean - mu) ** 2) / sd**2)))
        return 1.0
    return 1.0  # batch/layer normalisation: unit scale whatever comes in


def run(ctx: Context) -> list[Finding]:
    judged = value_inputs(ctx)
    if len(ctx.evidence.inputs) < 2 or len(judged) < 2:
        raise NotApplicable("fewer than two inputs whose scale can be judged")
    rows: list[dict[str, Any]] = []
    for ji in judged:
        scale = effective_rms(ji)
        if not np.isfinite(scale) or scale <= 0:
            continue  # an all-zero input has no scale to compare
        mean, std, mn, mx = ji.stats.moments.pooled()
        rows.append(
            {
                "input": ji.name,
                "index": ji.index,
                "rms": float(ji.stats.moments.rms()),
                "effective_rms": scale,
                "mean": mean,
                "std": std,
                "min": mn,
                "max": mx,
                "normalized_by": None if ji.normalizer is None else ji.normalizer.class_name,
            }
        )
    if len(rows) < 2:
        return []
    big = max(rows, key=lambda r: r["effective_rms"])
    small = min(rows, key=lambda r: r["effective_rms"])
    ratio = big["effective_rms"] / small["effective_rms"]
    max_ratio = ctx.threshold(SPEC, "max_ratio")
    if ratio < max_ratio or (big["normalized_by"] and small["normalized_by"]):
        return []
    symptoms = symptom_ids(ctx)
    severity = severity_for_symptoms(symptoms)
    per_input = "; ".join(
        f"'{r['input']}': RMS {r['effective_rms']:.3g} (range {r['min']:.3g} to {r['max']:.3g})"
        for r in rows
    )
    detail = (
        f"{per_input}. The features of '{big['input']}' are {ratio:.3g} times larger than "
        f"those of '{small['input']}': where the branches meet, '{small['input']}' carries "
        f"about 1/{ratio**2:.3g} of the variance and its weights learn {ratio:.3g} times "
        "slower, so the model effectively ignores it."
    )
    if symptoms:
        found = prediction_symptoms(ctx)
        detail += " The predictions show it: " + "; ".join(found[s].title for s in symptoms) + "."
    else:
        detail += " The predictions show no collapse, so this is a risk, not the failure."
    by_name = {ji.name: ji for ji in judged}
    to_fix = [by_name[r["input"]] for r in rows if r["normalized_by"] is None]
    return [
        finding(
            SPEC,
            severity,
            f"Input '{big['input']}' is {ratio:.3g} times larger in scale than input "
            f"'{small['input']}' ({big['effective_rms']:.3g} vs {small['effective_rms']:.3g})",
            detail,
            {
                "inputs": rows,
                "ratio": float(ratio),
                "largest_input": big["input"],
                "smallest_input": small["input"],
                "symptoms": symptoms,
            },
            _fixes(to_fix),
        )
    ]


def _fixes(to_fix: list[JudgedInput]) -> list[Fix]:
    scaling = "\n".join(scaling_code(ji, describe(ji)["raw_pixels"], True) for ji in to_fix)
    layers = []
    for ji in to_fix:
        v = "".join(c if c.isalnum() else "_" for c in ji.name)
        layers.append(
            f"norm_{v} = keras.layers.Normalization(axis=-1)\n"
            f"norm_{v}.adapt({v}_train)  # this input's training data\n"
            f'{v}_in = keras.Input(shape={tuple(ji.stats.shape)}, name="{ji.name}")\n'
            f"{v}_branch = norm_{v}({v}_in)  # feed this to the branch instead of {v}_in"
        )
    return [
        Fix(
            "Normalise each input separately inside the model (one Normalization layer per "
            "input, adapted on that input's training data), then retrain",
            code="\n".join(layers),
        ),
        Fix(
            "Or scale each input before training and prediction (numbers measured on this "
            "data; compute them on the training data), then retrain",
            code=scaling,
        ),
    ]
