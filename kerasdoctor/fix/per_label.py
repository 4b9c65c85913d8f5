"""`fix --threshold` and `fix --repair` for multi-label models (issue 16): y multi-hot (N, K),
K sigmoid units (or K logits).

One cut per label, chosen on one seeded stratified half of the rows (multilabel.split_halves,
multilabel.label_cut: Youden's J for the model's own rule `score > t`) and checked on the
other half against the model's 0.5 (multilabel.validate_label_thresholds: a label keeps 0.5
unless its cut beats it beyond noise). The diagnosis's decision-threshold experiment runs the
same code on the same halves, so both report the same figures.

The repair folds the validated cuts into the model: sigmoid(z - logit t) > 0.5 exactly when
sigmoid(z) > t, so the output bias of each label moves by -logit(t) (fix.repair.
shift_output_logits) and the model's plain 0.5 rule gives the thresholded answer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from kerasdoctor.dataspec import DataSpec
from kerasdoctor.errors import InputError
from kerasdoctor.findings import Finding, Fix, Report
from kerasdoctor.fix.repair_result import (
    LabelRates,
    LabelRow,
    LabelSummary,
    LabelThresholds,
    Rediagnosis,
    RepairDetails,
    RepairResult,
)
from kerasdoctor.fix.task_repair import MODEL_LEVEL  # model-level causes, repaired there

SPLIT = (
    "two seeded halves of DATA, stratified by each row's rarest label: the thresholds "
    "are chosen on the first and checked on the second, which they never saw"
)
RULE = (
    "a label gets its own threshold only when it beats 0.5 on the held-out half beyond "
    "noise (two standard errors of the paired difference, and 0.02 of balanced "
    "accuracy); the others keep 0.5"
)
# Causes of a multi-label diagnosis that no edit of the weights cures: (why, what instead)
WHY: dict[str, str] = {
    "output-activation": "a softmax head makes the labels compete (each row's scores sum to "
    "1): per-label thresholds cannot undo that; retrain with one sigmoid unit per label and "
    "binary cross-entropy",
    "loss-mismatch": "the loss trained the labels as one choice among K: retrain with binary "
    "cross-entropy",
    "class-imbalance": "in a multi-label model the rare labels' cure is their own threshold: "
    "repair the decision-threshold cause (--cause decision-threshold)",
}


@dataclass
class LabelData:
    """A multi-label model and its data: inputs bound to the model, y multi-hot (N, K)."""

    lm: Any
    facts: Any
    path: str
    xs: list[np.ndarray]
    y: np.ndarray  # (N, K) int8
    names: list[str]


def load_npz(
    model_path: str,
    data_path: str,
    opts: DataSpec,
    *,
    unsafe: bool = False,
    output_name: str | None = None,
    lm: Any = None,
) -> LabelData:
    """MODEL and an .npz whose `y` is multi-hot, bound together (exit 2 on a mismatch)."""
    from kerasdoctor.load import load_model
    from kerasdoctor.multilabel import read_multilabel_npz

    arrays, y, names = read_multilabel_npz(data_path, opts.x_key, opts.y_key)
    if lm is None:
        lm = load_model(model_path, unsafe=unsafe, output_name=output_name)
    where = f"DATA: {data_path}: '{opts.y_key}'"
    return bind(lm, str(data_path), arrays, y, names, where)


def bind(
    lm: Any,
    path: str,
    arrays: dict[str, np.ndarray],
    y: Any,
    names: list[str] | None,
    where: str = "y",
) -> LabelData:
    from kerasdoctor.load import Labels, RawData, bind_inputs
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.multilabel import check_multi_hot

    yb = check_multi_hot(y, where)
    n, k = yb.shape
    if names is not None and len(names) != k:
        raise InputError(f"{where}: {len(names)} class names for {k} labels")
    label_names = [str(v) for v in names] if names else [str(i) for i in range(k)]
    out = tuple(lm.output_shape)
    if len(out) != 2 or out[-1] != k:
        shape = "(N, " + ", ".join(str(d) for d in out[1:]) + ")"
        raise InputError(
            f"MODEL: {lm.path} outputs {shape} but the multi-hot labels have {k} "
            f"columns; a multi-label model needs {k} output units (N, {k})"
        )
    raw = RawData(path, dict(arrays), Labels(np.zeros(n, np.int64), "multi-hot", k, label_names))
    return LabelData(lm, read_facts(lm), path, bind_inputs(raw, lm), yb, label_names)


def check_head(ld: LabelData) -> None:
    """Per-label thresholds need independent scores: a softmax head exits 2."""
    if ld.facts.head == "softmax":
        raise InputError(
            f"MODEL {ld.lm.path} has a softmax over its {ld.y.shape[1]} outputs: the labels "
            "compete (each row's scores sum to 1), so no per-label threshold applies; retrain "
            "with one sigmoid unit per label (kerasdoctor explain output-activation)"
        )


def scores(
    ld: LabelData, rows: np.ndarray | None = None, lm: Any = None, logits: bool | None = None
) -> tuple[np.ndarray, bool]:
    """P(label) per row and label, and whether the outputs were read as logits (a linear head
    whose values leave [0, 1], as the diagnosis reads them); `logits` forces that reading
    (the repaired model is read as the original was). NaN/Inf outputs exit 2."""
    from kerasdoctor.model_facts import read_facts
    from kerasdoctor.multilabel import _predict

    model = lm or ld.lm
    facts = ld.facts if lm is None else read_facts(lm)
    raw = _predict(
        model, facts, ld.xs, rows, ld.y.shape[1], SimpleNamespace(batch_size=None, progress=None)
    )
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        raise InputError(
            f"MODEL {model.path} outputs NaN/Inf for {int(bad.sum())} rows; no "
            "threshold applies (run kerasdoctor diagnose to see why)"
        )
    if logits is None:
        logits = facts.head not in ("sigmoid", "softmax") and bool(raw.min() < 0 or raw.max() > 1)
    probs = 1.0 / (1.0 + np.exp(-np.clip(raw, -80, 80))) if logits else raw
    return probs, logits


def _logit(t: float) -> float:
    t = min(max(t, 1e-7), 1 - 1e-7)
    return math.log(t / (1 - t))


def _summary(
    y: np.ndarray, pred: np.ndarray, names: list[str], thresholds: list[float]
) -> LabelSummary:
    """label_summary's macro figures plus a row per label (what the tables print)."""
    from kerasdoctor.multilabel import _rates, label_summary

    return LabelSummary.of(
        label_summary(y, pred),
        [
            dict(
                _rates(y[:, j].astype(bool), pred[:, j].astype(bool)),
                **{"class": j, "name": names[j], "threshold": thresholds[j]},
            )
            for j in range(len(names))
        ],
    )


def _labels(
    ld: LabelData, probs: np.ndarray, test: np.ndarray, rows: list[dict[str, Any]]
) -> tuple[LabelRow, ...]:
    """multilabel.validate_label_thresholds's rows, with each label's name, prevalence and
    held-out ROC AUC."""
    from kerasdoctor.multilabel import _auc

    return tuple(
        LabelRow(
            label=r["label"],
            name=ld.names[r["label"]],
            prevalence=float(ld.y[:, r["label"]].mean()),
            roc_auc=_auc(ld.y[test, r["label"]], probs[test, r["label"]]),
            threshold=r["threshold"],
            threshold_fitted=r["threshold_fitted"],
            validated=r["validated"],
            gain=r["gain"],
            noise=r["noise"],
            note=r["note"],
            before=LabelRates.of(r["before"]),
            after=LabelRates.of(r["after"]),
        )
        for r in rows
    )


def threshold_report(ld: LabelData, seed: int, spec: DataSpec) -> LabelThresholds:
    """`fix --threshold MODEL DATA` on a multi-label model: a cut per label chosen on one
    half, checked on the other."""
    from kerasdoctor.multilabel import (
        DECISION,
        fix_commands,
        split_halves,
        validate_label_thresholds,
    )

    check_head(ld)
    probs, logits = scores(ld)
    y = ld.y
    fit, test = split_halves(y, seed)
    rows = validate_label_thresholds(y, probs, fit, test)
    shipped = [float(r["threshold"]) for r in rows]
    base = (probs > DECISION).astype(np.int8)
    tuned = (probs > np.asarray(shipped)).astype(np.int8)
    validated = [ld.names[r["label"]] for r in rows if r["validated"]]
    rounded = [round(t, 6) for t in shipped]
    if logits:
        code = (
            "import numpy as np\n"
            "# the model outputs logits: P > t  <=>  logit > log(t / (1 - t))\n"
            f"THRESHOLDS = np.array({rounded!r})\n"
            "LOGIT_THRESHOLDS = np.log(THRESHOLDS / (1 - THRESHOLDS))\n"
            "predicted = model.predict(x) > LOGIT_THRESHOLDS  # (N, K) booleans\n"
        )
    else:
        code = (
            "import numpy as np\n"
            "# chosen on one seeded half of DATA, checked on the other; 0.5 where no cut "
            "beat it\n"
            f"THRESHOLDS = np.array({rounded!r})\n"
            "predicted = model.predict(x) > THRESHOLDS  # (N, K) booleans, a column per "
            "label\n"
        )
    repair = None
    if validated:
        repair = fix_commands(
            ld.lm.path, ld.path, spec, "decision-threshold", repair=True, threshold=False
        )[0].command
    k = y.shape[1]
    return LabelThresholds(
        model=ld.lm.path,
        data=ld.path,
        head=f"{k} sigmoid units" if not logits else f"{k} linear units (logits)",
        default_threshold=DECISION,
        split=SPLIT,
        validation=RULE,
        seed=seed,
        fit_rows=int(fit.size),
        heldout_rows=int(test.size),
        thresholds=tuple(shipped),
        logit_thresholds=tuple(_logit(t) for t in shipped) if logits else None,
        validated_labels=tuple(validated),
        labels=_labels(ld, probs, test, rows),
        label_counts=tuple(int(v) for v in y.sum(axis=0)),
        class_names=tuple(ld.names),
        before=_summary(y[test], base[test], ld.names, [DECISION] * k),
        after=_summary(y[test], tuned[test], ld.names, shipped),
        code=code,
        repair_command=repair,
        note=(
            "before and after are measured on the held-out half only; choose the "
            "thresholds on validation data, not on the data you report on"
            + (
                ""
                if validated
                else "; no label's cut beat 0.5 beyond noise: the model's 0.5 stays for every label"
            )
        ),
    )


def repair(
    ld: LabelData, report: Report, finding: Finding | None, output: Path, seed: int
) -> RepairResult:
    """`fix --repair` of a multi-label model: the validated per-label cuts moved into the
    output bias, or a model-level cause cured (fix.task_repair); the file is written only when
    the reloaded model (safe mode) is better on the held-out half."""
    from kerasdoctor.fix.repair import (
        CannotRepair,
        _saved,
        _standard,
        shift_output_logits,
        unrepairable_why,
    )
    from kerasdoctor.load import load_model
    from kerasdoctor.multilabel import DECISION, split_halves, validate_label_thresholds

    y, k = ld.y, ld.y.shape[1]
    fit, test = split_halves(y, seed)
    result = RepairResult.start(
        "multilabel",
        report,
        finding,
        split=SPLIT,
        seed=seed,
        fit_rows=int(fit.size),
        heldout_rows=int(test.size),
        rule=RULE,
    )
    if finding is not None and finding.id in MODEL_LEVEL:  # fix.task_repair
        from kerasdoctor.fix.task_repair import repair_multilabel

        return repair_multilabel(ld, report, finding, output, seed, result)
    if finding is None or finding.id not in ("decision-threshold",):
        if finding is not None:
            result = replace(
                result,
                why=WHY.get(finding.id) or unrepairable_why(finding, "retraining"),
                instead=_instead(finding, report),
            )
        if finding is not None or report.verdict != "healthy":
            result = replace(result, before=_before(ld, test))
        return result
    if ld.facts.head == "softmax":  # the diagnosis names output-activation first, but --cause
        return replace(result, why=WHY["output-activation"])
    probs, logits = scores(ld)
    if ld.facts.head not in ("sigmoid",) and not logits:
        return replace(
            result,
            why=f"the {ld.facts.head} outputs lie in [0, 1] but are no sigmoid: no logit to shift",
        )
    rows = validate_label_thresholds(y, probs, fit, test)
    shipped = [float(r["threshold"]) for r in rows]
    base = (probs > DECISION).astype(np.int8)
    before = _summary(y[test], base[test], ld.names, [DECISION] * k)
    fitted = RepairDetails(labels=_labels(ld, probs, test, rows), thresholds=tuple(shipped))
    result = replace(result, before=before, details=fitted)
    validated = [r for r in rows if r["validated"]]
    if not validated:
        return replace(
            result,
            why="no label's threshold beats 0.5 beyond noise on the held-out half ("
            + "; ".join(f"{ld.names[r['label']]}: {r['note']}" for r in rows if r["note"])
            + "): nothing to move into the model, nothing written",
            instead=_instead(finding, report),
        )
    shift = np.array([_logit(t) if r["validated"] else 0.0 for t, r in zip(shipped, rows)])
    try:
        model, what, details = shift_output_logits(ld.lm, shift, ("sigmoid", "linear"))
    except CannotRepair as exc:
        return replace(result, why=str(exc), instead=_instead(finding, report))
    names = tuple(ld.names[r["label"]] for r in validated)
    result = replace(
        result,
        repair=(
            f"moved the thresholds of {len(validated)} of {k} labels ("
            + ", ".join(f"{ld.names[r['label']]} {r['threshold']:.4g}" for r in validated)
            + f") into the output logits: {what} (-= logit(threshold)); the "
            "other labels keep 0.5, and the model's plain 0.5 rule applies them"
        ),
        details=replace(fitted, surgery=details, validated_labels=names),
    )
    planned = (probs[test] > np.asarray(shipped)).astype(np.int8)
    with _saved(model, output) as tmp:
        # measured on the file as written, loaded back by plain Keras in safe mode
        lm2 = load_model(tmp)
        p2, _ = scores(ld, test, lm=lm2, logits=logits)
        pred = (p2 > DECISION).astype(np.int8)
        after = _summary(y[test], pred, ld.names, shipped)
        standard = _standard(lm2.keras_model)
        gain = float(_ba(after) - _ba(before))
        result = replace(
            result,
            after=after,
            details=replace(
                result.details, agreement_with_thresholds=float((pred == planned).mean())
            ),
            standard_layers_only=standard,
            gain=gain,
        )
        if not standard:
            return replace(result, why="the repaired model holds non-standard layers: not written")
        if not gain > 0:
            return replace(
                result,
                why=f"the reloaded model moves the macro balanced accuracy of the "
                f"held-out half by {gain:+.3f}: not written",
            )
        result = replace(result, diagnosis_after=_rediagnose(tmp, ld, test))
        os.replace(tmp, output)
    return replace(result, repaired=True, output=str(output))


def _ba(s: LabelSummary) -> float:
    return float("nan") if s.balanced_accuracy is None else s.balanced_accuracy


def _before(ld: LabelData, test: np.ndarray) -> LabelSummary | None:
    """The held-out figures at 0.5 for a result that repairs nothing (None when the model
    cannot be read per label)."""
    from kerasdoctor.multilabel import DECISION

    try:
        probs, _ = scores(ld, test)
    except InputError:
        return None
    pred = (probs > DECISION).astype(np.int8)
    return _summary(ld.y[test], pred, ld.names, [DECISION] * ld.y.shape[1])


def _instead(finding: Finding, report: Report) -> tuple[Fix, ...]:
    """The finding's own remedies but a repair command (that is what failed); for a cause
    whose cure is the threshold, the decision-threshold finding's."""
    fixes = tuple(finding.fixes)
    if finding.id == "class-imbalance":
        other = next((f for f in report.causes if f.id == "decision-threshold"), None)
        if other is not None:
            fixes = tuple(other.fixes) + fixes
    return tuple(f for f in fixes if "--repair" not in (f.command or ""))


def _rediagnose(path: str, ld: LabelData, test: np.ndarray) -> Rediagnosis:
    """The diagnosis of the repaired model on the held-out half (rows it never fitted)."""
    from kerasdoctor.core import diagnose_arrays

    try:
        xs = {s.name: a[test] for s, a in zip(ld.lm.inputs, ld.xs)}
        rep = diagnose_arrays(
            path,
            xs if len(xs) > 1 else next(iter(xs.values())),
            ld.y[test],
            class_names=ld.names,
            multi_label=True,
        )
    except Exception as exc:  # reported, never fatal: the repair itself is measured above
        return Rediagnosis.failed(exc)
    return Rediagnosis.of(rep)
