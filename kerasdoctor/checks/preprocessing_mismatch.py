"""preprocessing-mismatch: the data is not preprocessed the way the model expects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks._data import (
    JudgedInput,
    fmt_list,
    prediction_symptoms,
    symptom_ids,
    value_inputs,
)
from kerasdoctor.checks.base import (
    ALL_TASKS,
    OUTPUT,
    PREDICTIONS,
    CheckSpec,
    Context,
    Threshold,
    finding,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

# Tolerance on "the data lies in [0, 1]": float32 rounding of a division by 255.
RANGE_EPS = 1e-3
# The sweep's transforms in words; {} is where the input's name goes.
DESCRIBE = {
    "x255": "multiplying {} by 255",
    "/255": "dividing {} by 255",
    "[0,1]->[-1,1]": "mapping {} from [0, 1] to [-1, 1]",
    "[0,255]->[-1,1]": "mapping {} from [0, 255] to [-1, 1]",
    "[-1,1]->[0,1]": "mapping {} from [-1, 1] to [0, 1]",
    "[-1,1]->[0,255]": "mapping {} from [-1, 1] to [0, 255]",
    "standardise": "standardising each feature of {}",
    "bgr<->rgb": "reversing the channel order of {} (BGR <-> RGB)",
    "caffe": "ImageNet 'caffe' preprocessing of {} (RGB->BGR, minus the ImageNet mean)",
    "undo-normalization": "undoing the standardisation of {} with the model's own "
    "Normalization statistics (the layer normalises it again)",
    "undo-rescaling": "undoing the rescaling already applied to {} (the model's Rescaling "
    "layer rescales it again)",
    "combined": "transforming {} together",
}

SPEC = CheckSpec(
    id="preprocessing-mismatch",
    kind=Kind.CAUSE,
    summary=(
        "The data is not preprocessed the way the model expects (double or missing "
        "rescaling, a Normalization layer adapted to other data)."
    ),
    measures=(
        "Three measurements. (1) A Rescaling layer at an input implies the range its training "
        "data had: 1/|scale| when |scale| < 1 (Rescaling(1/255) expects 0-255), else 1. The "
        "data's range (max - min) divided by that is flagged when <= 1/max_range_factor or "
        ">= max_range_factor (data already in [0, 1] fed to Rescaling(1/255): 1/255). (2) A "
        "Normalization layer outputs (x - mean) / std with its adapted statistics; on the data "
        "it was adapted on that has mean 0 and std 1 per feature. Per feature the data's "
        "mean and std are pushed through the layer; flagged when the median std is off by "
        "max_range_factor either way or the median |mean| is >= max_shift (e.g. data already "
        "standardised fed to a layer adapted on raw data). (3) A preprocessing sweep on the "
        "bounded class-stratified sample: the model is re-run with one input at a time "
        "transformed by the usual preprocessing steps that the data's range makes plausible "
        "(x255 and [0,1]->[-1,1] for data in [0,1]; /255 and [0,255]->[-1,1] for 0-255 data; "
        "[-1,1]->[0,1] and [-1,1]->[0,255] for data in [-1,1]; per-feature standardisation "
        "for data an order of magnitude off unit scale), plus the best transforms of several "
        "inputs together. A transform restores the model when its balanced accuracy beats "
        "the data as given by at least min_gain and by noise_z times the sampling noise of "
        "the difference (sqrt(2) x 0.5 sqrt(sum 1/n_k) / K, the largest standard error of a "
        "balanced accuracy on the sample's class sizes), and removes at least "
        "min_error_removed of the balanced error. A restoring transform is an error; "
        "a static disagreement (1, 2) is a warning when the predictions show a symptom (an "
        "error when the output is constant), info otherwise."
    ),
    fix=(
        "Prepare the data exactly as in training: apply the transform the sweep found (or "
        "remove your own rescaling when the model has a Rescaling layer), and feed raw data "
        "to a model that carries its own Normalization layer."
    ),
    thresholds={
        "max_range_factor": Threshold(
            10.0,
            "an order of magnitude between the range the layer was built for and the data's: "
            "the layers after it see values 10x smaller or larger than any it was trained on",
        ),
        "max_shift": Threshold(
            3.0,
            "the data's features sit, on median, 3 training standard deviations or more from "
            "the training mean: outside most of the data the layer was adapted on (at most "
            "1/9 of any distribution lies beyond 3 std, Chebyshev)",
        ),
        "min_gain": Threshold(
            0.10,
            "ten points of balanced accuracy: smaller gains are within what benign "
            "preprocessing details (resize method, JPEG decoder) move, not a wrong scale",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors: several transforms are tried, so a 2-sigma bar would let "
            "one of them pass by chance",
        ),
        "min_error_removed": Threshold(
            0.5,
            "the transform must remove at least half of the balanced error (1 - balanced "
            "accuracy): undoing a wrong preprocessing gives back the trained model, while any "
            "perturbation of a broken model (e.g. one trained on unscaled data) moves its "
            "predictions around and can gain a few points by chance",
        ),
    },
    fires_on=("data_double_rescale",),
    repair=(
        "prepend the restoring transform (Rescaling, Normalization with fixed values, or a "
        "fixed 1x1 convolution that swaps channels) so the model takes the data as it comes"
    ),
    order=160,
    tasks=ALL_TASKS,
    task_order=10,
    needs=frozenset({"symptoms", "experiments"}),
    explains=frozenset(
        {
            OUTPUT,
            PREDICTIONS,
            "batchnorm-statistics",
            "dead-units",
            "decision-threshold",
            "input-scale",
            "input-scale-mismatch",
        }
    ),
    tier=2,
)


# ------------------------------------------------------------------ static comparisons


def _range(ji: JudgedInput) -> tuple[float, float]:
    m = ji.stats.moments
    finite = np.isfinite(m.min) & np.isfinite(m.max)
    if not finite.any():
        return float("nan"), float("nan")
    return float(m.min[finite].min()), float(m.max[finite].max())


def rescaling_mismatch(ji: JudgedInput, factor: float) -> dict[str, Any] | None:
    """A Rescaling layer whose implied input range disagrees with the data's."""
    norm = ji.normalizer
    if norm is None or norm.class_name != "Rescaling":
        return None
    scale = np.abs(np.asarray(norm.params.get("scale", 1.0), dtype=np.float64).reshape(-1))
    if scale.size == 0 or not np.all(np.isfinite(scale)) or float(np.median(scale)) == 0:
        return None
    s = float(np.median(scale))
    expected = 1.0 / s if s < 1 else 1.0
    lo, hi = _range(ji)
    data_range = hi - lo
    if not np.isfinite(data_range) or data_range <= 0:
        return None
    ratio = data_range / expected
    if 1.0 / factor < ratio < factor:
        return None
    return {
        "input": ji.name,
        "kind": "rescaling",
        "layer": norm.layer,
        "scale": s,
        "offset": norm.params.get("offset"),
        "expected_range": expected,
        "data_min": lo,
        "data_max": hi,
        "range_ratio": ratio,
    }


def normalization_mismatch(
    ji: JudgedInput, factor: float, max_shift: float
) -> dict[str, Any] | None:
    """A Normalization layer whose adapted statistics disagree with the data's."""
    norm = ji.normalizer
    if norm is None or norm.class_name != "Normalization":
        return None
    p = norm.params
    if "mean" not in p or "variance" not in p or p.get("invert"):
        return None
    m = ji.stats.moments
    mu = np.asarray(p["mean"], dtype=np.float64).reshape(-1)
    var = np.asarray(p["variance"], dtype=np.float64).reshape(-1)
    if mu.size not in (1, m.n_features) or var.size not in (1, m.n_features):
        return None
    sd = np.sqrt(np.maximum(var, 1e-12))
    valid = (m.count > 0) & np.isfinite(m.mean)
    if not valid.any():
        return None
    mu_f = np.broadcast_to(mu, m.mean.shape)[valid]
    sd_f = np.broadcast_to(sd, m.mean.shape)[valid]
    post_mean = (m.mean[valid] - mu_f) / sd_f
    post_std = m.std[valid] / sd_f
    med_shift = float(np.median(np.abs(post_mean)))
    med_std = float(np.median(post_std))
    if med_std > 0 and 1.0 / factor < med_std < factor and med_shift < max_shift:
        return None
    return {
        "input": ji.name,
        "kind": "normalization",
        "layer": norm.layer,
        "adapted_mean": [float(v) for v in mu[:16]],
        "adapted_std": [float(v) for v in sd[:16]],
        "data_mean": [float(v) for v in m.mean[:16]],
        "data_std": [float(v) for v in m.std[:16]],
        "median_abs_mean_after_layer": med_shift,
        "median_std_after_layer": med_std,
    }


# ------------------------------------------------------------------ the sweep


def _transforms(ji: JudgedInput) -> list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]]:
    """(name, code with X for the array, function) of the transforms the data range allows."""
    lo, hi = _range(ji)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return []
    out: list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]] = []
    in01 = lo >= -RANGE_EPS and hi <= 1 + RANGE_EPS
    in255 = lo >= -RANGE_EPS and 1 + RANGE_EPS < hi <= 255 + RANGE_EPS
    in_pm1 = -1 - RANGE_EPS <= lo < -RANGE_EPS and hi <= 1 + RANGE_EPS
    if in01:
        out.append(("x255", "X * 255.0", lambda a: a * 255.0))
        out.append(("[0,1]->[-1,1]", "X * 2.0 - 1.0", lambda a: a * 2.0 - 1.0))
    if in255:
        out.append(("/255", "X / 255.0", lambda a: a / 255.0))
        out.append(("[0,255]->[-1,1]", "X / 127.5 - 1.0", lambda a: a / 127.5 - 1.0))
    if in_pm1:
        out.append(("[-1,1]->[0,1]", "(X + 1.0) / 2.0", lambda a: (a + 1.0) / 2.0))
        out.append(("[-1,1]->[0,255]", "(X + 1.0) * 127.5", lambda a: (a + 1.0) * 127.5))
    if in255:
        caffe_mean = np.array([103.939, 116.779, 123.68])
        if ji.stats.shape and ji.stats.shape[-1] == 3 and len(ji.stats.shape) == 3:
            out.append(
                (
                    "caffe",
                    "X[..., ::-1] - np.array([103.939, 116.779, 123.68])",
                    lambda a: a[..., ::-1] - caffe_mean,
                )
            )
    if ji.stats.shape and ji.stats.shape[-1] == 3 and len(ji.stats.shape) == 3:
        out.append(("bgr<->rgb", "X[..., ::-1]", lambda a: a[..., ::-1]))
    out.extend(_undo_model_layer(ji))
    rms = ji.stats.moments.rms()
    if np.isfinite(rms) and (rms >= 10.0 or rms <= 0.1):  # an order of magnitude off unit
        m = ji.stats.moments
        mean = np.where(np.isfinite(m.mean), m.mean, 0.0)
        std = np.where(np.isfinite(m.std) & (m.std > 0), m.std, 1.0)
        means, stds = fmt_list(mean), fmt_list(std)
        code = (
            f"(X - np.array({means})) / np.array({stds})"
            if means is not None and stds is not None
            else "(X - X.mean(axis=AXES)) / X.std(axis=AXES)".replace(
                "AXES", "tuple(range(X.ndim - 1))"
            )
        )
        out.append(("standardise", code, lambda a: (a - mean) / std))
    return out


def _undo_model_layer(ji: JudgedInput) -> list[tuple[str, str, Callable[[np.ndarray], np.ndarray]]]:
    """Transforms informed by the model: the inverse of its own preprocessing layer, for data
    that was already put through the same preprocessing before it reached the model."""
    norm = ji.normalizer
    if norm is None:
        return []
    p = norm.params
    if (
        norm.class_name == "Normalization"
        and "mean" in p
        and "variance" in p
        and not p.get("invert")
    ):
        mu = np.asarray(p["mean"], np.float64).reshape(-1)
        sd = np.sqrt(np.maximum(np.asarray(p["variance"], np.float64).reshape(-1), 1e-12))
        if mu.size not in (1, ji.stats.moments.n_features):
            return []
        mus, sds = fmt_list(mu), fmt_list(sd)
        code = (
            f"X * np.array({sds}) + np.array({mus})"
            if mus and sds
            else f"X * np.sqrt(model.get_layer({norm.layer!r}).variance) + "
            f"model.get_layer({norm.layer!r}).mean"
        )
        return [("undo-normalization", code, lambda a: a * sd + mu)]
    if norm.class_name == "Rescaling":
        scale = np.asarray(p.get("scale", 1.0), np.float64).reshape(-1)
        offset = np.asarray(p.get("offset", 0.0) or 0.0, np.float64).reshape(-1)
        if scale.size != 1 or offset.size != 1 or float(scale[0]) == 0.0:
            return []
        sc, off = float(scale[0]), float(offset[0])
        return [("undo-rescaling", f"(X - {off:.6g}) / {sc:.6g}", lambda a: (a - off) / sc)]
    return []


def sweep(ctx: Context) -> dict[str, Any] | None:
    """Re-run the model on the bounded sample under each plausible transform (cached)."""
    ev = ctx.evidence
    exps, xs = ctx.experiments, ctx.sample_inputs
    if exps is None or xs is None or not exps.available:
        return None
    y = exps.y
    support = exps.support
    specs = ctx.input_dtypes
    bal0 = exps.before
    trials: list[dict[str, Any]] = []
    best_per_input: dict[int, tuple[float, Callable[[np.ndarray], np.ndarray], str]] = {}
    for ji in value_inputs(ctx):
        if ji.index < len(specs):
            want = specs[ji.index]
            try:
                if np.dtype(want).kind in "biu":
                    continue  # the model takes integers: a scaled float would be truncated
            except TypeError:
                pass
        for name, code, fn in _transforms(ji):
            desc = DESCRIBE[name].format(f"input '{ji.name}'")
            res = exps.inputs(f"preprocess:{ji.name}:{name}", desc, _applying({ji.index: fn}))
            if not res.ok or res.after is None:
                continue
            bal = res.after
            v = _var(ji.name, len(xs) > 1)
            trials.append(
                {
                    "input": ji.name,
                    "inputs": [ji.name],
                    "transform": name,
                    "description": desc,
                    "code": f"{v} = " + code.replace("X", v),
                    "balanced_accuracy": bal,
                    "predicted_counts": list(res.predicted_counts),
                    "experiment": res.to_dict(),
                }
            )
            best = best_per_input.get(ji.index)
            if bal > bal0 and (best is None or bal > best[0]):
                best_per_input[ji.index] = (bal, fn, trials[-1]["code"])
    if len(best_per_input) >= 2:  # several inputs prepared wrongly at once
        names = [ev.inputs[i].name for i in best_per_input]
        res = exps.inputs(
            "preprocess:combined:" + "+".join(names),
            "transforming inputs " + ", ".join(names) + " together",
            _applying({i: fn for i, (_, fn, _) in best_per_input.items()}),
        )
        bal = res.after if res.ok and res.after is not None else bal0
        trials.append(
            {
                "input": "+".join(names),
                "inputs": names,
                "transform": "combined",
                "description": DESCRIBE["combined"].format(
                    "inputs " + ", ".join(f"'{n}'" for n in names)
                ),
                "code": "\n".join(c for _, _, c in best_per_input.values()),
                "balanced_accuracy": bal,
                "predicted_counts": list(res.predicted_counts),
                "experiment": res.to_dict(),
            }
        )
    noise = exps.noise
    return {
        "sample_size": int(y.size),
        "sample_label_counts": support.tolist(),
        "baseline_balanced_accuracy": bal0,
        "noise": noise,
        "trials": trials,
    }


def _applying(
    fns: dict[int, Callable[[np.ndarray], np.ndarray]],
) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A transform of the sample's inputs that applies fns[i] to input i (as float32)."""

    def apply(xs: list[np.ndarray]) -> list[np.ndarray]:
        out = list(xs)
        for i, fn in fns.items():
            out[i] = np.asarray(fn(np.asarray(xs[i], dtype=np.float32)), np.float32)
        return out

    return apply


def _var(name: str, multi: bool) -> str:
    if not multi:
        return "x"
    s = "".join(c if c.isalnum() else "_" for c in name).strip("_") or "x"
    return s if not s[0].isdigit() else f"x_{s}"


def restoring_transform(
    result: dict[str, Any] | None, min_gain: float, noise_z: float, min_error_removed: float
) -> dict[str, Any] | None:
    """The sweep's best trial when it restores the model, else None.

    "Restores": a gain above both min_gain and the sampling noise, that also gives back most
    of a working model; a transform that only nudges a broken model (e.g. one trained on
    unscaled data) is no evidence about how its training data was prepared.
    """
    if result is None or not result["trials"]:
        return None
    best = max(result["trials"], key=lambda t: t["balanced_accuracy"])
    b0 = float(result["baseline_balanced_accuracy"])
    gain = float(best["balanced_accuracy"]) - b0
    removed = gain / (1.0 - b0) if b0 < 1.0 else 0.0
    bar = max(min_gain, noise_z * float(result["noise"]))
    if gain >= bar and removed >= min_error_removed:
        return dict(best, gain=gain, required_gain=bar, error_removed=removed)
    return None


# ------------------------------------------------------------------ the check


def run(ctx: Context) -> list[Finding]:
    factor = ctx.threshold(SPEC, "max_range_factor")
    max_shift = ctx.threshold(SPEC, "max_shift")
    static: list[dict[str, Any]] = []
    for ji in value_inputs(ctx):
        for test in (
            rescaling_mismatch(ji, factor),
            normalization_mismatch(ji, factor, max_shift),
        ):
            if test is not None:
                static.append(test)
    # the sweep is an experiment: it runs when the predictions show a symptom, or when a
    # static comparison already suspects the preprocessing (a healthy model pays nothing)
    result = sweep(ctx) if (ctx.symptoms or static) else None
    restoring = restoring_transform(
        result,
        ctx.threshold(SPEC, "min_gain"),
        ctx.threshold(SPEC, "noise_z"),
        ctx.threshold(SPEC, "min_error_removed"),
    )
    if not static and restoring is None:
        return []
    symptoms = symptom_ids(ctx)
    evidence: dict[str, Any] = {"static": static, "symptoms": symptoms}
    if result is not None:
        evidence["sweep"] = result
    fixes: list[Fix] = []
    parts: list[str] = []
    if restoring is not None and result is not None:
        severity = Severity.ERROR
        evidence["restoring_transform"] = restoring
        evidence["experiment"] = restoring["experiment"]
        evidence["cured"] = True
        b0 = float(result["baseline_balanced_accuracy"])
        b1 = float(restoring["balanced_accuracy"])
        title = (
            "The data looks prepared differently than in training: "
            f"{restoring['description']} raises balanced accuracy from {b0:.1%} to {b1:.1%}"
        )
        parts.append(
            f"Re-run on a class-stratified sample of {result['sample_size']} rows, the "
            f"model's balanced accuracy goes from {b0:.1%} to {b1:.1%} after "
            f"{restoring['description']} (a gain of {restoring['gain']:.1%}; sampling noise "
            f"and chance would explain at most {restoring['required_gain']:.1%}). The model "
            "works; the data was not prepared the way its training data was."
        )
        fixes.append(repair_fix(ctx, SPEC))
        fixes.append(
            Fix(
                "Apply this preprocessing before predicting (and check it is exactly what "
                "training used)",
                code=restoring["code"],
            )
        )
    else:
        if "constant-output" in symptoms:  # the mismatch leaves the output no signal at all
            severity = Severity.ERROR
        else:
            severity = Severity.WARNING if symptoms else Severity.INFO
        title = _static_title(static[0])
    covered = set(restoring["inputs"]) if restoring is not None else set()
    for st in static:
        parts.append(_static_detail(st))
        if st["input"] not in covered:  # the sweep's transform already says what to do
            fixes.append(_static_fix(st))
    if restoring is None:
        if symptoms:
            found = prediction_symptoms(ctx)
            parts.append(
                "The predictions show it: " + "; ".join(found[s].title for s in symptoms) + "."
            )
        else:
            parts.append("The predictions show no collapse, so this may be harmless here.")
    return [finding(SPEC, severity, title, " ".join(parts), evidence, fixes)]


def _static_title(s: dict[str, Any]) -> str:
    if s["kind"] == "rescaling":
        return (
            f"Input '{s['input']}' meets Rescaling(scale={s['scale']:.4g}), built for data "
            f"spanning ~{s['expected_range']:.4g}, but the data spans "
            f"{s['data_min']:.3g} to {s['data_max']:.3g}"
        )
    return (
        f"Input '{s['input']}' meets a Normalization layer adapted on other data: after it "
        f"the data has median |mean| {s['median_abs_mean_after_layer']:.3g} and median std "
        f"{s['median_std_after_layer']:.3g} instead of 0 and 1"
    )


def _static_detail(s: dict[str, Any]) -> str:
    if s["kind"] == "rescaling":
        after = s["range_ratio"]
        return (
            f"Input '{s['input']}': layer '{s['layer']}' multiplies by {s['scale']:.4g}, so it "
            f"was built for inputs spanning about {s['expected_range']:.4g}; this data spans "
            f"{s['data_min']:.3g} to {s['data_max']:.3g}, {after:.3g} times that "
            + (
                "(already rescaled: the model sees it scaled twice)."
                if after < 1
                else "(the model sees values far larger than in training)."
            )
        )
    return (
        f"Input '{s['input']}': layer '{s['layer']}' subtracts the adapted mean "
        f"{s['adapted_mean'][:4]} and divides by the adapted std {s['adapted_std'][:4]}; this "
        f"data has mean {[round(v, 4) for v in s['data_mean'][:4]]} and std "
        f"{[round(v, 4) for v in s['data_std'][:4]]}, so after the layer it is centred "
        f"{s['median_abs_mean_after_layer']:.3g} std away with a spread of "
        f"{s['median_std_after_layer']:.3g} instead of 0 and 1 (e.g. the data was already "
        "standardised, or the layer was adapted on other data)."
    )


def _static_fix(s: dict[str, Any]) -> Fix:
    v = "x"
    if s["kind"] == "rescaling":
        if s["range_ratio"] < 1:
            return Fix(
                f"The model rescales input '{s['input']}' itself: feed it the raw data "
                "(remove your own rescaling)",
                code=f"{v} = {v} * {1.0 / s['scale']:.6g}  # undo the rescaling done before "
                "the model: back to the range it expects",
            )
        return Fix(
            f"Input '{s['input']}' is larger than the range the model's Rescaling layer was "
            "built for: bring it to that range (as in training)",
            code=f"{v} = {v} * ({s['expected_range']:.6g} / {s['data_max']:.6g})",
        )
    return Fix(
        f"Feed input '{s['input']}' as it was when the Normalization layer was adapted "
        "(usually raw, unstandardised); or re-adapt the layer on the training data and retrain",
        code=(
            "# the model normalises by itself: pass the raw features\n"
            "model.predict(x_raw)\n"
            "# or: model.get_layer('" + s["layer"] + "').adapt(x_train); retrain"
        ),
    )
