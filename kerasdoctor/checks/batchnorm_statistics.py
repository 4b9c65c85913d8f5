"""batchnorm-statistics: BatchNorm moving statistics far from the data's, so inference differs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._model import py_path
from kerasdoctor.checks.base import (
    ALL_TASKS,
    OUTPUT,
    PREDICTIONS,
    CheckSpec,
    Context,
    NotApplicable,
    Threshold,
    finding,
    prediction_symptoms,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult

SPEC = CheckSpec(
    id="batchnorm-statistics",
    kind=Kind.CAUSE,
    summary=(
        "BatchNormalization moving statistics far from the data's, so inference differs from "
        "training."
    ),
    measures=(
        "For every BatchNormalization layer, the single pass accumulates the per-channel mean "
        "mu and variance s^2 of what the layer actually receives on this data; they are "
        "compared with the layer's moving mean m and variance v, which inference uses. With "
        "z the value training-mode BN would produce, inference computes r * z + d, where "
        "d = (mu - m) / sqrt(v + eps) and r = sqrt((s^2 + eps) / (v + eps)); the error in "
        "units of the activation's own spread is sqrt(d^2 + (r - 1)^2), and a layer's gap is "
        "the median over its channels (>= max_gap is reported). Whenever the predictions show "
        "a symptom, two experiments run on the bounded sample for every model with "
        "BatchNorm layers, whatever the gap, when the sample holds at least min_confirm_samples "
        "rows: the model with BatchNorm in training mode (batch "
        "statistics, batches of 256), and a copy whose moving statistics are re-estimated "
        "from the sample (a cumulative average, AdaBN) and then run at inference. The better "
        "one cures the model when it gains at least confirm_gain of balanced accuracy, "
        "noise_z times the sampling noise of a difference, and removes at least "
        "min_error_removed of the balanced error: then it is an error. A gap whose "
        "experiments change nothing is info; without symptoms no experiment runs and a gap "
        "is info."
    ),
    fix=(
        "Re-estimate the moving statistics on representative data (a pass in training mode "
        "with a running-average momentum, no weight update), train longer, or lower the "
        "momentum (e.g. 0.9) for short trainings."
    ),
    thresholds={
        "max_gap": Threshold(
            1.0,
            "inference is off by a full standard deviation of the activation on a typical "
            "channel: as large as the signal itself, enough to flip which downstream units "
            "fire",
        ),
        "confirm_gain": Threshold(
            0.1,
            "the cure must win at least 10 points of balanced accuracy on the sample: smaller "
            "gains are within what batch-statistics noise moves",
        ),
        "min_confirm_samples": Threshold(
            64,
            "batch statistics from fewer samples are themselves too noisy to compare against",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors of a difference of two balanced accuracies: two "
            "experiments are tried, so a 2-sigma bar would let one pass by chance",
        ),
        "min_error_removed": Threshold(
            0.5,
            "fixing the statistics gives back the trained model, so it must remove at least "
            "half the balanced error; a perturbation of a model broken otherwise only nudges it",
        ),
    },
    fires_on=("model_batchnorm",),
    repair=(
        "re-estimate every BatchNormalization layer's moving mean and variance from the data (a"
        " cumulative average over batches; no weight changes)"
    ),
    order=150,
    tasks=ALL_TASKS,
    task_order=20,
    needs=frozenset({"symptoms", "experiments"}),
    explains=frozenset({OUTPUT, PREDICTIONS, "dead-units"}),
    tier=4,
)


def run(ctx: Context) -> list[Finding]:
    facts = ctx.facts
    ev = ctx.evidence
    if not facts.batchnorms:
        raise NotApplicable("no BatchNormalization layer")
    infos = {b.name: b for b in facts.batchnorms}
    layers: list[dict[str, Any]] = []
    for st in ev.bn_inputs:
        info = infos.get(st.layer)
        mom = st.moments
        if info is None or mom.n_features != info.moving_mean.size or mom.count.sum() == 0:
            continue
        mu, s2 = mom.mean, mom.var
        m, v, eps = info.moving_mean, info.moving_variance, info.epsilon
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (mu - m) / np.sqrt(np.maximum(v, 0) + eps)
            r = np.sqrt((np.maximum(s2, 0) + eps) / (np.maximum(v, 0) + eps))
            gap = np.sqrt(d**2 + (r - 1) ** 2)
        finite = np.isfinite(gap)
        if not finite.any():
            continue
        layers.append(
            {
                "layer": st.layer,
                "channels": int(gap.size),
                "median_gap": float(np.median(gap[finite])),
                "median_shift": float(np.median(np.abs(d[finite]))),
                "median_scale_ratio": float(np.median(r[finite])),
                "data_mean": float(np.mean(mu)),
                "moving_mean": float(np.mean(m)),
                "data_var": float(np.mean(s2)),
                "moving_var": float(np.mean(v)),
                "momentum": info.momentum,
            }
        )
    max_gap = ctx.threshold(SPEC, "max_gap")
    flagged = [row for row in layers if row["median_gap"] >= max_gap]
    symptoms = prediction_symptoms(ctx)
    tried = _experiments(ctx) if symptoms and facts.batchnorms else []
    exps = ctx.experiments
    best = max(tried, key=lambda r: r.after or 0.0) if tried else None
    cured = (
        best is not None
        and exps is not None
        and exps.restores(
            best,
            ctx.threshold(SPEC, "confirm_gain"),
            ctx.threshold(SPEC, "noise_z"),
            ctx.threshold(SPEC, "min_error_removed"),
        )
    )
    if not flagged and not cured:
        return []
    first = flagged[0] if flagged else max(layers, key=lambda r: r["median_gap"], default=None)
    severity = Severity.ERROR if cured else Severity.INFO
    evidence: dict[str, Any] = {
        "flagged_layers": [row["layer"] for row in flagged],
        "symptoms": sorted(symptoms),
        "layers": layers,
        "cured": cured,
        "experiments": [r.to_dict() for r in tried],
    }
    if best is not None:
        evidence["experiment"] = best.to_dict()
    parts: list[str] = []
    if first is not None:
        evidence.update({k: first[k] for k in ("median_gap", "median_shift", "median_scale_ratio")})
        evidence["layer"] = first["layer"]
        parts.append(
            f"On a typical channel of '{first['layer']}' the data's mean sits "
            f"{first['median_shift']:.2g} moving standard deviations from the moving mean and "
            f"its spread is {first['median_scale_ratio']:.2g}x the moving one (layer mean of "
            f"the data {first['data_mean']:.3g} vs moving {first['moving_mean']:.3g}, variance "
            f"{first['data_var']:.3g} vs {first['moving_var']:.3g}; momentum "
            f"{first['momentum']:g}). At inference the layer normalises with the moving "
            "statistics, so every activation after it is off by about that much."
        )
    for r in tried:
        parts.append(
            f"On {r.rows} rows, {r.what}: balanced accuracy {r.before:.1%} -> "
            + (f"{r.after:.1%}." if r.ok and r.after is not None else f"failed ({r.error}).")
        )
    if cured:
        parts.append("The moving statistics are what breaks the predictions; the weights are fine.")
    elif tried:
        parts.append("Neither changes the answers enough: the statistics are not the failure.")
    if cured and best is not None and best.after is not None:
        title = (
            f"BatchNorm moving statistics do not fit the data: {best.what}, balanced "
            f"accuracy {best.before:.0%} -> {best.after:.0%}"
        )
    else:
        assert first is not None
        title = (
            f"BatchNorm '{first['layer']}': moving statistics are "
            f"{first['median_gap']:.2g} standard deviations off the data's"
        )
    return [
        finding(
            SPEC,
            severity,
            title,
            " ".join(parts),
            evidence,
            [repair_fix(ctx, SPEC), *_fixes(ctx)] if cured else [],
        )
    ]


def _experiments(ctx: Context) -> list[ExperimentResult]:
    """Both BatchNorm experiments, when the sample is large enough for batch statistics."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return []
    if exps.rows < ctx.threshold(SPEC, "min_confirm_samples"):
        return []
    return [exps.bn_reestimated(), exps.bn_training_mode()]


def _fixes(ctx: Context) -> list[Fix]:
    return [
        Fix(
            "Re-estimate the moving statistics on representative (training) data; no weight "
            "changes",
            code=(
                "import keras\n"
                "import numpy as np\n"
                f"model = keras.saving.load_model({py_path(ctx.model_path)})\n"
                f"x = np.load({py_path(ctx.data_path)})['x']  # better: the training data\n\n"
                "def bn_layers(m):\n"
                "    for layer in m.layers:\n"
                "        if isinstance(layer, keras.layers.BatchNormalization):\n"
                "            yield layer\n"
                "        if hasattr(layer, 'layers'):\n"
                "            yield from bn_layers(layer)\n\n"
                "bns = list(bn_layers(model))\n"
                "momenta = [bn.momentum for bn in bns]\n"
                "order = np.random.default_rng(0).permutation(len(x))\n"
                "for i, start in enumerate(range(0, len(x), 256), start=1):\n"
                "    for bn in bns:\n"
                "        bn.momentum = (i - 1) / i  # running average over the batches\n"
                "    model(x[order[start:start + 256]], training=True)  # updates statistics only\n"
                "for bn, momentum in zip(bns, momenta):\n"
                "    bn.momentum = momentum\n"
                "model.save('model_bn_recalibrated.keras')"
            ),
        ),
        Fix(
            "Or train longer, or with a lower BatchNorm momentum when training is short",
            code="keras.layers.BatchNormalization(momentum=0.9)",
        ),
    ]
