"""label-permutation: the model is right up to a relabelling of its classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor._lazy import numpy as np
from kerasdoctor.checks.base import (
    PREDICTIONS,
    CheckSpec,
    Context,
    Threshold,
    finding,
    repair_fix,
)
from kerasdoctor.findings import Finding, Fix, Kind, Severity

if TYPE_CHECKING:
    from kerasdoctor.experiments import ExperimentResult

SPEC = CheckSpec(
    id="label-permutation",
    kind=Kind.CAUSE,
    summary=(
        "The model is right up to a relabelling: its class order differs from the labels' "
        "(e.g. folder names sorted alphabetically)."
    ),
    measures=(
        "The recall matrix (confusion matrix rows divided by each class's support) and the "
        "one-to-one matching of label classes to output units that maximises balanced "
        "accuracy (an optimal assignment, scipy's linear_sum_assignment). Balanced accuracy, "
        "not accuracy, so that a model answering one class is never 'fixed' by renaming that "
        "class the majority. It fires when the matching is not the identity, removes at least "
        "min_error_removed of the balanced error (1 - balanced accuracy) of the diagonal, and "
        "the gain exceeds noise_z times the sampling noise of the difference (sqrt(2) x the "
        "largest standard error balanced accuracy can have with these class sizes, "
        "0.5 sqrt(sum 1/n_k) / K). A merely bad model spreads its errors: no relabelling "
        "removes half of them. The relabelling is then tried as a cure on the bounded "
        "sample: the matching is fitted on one seeded, stratified half and scored on the "
        "other, and it must pass the same bars there. Error: every prediction is reported "
        "under the wrong name; unless another cure tried on the same rows (a preprocessing "
        "transform such as the channel order, BatchNorm statistics) restores the model with "
        "the labels as they are and at least as well: then the confusion is what that defect "
        "does, and the permutation is info."
    ),
    fix=(
        "Use the label order the model was trained with: map each output unit to its class "
        "(the mapping in the evidence), or reorder class_names; with "
        "image_dataset_from_directory, pass class_names explicitly in the training order."
    ),
    thresholds={
        "min_error_removed": Threshold(
            0.5,
            "the relabelling must fix at least half of the balanced error: the claim is that "
            "the model is right, only its names are wrong",
        ),
        "noise_z": Threshold(
            3.0,
            "three standard errors: the search over matchings picks the best of many, so a "
            "plain 2-sigma bar would let chance through",
        ),
    },
    fires_on=("data_permuted",),
    repair=("reorder the output layer's units (kernel columns and bias) into the labels' order"),
    order=200,
    explains=frozenset({PREDICTIONS}),
    tier=1,
    needs=frozenset({"experiments"}),
)


def run(ctx: Context) -> list[Finding]:
    ev = ctx.evidence
    conf = np.asarray(ev.confusion, dtype=np.float64)
    support = conf.sum(axis=1)
    present = np.flatnonzero(support > 0)
    if present.size < 2:
        return []
    from scipy.optimize import linear_sum_assignment

    from kerasdoctor.experiments import noise_bound

    recall_m = conf[present] / support[present, None]  # rows: present label classes
    rows, cols = linear_sum_assignment(recall_m, maximize=True)
    unit_of = {int(present[r]): int(c) for r, c in zip(rows, cols)}
    if all(unit_of[k] == k for k in unit_of):
        return []
    diag = np.array([recall_m[i, k] for i, k in enumerate(present)])
    mapped = recall_m[rows, cols]
    bal0, bal1 = float(diag.mean()), float(mapped.mean())
    gain = bal1 - bal0
    if bal0 >= 1.0 or gain <= 0:
        return []
    removed = gain / (1.0 - bal0)
    noise = noise_bound(support)
    if removed < ctx.threshold(SPEC, "min_error_removed"):
        return []
    if gain < ctx.threshold(SPEC, "noise_z") * noise:
        return []
    n = float(conf.sum())
    acc0 = float(np.trace(conf) / n)
    acc1 = float(sum(conf[k, u] for k, u in unit_of.items()) / n)
    moved = sorted(k for k, u in unit_of.items() if u != k)
    k_units = conf.shape[1]
    label_of_unit = {u: k for k, u in unit_of.items()}
    names = ctx.class_names
    model_order = [
        names[label_of_unit[u]] if u in label_of_unit else names[u] if u < len(names) else str(u)
        for u in range(k_units)
    ]
    mapping: list[dict[str, Any]] = [
        {
            "output_unit": unit_of[k],
            "label_class": k,
            "name": names[k] if k < len(names) else str(k),
            "samples": int(conf[k, unit_of[k]]),
            "support": int(support[k]),
        }
        for k in moved
    ]
    parts = "; ".join(
        f"class {ctx.cls(m['label_class'])} is predicted as {ctx.cls(m['output_unit'])} "
        f"{m['samples']} of {m['support']} times"
        for m in mapping[:6]
    )
    to_label = [label_of_unit.get(u, u) for u in range(k_units)]
    to_unit = [unit_of.get(k, k) for k in range(conf.shape[0])]
    if ctx.facts.n_outputs == 1:
        predict = "unit = (model.predict(x)[:, 0] > 0.5).astype(int)"
    else:
        predict = "unit = model.predict(x).argmax(axis=-1)"
    evidence: dict[str, Any] = {
        "mapping": mapping,
        "output_unit_to_label": to_label,
        "label_to_output_unit": to_unit,
        "class_names_in_model_order": model_order,
        "accuracy": acc0,
        "accuracy_relabelled": acc1,
        "balanced_accuracy": bal0,
        "balanced_accuracy_relabelled": bal1,
        "error_removed": float(removed),
        "noise": noise,
    }
    severity = Severity.ERROR
    tried = _validated(ctx)
    if tried is not None:
        res, cured, rival = tried
        evidence["experiment"] = res.to_dict()
        evidence["cured"] = cured and rival is None
        if not cured:
            return []  # the matching does not hold on rows it was not fitted on: noise
        if rival is not None:
            severity = Severity.INFO
            evidence["explained_by_experiment"] = rival.to_dict()
            parts += (
                f". But {rival.what} restores balanced accuracy to {rival.after:.1%} with the "
                "labels as they are: the confusion is what that defect does to the inputs, "
                "not a wrong class order"
            )
    fixes = (
        []
        if severity is Severity.INFO
        else [repair_fix(ctx, SPEC), *_fixes(model_order, to_label, to_unit, predict)]
    )
    return [
        finding(
            SPEC,
            severity,
            f"The model is right up to a relabelling of {len(moved)} classes: balanced "
            f"accuracy {bal0:.1%} as labelled, {bal1:.1%} with its output units renamed",
            f"{parts}. Matching output units to classes one-to-one (optimal assignment) gives "
            f"accuracy {acc1:.1%} instead of {acc0:.1%}: the model learned the classes, but "
            "its class order is not the labels' (a classic with image_dataset_from_directory, "
            "whose classes follow the sorted folder names, or a reordered class_names).",
            evidence,
            fixes,
        )
    ]


def _fixes(
    model_order: list[str], to_label: list[int], to_unit: list[int], predict: str
) -> list[Fix]:
    return [
        Fix(
            "Name the model's outputs in its own order (the order it was trained with)",
            code=(
                f"class_names = {model_order!r}  # output unit j is class_names[j]\n"
                f"to_label = np.array({to_label})  # output unit -> label index\n"
                f"{predict}\n"
                "y_pred = to_label[unit]"
            ),
        ),
        Fix(
            "Or relabel the data into the model's order before evaluating or fine-tuning",
            code=(
                f"to_unit = np.array({to_unit})  # label index -> output unit\ny_model = to_unit[y]"
            ),
        ),
    ]


def _validated(ctx: Context) -> tuple[ExperimentResult, bool, ExperimentResult | None] | None:
    """The matching fitted on one half of the sample, scored on the other; whether it
    restores there, and a rival cure (tried on the inputs, labels untouched) at least as good.
    None when there is no sample to split."""
    from scipy.optimize import linear_sum_assignment

    from kerasdoctor.experiments import ExperimentResult, split_halves

    exps = ctx.experiments
    if exps is None or not exps.available:
        return None
    y, base, k = exps.y, exps.base_pred, exps.k
    a, b = split_halves(y, exps.seed)
    if a.size == 0 or b.size == 0:
        return None
    conf = np.zeros((k, k))
    np.add.at(conf, (y[a], base[a]), 1.0)
    sup = conf.sum(axis=1)
    seen = np.flatnonzero(sup > 0)
    rows, cols = linear_sum_assignment(conf[seen] / sup[seen, None], maximize=True)
    to_label = np.arange(k)
    to_label[cols] = seen[rows]  # output unit -> label class
    res = exps.scored(
        "label-permutation",
        "renaming the output units by the matching fitted on the other half of the rows",
        to_label[base[b]],
        rows=b,
        validated="matching fitted on one seeded half, scored on the other",
    )
    cured = exps.restores(
        res, 0.0, ctx.threshold(SPEC, "noise_z"), ctx.threshold(SPEC, "min_error_removed")
    )
    rival = None
    for r in exps.results():
        if (
            isinstance(r, ExperimentResult)
            and r.key != res.key
            and r.ok
            and r.after is not None
            and res.after is not None
            and r.key != "prior-logit-adjustment"
            and exps.restores(r)
            and r.after >= res.after - exps.noise
        ):
            rival = r
            break
    return res, cured, rival
