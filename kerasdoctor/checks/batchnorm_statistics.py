"""batchnorm-statistics: BatchNorm moving statistics far from the data's, so inference differs."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasdoctor.checks._model import balanced_accuracy_of, prediction_symptoms, py_path
from kerasdoctor.checks.base import CheckSpec, Context, Threshold, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

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
        "units of the activation's own spread is sqrt(d^2 + (r - 1)^2). A layer's gap is the "
        "median over its channels. A flagged layer is confirmed on the bounded sample: the "
        "model is run once more with only its BatchNormalization layers in training mode "
        "(batch statistics; the moving statistics it updates are restored afterwards), and "
        "the balanced accuracy of both runs is compared. Error when confirmed and the "
        "predictions show a symptom, warning when confirmed without one (or unconfirmable "
        "with one), info when training mode predicts no better."
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
            "training-mode statistics must win at least 10 points of balanced accuracy on the "
            "sample: well above the noise of a ~2000-sample estimate and of batch statistics",
        ),
        "min_confirm_samples": Threshold(
            64,
            "batch statistics from fewer samples are themselves too noisy to compare against",
        ),
    },
)

CONFIRM_BATCH = 256  # a typical training batch: its statistics are what training saw


def run(ctx: Context) -> list[Finding]:
    facts = ctx.facts
    ev = ctx.evidence
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
    if not flagged:
        return []
    first = flagged[0]  # the upstream-most: later layers inherit its distortion
    confirm = _confirm(ctx)
    symptoms = prediction_symptoms(ctx)
    gain = ctx.threshold(SPEC, "confirm_gain")
    confirmed = confirm is not None and confirm["gain"] >= gain
    if confirmed:
        severity = Severity.ERROR if symptoms else Severity.WARNING
    elif confirm is None:
        severity = Severity.WARNING if symptoms else Severity.INFO
    else:
        severity = Severity.INFO
    evidence: dict[str, Any] = {
        "layer": first["layer"],
        "median_gap": first["median_gap"],
        "median_shift": first["median_shift"],
        "median_scale_ratio": first["median_scale_ratio"],
        "flagged_layers": [row["layer"] for row in flagged],
        "symptoms": sorted(symptoms),
        "layers": layers,
    }
    detail = (
        f"On a typical channel of '{first['layer']}' the data's mean sits "
        f"{first['median_shift']:.2g} moving standard deviations from the moving mean and its "
        f"spread is {first['median_scale_ratio']:.2g}x the moving one (layer mean of the data "
        f"{first['data_mean']:.3g} vs moving {first['moving_mean']:.3g}, variance "
        f"{first['data_var']:.3g} vs {first['moving_var']:.3g}; momentum {first['momentum']:g})."
        " At inference the layer normalises with the moving statistics, so every activation "
        "after it is off by about that much."
    )
    if confirm is not None:
        evidence.update(
            {
                "inference_balanced_accuracy": confirm["inference"],
                "training_mode_balanced_accuracy": confirm["training"],
                "prediction_agreement": confirm["agreement"],
                "confirm_sample": confirm["n"],
            }
        )
        detail += (
            f" On a {confirm['n']}-sample subset, normalising with batch statistics instead "
            f"gives balanced accuracy {confirm['training']:.1%} against "
            f"{confirm['inference']:.1%} at inference; the two agree on "
            f"{confirm['agreement']:.0%} of the samples"
            + (
                ": the moving statistics are what breaks the predictions."
                if confirmed
                else ", so the gap does not change the answers much."
            )
        )
    title = (
        f"BatchNorm '{first['layer']}': moving statistics are {first['median_gap']:.2g} "
        "standard deviations off the data's"
        + (
            f"; batch statistics lift balanced accuracy from {confirm['inference']:.0%} to "
            f"{confirm['training']:.0%}"
            if confirmed and confirm is not None
            else ""
        )
    )
    return [finding(SPEC, severity, title, detail, evidence, _fixes(ctx))]


def _confirm(ctx: Context) -> dict[str, Any] | None:
    """Balanced accuracy on the bounded sample with BatchNorm at inference vs batch stats."""
    ev = ctx.evidence
    lm = ctx.predictor.lm if ctx.predictor is not None else None
    model = getattr(lm, "keras_model", None)
    xs = ctx.sample_inputs
    n_min = ctx.threshold(SPEC, "min_confirm_samples")
    if model is None or not xs or ev.sample_index.size < n_min or ev.sample_probs is None:
        return None

    def compute() -> dict[str, Any] | None:
        try:
            return _training_mode_run(ctx, model, xs)
        except Exception:  # an unusual graph: the static gap still stands on its own
            return None

    result: dict[str, Any] | None = ctx.cached("model:bn-training-mode", compute)
    return result


def _training_mode_run(ctx: Context, model: Any, xs: list[np.ndarray]) -> dict[str, Any] | None:
    from kerasdoctor.probe import predicted_classes, probability_fn

    ev = ctx.evidence
    assert ev.sample_probs is not None
    bns = [layer for layer in _all_layers(model) if type(layer).__name__ == "BatchNormalization"]
    if not bns:
        return None
    # The sample is sorted by position in the file, which may be sorted by class: shuffle so
    # each batch's statistics describe a mix of classes, as during training.
    order = np.random.default_rng(0).permutation(xs[0].shape[0])
    saved = [(np.array(b.moving_mean), np.array(b.moving_variance)) for b in bns]
    originals = []
    for b in bns:
        originals.append(b.__dict__.get("call"))
        b.call = _batch_stats_call(b.call)
    try:
        outs = []
        for s in range(0, order.size, CONFIRM_BATCH):
            sel = order[s : s + CONFIRM_BATCH]
            batch = [np.asarray(x[sel]) for x in xs]
            if ctx.predictor is not None:
                batch = ctx.predictor.cast(batch)
            out = model(batch if len(batch) > 1 else batch[0], training=False)
            if isinstance(out, (list, tuple)):
                out = out[ctx.predictor.lm.output_index if ctx.predictor else 0]
            outs.append(np.asarray(out).reshape(len(sel), -1).astype(np.float64))
    finally:
        for b, orig, (mean, var) in zip(bns, originals, saved):
            if orig is None:
                del b.call
            else:
                b.call = orig
            b.moving_mean.assign(mean)
            b.moving_variance.assign(var)
    raw = np.empty((order.size, outs[0].shape[1]))
    raw[order] = np.concatenate(outs)
    head = ev.output.head_used
    with np.errstate(all="ignore"):
        probs = probability_fn(head, raw.shape[1])(raw)
    pred_train = predicted_classes(raw, probs)
    pred_inf = predicted_classes(ev.sample_probs, ev.sample_probs)
    y = ev.y_true[ev.sample_index]
    b_train = balanced_accuracy_of(y, pred_train)
    b_inf = balanced_accuracy_of(y, pred_inf)
    return {
        "training": b_train,
        "inference": b_inf,
        "gain": b_train - b_inf,
        "agreement": float(np.mean(pred_train == pred_inf)),
        "n": int(y.size),
    }


def _batch_stats_call(call: Any) -> Any:
    """The layer's own call, always in training mode (batch statistics)."""

    def forced(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        return call(inputs, training=True, mask=mask)

    return forced


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


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
