"""nonfinite-weights: NaN or Inf in the model's weights."""

from __future__ import annotations

from typing import Any

from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, SINGLE_LABEL, CheckSpec, Context, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

SPEC = CheckSpec(
    id="nonfinite-weights",
    kind=Kind.CAUSE,
    summary="NaN or Inf in the model's weights.",
    measures=(
        "Every floating-point weight of every layer (nested models included) is scanned for "
        "NaN and Inf once, when the model is read; the probe counts the samples whose output "
        "is not finite. One NaN in a kernel makes every unit it feeds NaN for every input, and "
        "argmax over NaN returns the first class: the output is forced whatever the data. "
        "Always an error; there is no threshold. It is what an exploding run leaves behind (a "
        "learning rate too high, unscaled inputs, a log of 0, NaN in the training data)."
    ),
    fix=(
        "Retrain from the last finite checkpoint with a lower learning rate and gradient "
        "clipping, stop on the first NaN (keras.callbacks.TerminateOnNaN), and check the "
        "training data for NaN/Inf and unscaled features."
    ),
    fires_on=("model_nan_weights",),
    order=90,
    explains=frozenset(
        {
            OUTPUT,
            PREDICTIONS,
            "batchnorm-statistics",
            "dead-units",
            "decision-threshold",
        }
    ),
    tier=0,
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    bad = ctx.facts.nonfinite_weights
    if not bad:
        return []
    ev = ctx.evidence
    n_nan = sum(b.n_nan for b in bad)
    n_inf = sum(b.n_inf for b in bad)
    n_vals = sum(b.n_values for b in bad)
    layers = [
        {"layer": b.layer, "n_nan": b.n_nan, "n_inf": b.n_inf, "n_values": b.n_values} for b in bad
    ]
    rows = ev.output.nonfinite_rows
    evidence: dict[str, Any] = {
        "n_layers": len(bad),
        "n_nan": n_nan,
        "n_inf": n_inf,
        "n_values_in_those_layers": n_vals,
        "nonfinite_output_rows": rows,
        "n_samples": ev.n_samples,
        "layers": layers,
    }
    shown = ", ".join(f"'{b.layer}' ({b.n_nan + b.n_inf} of {b.n_values})" for b in bad[:5]) + (
        f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    )
    what = " and ".join(
        s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} Inf" if n_inf else "") if s
    )
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"{what} value(s) in the weights of {len(bad)} layer(s): {shown}",
            f"Non-finite weights propagate to every unit they feed: {rows} of {ev.n_samples} "
            "samples get a non-finite output, and argmax over NaN is always the first class. "
            "The model has to be retrained (or restored from a checkpoint before the values "
            "overflowed).",
            evidence,
            [
                Fix(
                    "Retrain with a lower learning rate, gradient clipping, and stop at the "
                    "first NaN",
                    code=(
                        "model.compile(\n"
                        "    optimizer=keras.optimizers.Adam(learning_rate=1e-4, clipnorm=1.0),\n"
                        "    loss=model.loss,\n"
                        ")\n"
                        "model.fit(x, y, callbacks=[keras.callbacks.TerminateOnNaN()])"
                    ),
                ),
                Fix(
                    "Check the training data for NaN/Inf and unscaled features first",
                    command="kerasdoctor explain nonfinite-inputs",
                ),
            ],
        )
    ]
