"""input-scale: an input far from unit scale, with nothing in the model to normalise it."""

from __future__ import annotations

from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._data import (
    JudgedInput,
    feature_rms,
    fmt_list,
    fmt_num,
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
    Threshold,
    finding,
)
from kerasdoctor.findings import Finding, Fix, Kind

SPEC = CheckSpec(
    id="input-scale",
    kind=Kind.CAUSE,
    summary=(
        "An input far from unit scale (raw 0-255 pixels, features in the thousands) with "
        "nothing in the model to normalise it."
    ),
    measures=(
        "From the single pass, per input and per feature (last axis): mean, std, min, max and "
        "the typical magnitude RMS = sqrt(mean^2 + std^2), over finite values. Inputs that the "
        "model normalises itself (a Rescaling, Normalization or BatchNormalization layer before "
        "any weighted layer) and inputs read as indices (Embedding, lookups) are skipped. With "
        "Glorot/He initialisation a Dense/Conv unit's pre-activation variance is about gain x "
        "the mean square of its inputs, so the input's pooled RMS is the scale the first layer "
        "starts at. An input is flagged when that RMS >= max_rms, or when its features' "
        "magnitudes spread over orders of magnitude (largest feature RMS / median >= "
        "min_spread). Whole numbers in [0, 255] on an image-shaped or uint8 input are named "
        "raw 8-bit pixels. Severity: info on its own; a warning when the predictions show a "
        "symptom the scale explains (collapse, missing classes, constant output), an error when "
        "the output no longer depends on the input at all."
    ),
    fix=(
        "Scale the input before training and before prediction, the same way: x / 255 for raw "
        "pixels, (x - mean) / std per feature otherwise, or a keras.layers.Normalization layer "
        "adapted on the training data as the model's first layer; then retrain. If the model "
        "was trained on scaled data, apply exactly that scaling (see preprocessing-mismatch)."
    ),
    thresholds={
        "max_rms": Threshold(
            10.0,
            "an order of magnitude above unit scale: first-layer pre-activations start with a "
            "std of ~10 instead of ~1, so the logits downstream start saturated (a gap of 10 "
            "is 22000:1 odds), cross-entropy gradients are large and ReLUs that a big step "
            "pushes negative stay dead",
        ),
        "min_spread": Threshold(
            100.0,
            "two orders of magnitude between the largest and the median feature: the gradient "
            "of a first-layer weight scales with its feature, the curvature with its square, "
            "so a learning rate that is stable for the large features moves the others' "
            "weights ~10^4 times slower; and the large features dominate every pre-activation",
        ),
    },
    fires_on=("data_raw_pixels",),
    order=60,
    needs=frozenset({"symptoms"}),
    explains=frozenset({OUTPUT, PREDICTIONS, "batchnorm-statistics", "dead-units"}),
    tier=3,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    max_rms = ctx.threshold(SPEC, "max_rms")
    min_spread = ctx.threshold(SPEC, "min_spread")
    flagged: list[dict[str, Any]] = []
    judged: dict[str, JudgedInput] = {}
    for ji in value_inputs(ctx):
        if ji.normalizer is not None:
            continue
        row = describe(ji)
        reasons = []
        if row["rms"] >= max_rms:
            reasons.append("magnitude")
        if row["feature_spread"] is not None and row["feature_spread"] >= min_spread:
            reasons.append("feature-spread")
        if reasons:
            row["reasons"] = reasons
            flagged.append(row)
            judged[row["input"]] = ji
    if not flagged:
        return []
    symptoms = symptom_ids(ctx)
    severity = severity_for_symptoms(symptoms)
    first = flagged[0]
    names = ", ".join(f"'{r['input']}'" for r in flagged)
    if "magnitude" in first["reasons"]:
        what = (
            "raw 0-255 pixels"
            if first["raw_pixels"]
            else f"typical magnitude {first['rms']:.3g}, values {first['min']:.3g} to "
            f"{first['max']:.3g}"
        )
    else:
        what = f"feature scales spread {first['feature_spread']:.3g}x"
    title = (
        f"Input {names} is far from unit scale ({what}) and the model does not normalise it"
        if len(flagged) == 1
        else f"Inputs {names} are far from unit scale and the model does not normalise them"
    )
    details = []
    for r in flagged:
        line = (
            f"input '{r['input']}': RMS {r['rms']:.3g} (mean {r['mean']:.3g}, std {r['std']:.3g}, "
            f"range {r['min']:.3g} to {r['max']:.3g})"
        )
        if r["raw_pixels"]:
            line += ", whole numbers in [0, 255]: raw 8-bit pixels"
        if "feature-spread" in r["reasons"]:
            line += (
                f", feature magnitudes spread {r['feature_spread']:.3g}x (largest: feature "
                f"{r['largest_features'][0]['feature']} at {r['largest_features'][0]['rms']:.3g})"
            )
        details.append(line)
    consequence = (
        " With Glorot/He initialisation a first layer's pre-activations have about the mean "
        "square of its inputs as variance, so they start far from unit scale: logits "
        "saturate, gradients are huge and ReLU units die."
    )
    if any("feature-spread" in r["reasons"] for r in flagged):
        consequence += (
            " Features of small scale are drowned by the large ones and their weights learn "
            "far slower."
        )
    if symptoms:
        found = prediction_symptoms(ctx)
        consequence += (
            " The predictions show it: " + "; ".join(found[s].title for s in symptoms) + "."
        )
    else:
        consequence += " The predictions show no collapse, so this is a risk, not the failure."
    if not ctx.facts.inspectable:
        consequence += (
            " (This model format does not show its layers: it may normalise the input internally.)"
        )
    evidence = {
        "inputs": flagged,
        "symptoms": symptoms,
        "model_layers_visible": bool(ctx.facts.inspectable),
    }
    return [
        finding(
            SPEC,
            severity,
            title,
            "; ".join(details) + "." + consequence,
            evidence,
            _fixes(ctx, flagged, judged),
        )
    ]


def describe(ji: JudgedInput) -> dict[str, Any]:
    """The scale facts of one input, JSON-ready."""
    st = ji.stats
    m = st.moments
    mean, std, mn, mx = m.pooled()
    frms = feature_rms(st)
    valid = frms[np.isfinite(frms) & (frms > 0)]
    spread = float(valid.max() / np.median(valid)) if valid.size >= 2 else None
    order = np.argsort(-np.nan_to_num(frms, nan=-1.0))[:5]
    image_like = len(st.shape) >= 2 or st.dtype == "uint8"
    raw_pixels = bool(st.integral and image_like and mn >= 0 and 1 < mx <= 255)
    return {
        "input": st.name,
        "index": ji.index,
        "shape": list(st.shape),
        "rms": float(m.rms()),
        "mean": mean,
        "std": std,
        "min": mn,
        "max": mx,
        "integral": bool(st.integral),
        "raw_pixels": raw_pixels,
        "n_features": int(m.n_features),
        "feature_spread": spread,
        "largest_features": [
            {"feature": int(i), "rms": float(frms[i]), "mean": float(m.mean[i])}
            for i in order
            if np.isfinite(frms[i])
        ],
    }


def _var(name: str) -> str:
    s = "".join(c if c.isalnum() else "_" for c in name).strip("_") or "x"
    return s if not s[0].isdigit() else f"x_{s}"


def scaling_code(ji: JudgedInput, raw_pixels: bool, multi: bool) -> str:
    """The exact scaling of one input, computed from the data, as paste-able code."""
    v = _var(ji.name) if multi else "x"
    if raw_pixels:
        return f'{v} = {v}.astype("float32") / 255.0  # raw 8-bit pixels to [0, 1]'
    m = ji.stats.moments
    std = np.where(m.std > 0, m.std, 1.0)
    means, stds = fmt_list(m.mean), fmt_list(std)
    if m.n_features == 1 or means is None or stds is None:
        if m.n_features == 1:
            return f"{v} = ({v} - {fmt_num(float(m.mean[0]))}) / {fmt_num(float(std[0]))}"
        axes = f"tuple(range({v}.ndim - 1))"
        return (
            f"mean = {v}.mean(axis={axes})  # per feature, on the TRAINING data\n"
            f"std = {v}.std(axis={axes}) + 1e-7\n"
            f"{v} = ({v} - mean) / std"
        )
    return (
        f"mean = np.array({means})  # per feature, measured on this data\n"
        f"std = np.array({stds})\n"
        f"{v} = ({v} - mean) / std"
    )


def normalization_code(ji: JudgedInput, raw_pixels: bool, multi: bool) -> str:
    shape = tuple(ji.stats.shape)
    if raw_pixels:
        layer = "keras.layers.Rescaling(1.0 / 255)"
        adapt = ""
    else:
        layer = "keras.layers.Normalization(axis=-1)"
        v = _var(ji.name) if multi else "x"
        adapt = f"norm.adapt({v}_train)  # the training data, unscaled\n"
    return (
        f"norm = {layer}\n"
        + adapt
        + f'inputs = keras.Input(shape={shape}, name="{ji.name}")\n'
        + "h = norm(inputs)  # then the rest of the model on h; retrain"
    )


def _fixes(
    ctx: Context, flagged: list[dict[str, Any]], judged: dict[str, JudgedInput]
) -> list[Fix]:
    multi = len(ctx.evidence.inputs) > 1
    scale = "\n".join(scaling_code(judged[r["input"]], r["raw_pixels"], multi) for r in flagged)
    r0 = flagged[0]
    return [
        Fix(
            "Scale the input (these numbers are measured on this data; compute them on the "
            "training data and apply the same to every split), then retrain",
            code=scale,
        ),
        Fix(
            "Or let the model normalise its input: add a preprocessing layer as its first "
            "layer and retrain",
            code=normalization_code(judged[r0["input"]], r0["raw_pixels"], multi),
        ),
        Fix(
            "If the model was trained on scaled data, apply that same scaling here",
            command="kerasdoctor explain preprocessing-mismatch",
        ),
    ]
