"""over-regularization: a weight penalty so strong that the kernels collapse toward zero and
the output is the label prior for every input."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    OUTPUT,
    PREDICTIONS,
    CheckSpec,
    Context,
    Threshold,
    finding,
    prediction_symptoms,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ProbeResult
    from kerasdoctor.model_facts import LayerInfo, RegularizerInfo

# E|w| / RMS(w) of a zero-mean normal kernel: turns an L1 penalty into nats at a given RMS.
_L1_PER_RMS = math.sqrt(2.0 / math.pi)
# What the suggested penalty may charge at the initialisation scale, as a share of the
# label entropy: two orders of magnitude below the collapse bar, like the usual l2=1e-4.
_SUGGESTED_SHARE = 0.01

SPEC = CheckSpec(
    id="over-regularization",
    kind=Kind.CAUSE,
    summary=(
        "A weight penalty so strong that the kernels collapse toward zero and the output is "
        "the label prior for every input."
    ),
    measures=(
        "Only when the predictions show a symptom. For every kernel with an L1/L2 penalty "
        "(kernel_regularizer) the model file gives the factors, the kernel's RMS and its "
        "fan-in. The initialisation scale is sqrt(1/fan_in) (LeCun; He is 1.4x it, Glorot "
        "within 1.6x unless a layer widens its input many times), so a kernel at that scale "
        "holds sum w^2 ~ units and the penalty would charge "
        "l2 * units + l1 * units * sqrt(fan_in) * sqrt(2/pi) nats to keep it there. Fitting "
        "the labels can win at most the entropy H of the label prior (from predicting the "
        "prior to a perfect fit); penalty_share = that charge / H. A layer has collapsed "
        "when penalty_share >= min_penalty_share (dropping its weights is cheaper than using "
        "them) and its RMS <= max_weight_ratio x the initialisation scale (they were "
        "dropped). With the kernels gone each logit is its unpenalised bias, which learns "
        "the log prior: the output must barely move (the largest per-class standard "
        "deviation of the probabilities over the data <= max_output_std) and its mean must "
        "sit near the label prior (total variation distance <= max_prior_distance). Then a "
        "class-balanced linear probe on the raw inputs (cross-validated on the bounded "
        "sample) asks whether there was signal to learn: if it finds some, or cannot run, "
        "the penalty is the error; if it is at chance, the data had nothing to learn "
        "(no-signal) and the penalty is only info. Dropout is listed as context: it is off "
        "at inference and does not shrink the weights, so it is not judged."
    ),
    fix=(
        "Lower the penalty by orders of magnitude (l2=1e-4 is a usual value; keep l2 x units "
        "far below the label entropy) and retrain from fresh weights. Class weights would not "
        "help: they rescale the data term, which the penalty still outweighs, so the weights "
        "stay at zero and the biases learn the re-weighted prior, another constant answer."
    ),
    thresholds={
        "min_penalty_share": Threshold(
            1.0,
            "keeping one layer at its initialisation scale costs at least the most that "
            "fitting the labels can win (their entropy): dropping the weights is then the "
            "cheaper optimum; a usual l2=1e-4 on 64 units charges 0.0064 nats, under 1% of "
            "even a balanced binary task's 0.69",
        ),
        "max_weight_ratio": Threshold(
            0.1,
            "an order of magnitude below the initialisation scale, beyond the spread between "
            "initialisers; trained kernels, penalised or not, stay near or above it (an "
            "l2(0.1) that still trains leaves 0.2-0.3x; l2(0.3) and up collapsed to 0.01x)",
        ),
        "max_output_std": Threshold(
            0.01,
            "probabilities that move by under a point (one standard deviation) give every row "
            "the same answer, the constant-output scale; a collapsed model moves them by the "
            "product of its shrunk layers (~1e-5), while a weak but working one still moves "
            "them by several points (0.07 for an l2(0.1) binary model with AUC 0.97)",
        ),
        "max_prior_distance": Threshold(
            0.1,
            "with the kernels gone the unpenalised biases walk from the uniform output to the "
            "log prior; a tenth of the probability mass leaves room for a training that "
            "stopped on the way, while an output stuck elsewhere is held by something else",
        ),
    },
    order=185,
    # the penalty removes the input from the output (OUTPUT), so the predictions are the
    # prior (PREDICTIONS); with the kernels at ~0 each ReLU unit's pre-activation is its
    # bias, the same for every sample, so units with a negative bias are dead everywhere
    explains=frozenset({OUTPUT, PREDICTIONS, "dead-units"}),
    # a measured collapse forces the output to the prior, as an untrained model forces it
    tier=1,
    needs=frozenset({"symptoms", "experiments"}),
    fires_on=("scn_l2_strong",),
)


def run(ctx: Context) -> list[Finding]:
    symptoms = sorted(prediction_symptoms(ctx))
    if not symptoms:
        return []  # a strongly regularised model that works is fine
    ev = ctx.evidence
    counts = np.asarray(ev.label_counts, np.float64)
    if counts.sum() <= 0 or int((counts > 0).sum()) < 2:
        return []
    prior = counts / counts.sum()
    present = prior[prior > 0]
    entropy = float(-(present * np.log(present)).sum())
    layers = [
        _layer_row(r, _layer_info(ctx, r.layer), entropy)
        for r in ctx.facts.regularizers
        if _judged(r)
    ]
    if not layers:
        return []
    min_share = ctx.threshold(SPEC, "min_penalty_share")
    max_ratio = ctx.threshold(SPEC, "max_weight_ratio")
    strong = [
        row
        for row in layers
        if row["penalty_share"] is not None and row["penalty_share"] >= min_share
    ]
    collapsed = [row for row in strong if row["weight_ratio"] <= max_ratio]
    if not collapsed:
        return []
    output = _output(ctx, prior)
    if output is None:
        return []
    std, distance, mean_output, label_prior = output
    if std > ctx.threshold(SPEC, "max_output_std"):
        return []
    if distance > ctx.threshold(SPEC, "max_prior_distance"):
        return []
    probe = _input_probe(ctx)
    no_signal = probe is not None and probe.ok and probe.at_chance
    severity = Severity.INFO if no_signal else Severity.ERROR
    worst = min(collapsed, key=lambda row: row["weight_ratio"])
    evidence: dict[str, Any] = {
        "layer": worst["layer"],
        "l2": worst["l2"],
        "l1": worst["l1"],
        "weight_rms": worst["weight_rms"],
        "init_scale": worst["init_scale"],
        "weight_ratio": worst["weight_ratio"],
        "penalty_share": worst["penalty_share"],
        "collapsed_layers": [row["layer"] for row in collapsed],
        "strong_penalty_layers": [row["layer"] for row in strong],
        "layers": layers,
        "output_std": std,
        "prior_distance": distance,
        "mean_output": mean_output,
        "label_prior": label_prior,
        "output_vs_prior": [
            {"class": k, "mean_output": m, "prior": q}
            for k, (m, q) in enumerate(zip(mean_output, label_prior))
        ],
        "label_entropy_nats": entropy,
        "dropout": [
            {"layer": r.layer, "rate": r.rate}
            for r in ctx.facts.regularizers
            if r.kind == "dropout"
        ],
        "other_penalties": [
            {"layer": r.layer, "kind": r.kind, "l1": r.l1, "l2": r.l2}
            for r in ctx.facts.regularizers
            if r.kind in ("bias", "activity")
        ],
        "symptoms": symptoms,
        "input_probe": probe.to_dict() if probe is not None else None,
    }
    title = (
        f"Weight penalty too strong: {_penalty_text(worst)} shrank '{worst['layer']}' to "
        f"{worst['weight_ratio']:.1%} of its initialisation scale; the output is the label "
        "prior for every input"
    )
    if no_signal:
        title = (
            f"Strong weight penalty ({_penalty_text(worst)} on '{worst['layer']}'), but the "
            "inputs carry no signal to learn: the penalty is not the failure"
        )
    detail = _detail(ctx, collapsed, evidence, probe, no_signal)
    fixes = [] if no_signal else _fixes(strong, entropy)
    return [finding(SPEC, severity, title, detail, evidence, fixes)]


def _judged(r: RegularizerInfo) -> bool:
    """A kernel penalty whose weights and fan-in the model file gave, all finite."""
    return (
        r.kind == "kernel"
        and r.weight_rms is not None
        and math.isfinite(r.weight_rms)
        and bool(r.fan_in)
        and (r.l1 > 0 or r.l2 > 0)
    )


def _layer_info(ctx: Context, name: str) -> LayerInfo | None:
    return next((li for li in ctx.facts.layers if li.name == name), None)


def _units(r: RegularizerInfo, info: LayerInfo | None) -> int | None:
    """The kernel's output units: the layer's `units`/`filters`, else from its parameters."""
    if info is None:
        return None
    if info.units:
        return int(info.units)
    fan_in = int(r.fan_in or 0)
    if fan_in <= 0:
        return None
    # n_params = fan_in * units (+ units with a bias): the floor is units either way while
    # units < fan_in, the usual shape
    units = int(info.n_params // fan_in)
    return units if units > 0 else None


def _penalty_at_init(l1: float, l2: float, units: int, fan_in: int) -> float:
    """Nats the penalty charges for a kernel at the initialisation scale sqrt(1/fan_in)."""
    # sum w^2 = fan_in * units / fan_in = units; sum |w| = units * sqrt(fan_in) * E|w|/RMS
    return l2 * units + l1 * units * math.sqrt(fan_in) * _L1_PER_RMS


def _layer_row(r: RegularizerInfo, info: LayerInfo | None, entropy: float) -> dict[str, Any]:
    fan_in = int(r.fan_in or 0)
    init = 1.0 / math.sqrt(fan_in)
    rms = float(r.weight_rms or 0.0)
    units = _units(r, info)
    penalty = _penalty_at_init(r.l1, r.l2, units, fan_in) if units else None
    return {
        "layer": r.layer,
        "class_name": info.class_name if info is not None else None,
        "activation": info.activation if info is not None else None,
        "units": units,
        "fan_in": fan_in,
        "l1": r.l1,
        "l2": r.l2,
        "weight_rms": rms,
        "init_scale": init,
        "weight_ratio": rms / init,
        "penalty_at_init_nats": penalty,
        "penalty_share": penalty / entropy if penalty is not None and entropy > 0 else None,
    }


def _output(
    ctx: Context, prior: np.ndarray
) -> tuple[float, float, list[float], list[float]] | None:
    """Largest per-class std of the probabilities, and the total variation distance between
    their mean and the label prior (a 1-unit sigmoid head is P(class 1))."""
    probs = ctx.evidence.output.probs
    seen = probs.count > 0
    if not seen.any():
        return None
    mean = np.asarray(probs.mean, np.float64)
    std = float(np.nanmax(np.sqrt(np.where(seen, probs.var, 0.0))))
    if mean.size == prior.size:
        full = mean
    elif mean.size == 1 and prior.size == 2:
        full = np.array([1.0 - mean[0], mean[0]])
    else:
        return None  # the output does not map onto the classes: output-units-mismatch's case
    distance = float(0.5 * np.abs(full - prior).sum())
    if not math.isfinite(std) or not math.isfinite(distance):
        return None
    return std, distance, full.tolist(), prior.tolist()


def _input_probe(ctx: Context) -> ProbeResult | None:
    """Was there signal to learn? A linear probe on the raw inputs (shared with no-signal)."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    return exps.input_probe()


def _penalty_text(row: dict[str, Any]) -> str:
    """The penalty as the user wrote it: l2(1.0), l1(0.01), l1_l2(l1=..., l2=...)."""
    l1, l2 = repr(float(row["l1"])), repr(float(row["l2"]))
    if row["l1"] and row["l2"]:
        return f"l1_l2(l1={l1}, l2={l2})"
    return f"l1({l1})" if row["l1"] else f"l2({l2})"


def _detail(
    ctx: Context,
    collapsed: list[dict[str, Any]],
    evidence: dict[str, Any],
    probe: ProbeResult | None,
    no_signal: bool,
) -> str:
    shown = "; ".join(
        f"'{row['layer']}' {_penalty_text(row)}: kernel RMS {row['weight_rms']:.2g} against "
        f"{row['init_scale']:.2g} at initialisation (sqrt(1/{row['fan_in']})), "
        f"{row['weight_ratio']:.1%}"
        for row in collapsed[:4]
    )
    more = f" and {len(collapsed) - 4} more layer(s)" if len(collapsed) > 4 else ""
    worst = min(collapsed, key=lambda row: row["weight_ratio"])
    pairs = ", ".join(
        f"{ctx.cls(k)} {m:.2f} vs {p:.2f}"
        for k, (m, p) in enumerate(zip(evidence["mean_output"], evidence["label_prior"]))
    )
    parts = [
        f"The penalised kernels have collapsed toward zero: {shown}{more}.",
        f"Keeping '{worst['layer']}' at its initialisation scale would cost "
        f"{worst['penalty_at_init_nats']:.3g} nats of penalty, {worst['penalty_share']:.3g}x "
        f"the {evidence['label_entropy_nats']:.3g} nats that fitting the labels can win at "
        "most, so training dropped the weights and only the unpenalised biases learnt: the "
        "label prior.",
        f"The output barely follows the input (largest per-class standard deviation "
        f"{evidence['output_std']:.2g}) and its mean is the prior (mean probability vs label "
        f"share: {pairs}; distance {evidence['prior_distance']:.2g}).",
    ]
    if probe is not None and probe.ok and probe.balanced_accuracy is not None:
        ba = float(probe.balanced_accuracy)
        bar = probe.chance + probe.bound
        if no_signal:
            parts.append(
                f"But a linear probe on the raw inputs is at chance too ({ba:.1%} balanced "
                f"accuracy on {probe.rows} rows, signal bar {bar:.1%}): without the penalty "
                "the model would have nothing to learn either, so the data, not the penalty, "
                "keeps it at the prior (see no-signal)."
            )
        else:
            parts.append(
                f"The inputs do carry the labels: a class-balanced linear probe on them "
                f"reaches {ba:.1%} balanced accuracy on {probe.rows} rows (chance "
                f"{probe.chance:.1%}), signal the penalty kept the model from learning."
            )
    elif probe is not None:
        parts.append(f"(A probe on the raw inputs could not run: {probe.error}.)")
    if evidence["dropout"]:
        rates = ", ".join(f"'{d['layer']}' {d['rate']:g}" for d in evidence["dropout"])
        parts.append(f"Dropout ({rates}) is off at inference and shrinks no weight: context only.")
    if not no_signal:
        parts.append(
            "Class weights would not help: the penalty would still outweigh the data term and "
            "the biases would learn the re-weighted prior, another constant answer."
        )
    return " ".join(parts)


def _suggested(row: dict[str, Any], entropy: float) -> float:
    """The largest of 1e-4, 1e-5, ... whose charge at the initialisation scale is at most
    _SUGGESTED_SHARE of the label entropy and below the current factor."""
    current = max(row["l2"], row["l1"])
    units, fan_in = row["units"] or 1, row["fan_in"]
    value = 1e-4
    for _ in range(8):
        l1, l2 = (value, 0.0) if row["l1"] and not row["l2"] else (0.0, value)
        if value < current and _penalty_at_init(l1, l2, units, fan_in) <= (
            _SUGGESTED_SHARE * entropy
        ):
            break
        value /= 10
    return value


def _layer_code(row: dict[str, Any], entropy: float) -> str:
    value = _suggested(row, entropy)
    kind = "l1" if row["l1"] and not row["l2"] else "l2"
    reg = f"keras.regularizers.{kind}({value!r})"
    was = f"  # '{row['layer']}': was {_penalty_text(row)}"
    if row["class_name"] == "Dense" and row["units"]:
        act = (
            f", activation='{row['activation']}'"
            if row["activation"] not in (None, "linear")
            else ""
        )
        return f"keras.layers.Dense({row['units']}{act}, kernel_regularizer={reg}){was}"
    name = row["class_name"] or "YourLayer"
    return f"keras.layers.{name}(..., kernel_regularizer={reg}){was}"


def _fixes(strong: list[dict[str, Any]], entropy: float) -> list[Fix]:
    """Lower every penalty strong enough to collapse its layer, not only the collapsed ones."""
    lines = "\n".join(_layer_code(row, entropy) for row in strong)
    return [
        Fix(
            "Lower the penalty by orders of magnitude on every strongly penalised layer and "
            "retrain from fresh weights (the collapsed ones sit where the gradient is ~0)",
            code=(
                f"{lines}\n"
                "model = build_model()  # the same network with these layers, fresh weights\n"
                "model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=...)"
            ),
        ),
        Fix(
            "Against overfitting, prefer early stopping on a validation split to a large penalty",
            code=(
                "stop = keras.callbacks.EarlyStopping(monitor='val_loss', patience=5,\n"
                "                                     restore_best_weights=True)\n"
                "model.fit(x_train, y_train, validation_split=0.2, epochs=100, "
                "callbacks=[stop])"
            ),
        ),
    ]
