"""nonfinite-inputs: NaN or Inf in the data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, SINGLE_LABEL, CheckSpec, Context, finding
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult

# How many offending features each input lists in the evidence.
MAX_FEATURES_LISTED = 10

SPEC = CheckSpec(
    id="nonfinite-inputs",
    kind=Kind.CAUSE,
    summary="NaN or Inf in the data.",
    measures=(
        "The single pass counts NaN and Inf values per input and per feature (last axis). Any "
        "non-finite value is an error: Keras raises nothing, TensorFlow's ReLU turns NaN into "
        "0 silently, a NaN that reaches the output makes every probability NaN and the argmax "
        "of a NaN row is class 0, so the affected rows get a garbage prediction without any "
        "warning (and in training one NaN batch turns every weight into NaN). The affected "
        "rows are bounded from the counts (at least the worst feature's count divided by the "
        "values per sample, at most the total) and counted exactly in the bounded sample."
    ),
    fix=(
        "Find where the values come from (missing entries in the source file, a division by "
        "zero or log(0) in feature engineering) and impute them (e.g. per-feature mean) or drop "
        "the rows, before training and before prediction."
    ),
    fires_on=("data_nan",),
    order=80,
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
    tier=0,
    needs=frozenset({"experiments"}),
    every_epoch=frozenset({SINGLE_LABEL}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    rows: list[dict[str, Any]] = []
    for i, st in enumerate(ev.inputs):
        m = st.moments
        n_nan, n_inf = int(m.n_nan.sum()), int(m.n_inf.sum())
        if n_nan + n_inf == 0:
            continue
        per_feature = m.n_nan + m.n_inf
        n_values = int(m.count.sum()) + n_nan + n_inf
        spatial = int(np.prod(st.shape[:-1], dtype=np.int64)) if len(st.shape) >= 2 else 1
        worst = np.argsort(-per_feature)[:MAX_FEATURES_LISTED]
        sample_rows = None
        if ctx.sample_inputs is not None and i < len(ctx.sample_inputs):
            xs = np.asarray(ctx.sample_inputs[i])
            if xs.dtype.kind == "f" and xs.shape[0] > 0:
                bad = ~np.isfinite(xs.reshape(xs.shape[0], -1)).all(axis=1)
                sample_rows = {"affected": int(bad.sum()), "of": int(xs.shape[0])}
        rows.append(
            {
                "input": st.name,
                "n_nan": n_nan,
                "n_inf": n_inf,
                "n_values": n_values,
                "share": (n_nan + n_inf) / max(n_values, 1),
                "rows_affected_at_least": int(np.ceil(per_feature.max() / spatial)),
                "rows_affected_at_most": int(min(ev.n_samples, n_nan + n_inf)),
                "in_sample": sample_rows,
                "features": [
                    {
                        "feature": int(f),
                        "n_nan": int(m.n_nan[f]),
                        "n_inf": int(m.n_inf[f]),
                    }
                    for f in worst
                    if per_feature[f] > 0
                ],
            }
        )
    if not rows:
        return []
    total = sum(r["n_nan"] + r["n_inf"] for r in rows)
    parts = []
    for r in rows:
        feats = ", ".join(
            f"feature {f['feature']} ({f['n_nan'] + f['n_inf']})" for f in r["features"][:5]
        )
        lo, hi = r["rows_affected_at_least"], r["rows_affected_at_most"]
        rows_txt = f"{lo} rows" if lo == hi else f"{lo} to {hi} of {ev.n_samples} rows"
        parts.append(
            f"input '{r['input']}': {r['n_nan']} NaN and {r['n_inf']} Inf in {r['n_values']} "
            f"values ({r['share']:.2%}), {rows_txt}; worst {feats}"
        )
    names = ", ".join(f"'{r['input']}'" for r in rows)
    evidence: dict[str, Any] = {"inputs": rows, "n_nonfinite": total}
    imputed = _impute(ctx)
    detail_tail = ""
    if imputed is not None:
        evidence["experiment"] = imputed.to_dict()
        if imputed.ok and imputed.after is not None:
            restored = ctx.experiments is not None and ctx.experiments.restores(imputed)
            evidence["cured"] = bool(restored)
            detail_tail = (
                f" Replacing them by each feature's mean on the {imputed.rows} sampled rows: "
                f"balanced accuracy {imputed.before:.1%} -> {imputed.after:.1%}"
                + (" (the non-finite values are what breaks the predictions)." if restored else ".")
            )
    return [
        finding(
            SPEC,
            Severity.ERROR,
            f"{total} NaN/Inf value(s) in input {names}",
            "; ".join(parts) + ". Keras does not complain: ReLU turns NaN into 0, a NaN that "
            "reaches the output makes the row's probabilities NaN and its argmax class 0, so "
            "these rows get garbage predictions silently; in training a single such batch "
            "turns the weights into NaN." + detail_tail,
            evidence,
            [
                Fix(
                    "Impute the missing values with the per-feature mean of the training data "
                    "(or drop those rows), before training and before prediction",
                    code=(
                        "axes = tuple(range(x.ndim - 1))  # every axis but the features\n"
                        "finite = np.isfinite(x)\n"
                        "mean = np.nanmean(np.where(finite, x, np.nan), axis=axes)\n"
                        "x = np.where(finite, x, mean)  # or drop them:\n"
                        "# keep = finite.reshape(len(x), -1).all(axis=1); x, y = x[keep], "
                        "y[keep]"
                    ),
                ),
                Fix(
                    "Find the rows and trace them back to the source (missing entries, "
                    "division by zero, log(0))",
                    code=(
                        "bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)\n"
                        "print(np.flatnonzero(bad)[:20], bad.sum())"
                    ),
                ),
            ],
        )
    ]


def _impute(ctx: Context) -> ExperimentResult | None:
    """The cure tried on the sample: every NaN/Inf replaced by its feature's finite mean."""
    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    means = [st.moments.mean for st in ctx.evidence.inputs]

    def impute(xs: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for x, mean in zip(xs, means, strict=False):
            a = np.asarray(x)
            if a.dtype.kind == "f" and mean.size == (a.shape[-1] if a.ndim > 1 else 1):
                fill = np.nan_to_num(mean, nan=0.0, posinf=0.0, neginf=0.0).astype(a.dtype)
                a = np.where(np.isfinite(a), a, fill)
            out.append(a)
        return out

    return exps.inputs("impute-nonfinite", "replacing NaN/Inf by each feature's mean", impute)
