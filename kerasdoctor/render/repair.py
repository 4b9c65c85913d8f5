"""Tables of `fix --repair` (single-label, multi-label, dense) and of the per-label /
per-position `fix --threshold`: plain text from the typed results of fix/repair_result.py,
read through their attributes."""

from __future__ import annotations

from collections.abc import Sequence

from kerasdoctor.fix.repair_result import (
    LabelRates,
    LabelRow,
    LabelSummary,
    LabelThresholds,
    PositionSummary,
    PositionThreshold,
    Rediagnosis,
    RepairResult,
    Summary,
)
from kerasdoctor.render.simple import _simple, to_text

WRITTEN = "(standard Keras layers; loads with keras.saving.load_model in safe mode)"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def repair_table(r: RepairResult) -> str:
    """`fix --repair`: what was repaired, and the held-out figures before and after."""
    if r.cause is None:
        return f"Nothing repaired: {r.why}\n"
    lines = [f"cause: {r.cause} — {r.cause_title or ''}".rstrip(" —")]
    if r.repair:
        lines.append(f"repair: {r.repair}")
    if r.task == "multilabel":
        lines += _label_lines(r)
    elif r.task == "dense":
        lines += _position_lines(r)
    else:
        lines += _class_lines(r)
    return "\n".join(lines + _outcome(r)) + "\n"


def _diagnosis(d: Rediagnosis | None, part: str) -> list[str]:
    if d is None or d.error is not None:
        return []
    root = f", root cause {d.root_cause}" if d.root_cause else ""
    return [f"diagnosis of the repaired model on the held-out {part}: {d.verdict}{root}"]


def _outcome(r: RepairResult) -> list[str]:
    """The file written, or why not and what to do instead."""
    if r.repaired:
        return [f"written: {r.output} {WRITTEN}"]
    lines = [f"not repaired: {r.why}"]
    for fix in r.instead:
        lines.append(f"instead: {fix.summary}" + (f": {fix.command}" if fix.command else ""))
    return lines


# ------------------------------------------------------------------ single-label


def _ci(s: Summary) -> str:
    ci = s.balanced_accuracy_ci95
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def _class_lines(r: RepairResult) -> list[str]:
    before, after = r.before, r.after
    assert isinstance(before, Summary) and (after is None or isinstance(after, Summary))
    cols = ["class", "name", "support", "recall before", "predicted before"]
    if after is not None:
        cols += ["recall after", "predicted after"]
    # a line of its own, not the title: rich wraps a title to the table's width
    lines = [
        f"held-out half of {r.data or 'DATA'}: {r.heldout_rows} rows; the "
        f"repair was fitted on the other {r.fit_rows} (seed {r.seed})"
    ]
    t = _simple("", cols)
    for i, pb in enumerate(before.per_class):
        cells = [str(pb.index), pb.name, str(pb.support), _pct(pb.recall), str(pb.predicted)]
        if after is not None:
            pa = after.per_class[i]
            cells += [_pct(pa.recall), str(pa.predicted)]
        t.add_row(*cells)
    lines.append(to_text(t).rstrip("\n"))
    bal = f"balanced accuracy {_pct(before.balanced_accuracy)}{_ci(before)}"
    if after is not None:
        bal += (
            f" → {_pct(after.balanced_accuracy)}{_ci(after)} · accuracy "
            f"{_pct(before.accuracy)} → {_pct(after.accuracy)}"
        )
        if r.required_gain is not None:
            bal += f" (a repair must gain at least {_pct(r.required_gain)})"
    lines.append(bal)
    return lines + _diagnosis(r.diagnosis_after, "half")


# ------------------------------------------------------------------ multi-label


def _label_rows(labels: Sequence[LabelRow], after: Sequence[LabelRates], support: list[int]) -> str:
    t = _simple("", ["label", "name", "positives", "threshold", "recall", "precision", "bal. acc."])
    for r, a, n in zip(labels, after, support):
        b = r.before
        t.add_row(
            str(r.label),
            r.name,
            str(n),
            f"{r.threshold:.3g}" if r.validated else "0.5 (kept)",
            f"{_pct(b.recall)} → {_pct(a.recall)}",
            f"{_pct(b.precision)} → {_pct(a.precision)}",
            f"{_pct(b.balanced_accuracy)} → {_pct(a.balanced_accuracy)}",
        )
    return to_text(t).rstrip("\n")


def _macro(b: LabelSummary, a: LabelSummary | None) -> str:
    if a is None:
        return (
            f"macro balanced accuracy {_pct(b.macro_balanced_accuracy)} · rows predicted "
            f"with no label {_pct(b.no_predicted_label)}"
        )
    return (
        f"macro balanced accuracy {_pct(b.macro_balanced_accuracy)} → "
        f"{_pct(a.macro_balanced_accuracy)} · macro recall {_pct(b.macro_recall)} → "
        f"{_pct(a.macro_recall)} · macro precision {_pct(b.macro_precision)} → "
        f"{_pct(a.macro_precision)} · rows predicted with no label "
        f"{_pct(b.no_predicted_label)} → {_pct(a.no_predicted_label)}"
    )


def _notes(labels: Sequence[LabelRow]) -> list[str]:
    return [f"{r.name}: {r.note}" for r in labels if r.note]


def label_threshold_table(r: LabelThresholds) -> str:
    """`fix --threshold` on a multi-label model: a row per label, held-out half."""
    support = [p.support for p in r.before.per_class]
    lines = [
        f"Per-label thresholds maximising balanced accuracy · model head: {r.head} · "
        f"rule: score > threshold",
        f"chosen on {r.fit_rows} rows of {r.data}, checked on the other "
        f"{r.heldout_rows} (seed {r.seed}); before = 0.5, after = the kept cut",
        _label_rows(r.labels, [lab.after for lab in r.labels], support),
        _macro(r.before, r.after),
    ]
    lines += _notes(r.labels)
    lines.append(f"rule: {r.validation}")
    if r.logit_thresholds is not None:
        lines.append(
            "the model outputs logits: thresholds on them "
            + ", ".join(f"{v:.4g}" for v in r.logit_thresholds)
        )
    lines.append(f"note: {r.note}")
    lines.append("Use them:\n" + r.code.rstrip("\n"))
    if r.repair_command:
        lines.append(f"Or move them into the model: {r.repair_command}")
    return "\n".join(lines) + "\n"


def _label_lines(r: RepairResult) -> list[str]:
    from kerasdoctor.fix.task_repair import MODEL_LEVEL

    before, after = r.before, r.after
    assert before is None or isinstance(before, LabelSummary)
    assert after is None or isinstance(after, LabelSummary)
    fitted = "the thresholds were chosen" if r.cause not in MODEL_LEVEL else "the repair was fitted"
    lines = [
        f"held-out half of {r.data or 'DATA'}: {r.heldout_rows} rows; "
        f"{fitted} on the other {r.fit_rows} (seed {r.seed})"
    ]
    labels = r.details.labels
    if labels and before is not None:
        # what the reloaded model predicts, not the plan
        shown: Sequence[LabelRates] = (
            after.per_class if after is not None else [lab.after for lab in labels]
        )
        support = [p.support for p in before.per_class]
        lines.append(_label_rows(labels, shown, support))
        lines += _notes(labels)
    if before is not None:
        lines.append(_macro(before, after))
    return lines + _diagnosis(r.diagnosis_after, "half")


# ------------------------------------------------------------------ dense


def _class_rows(before: PositionSummary, after: PositionSummary | None) -> str:
    t = _simple("", ["class", "name", "positions", "recall", "precision", "IoU"])
    for i, b in enumerate(before.per_class):
        cells = [_pct(b.recall), _pct(b.precision), _pct(b.iou)]
        if after is not None:
            a = after.per_class[i]
            cells = [f"{c} → {_pct(v)}" for c, v in zip(cells, (a.recall, a.precision, a.iou))]
        t.add_row(str(b.index), b.name, str(b.support), *cells)
    return to_text(t).rstrip("\n")


def _overall(b: PositionSummary, a: PositionSummary | None) -> str:
    if a is None:
        return f"balanced accuracy {_pct(b.balanced_accuracy)} · mean IoU {b.mean_iou:.3f}"
    return (
        f"balanced accuracy over positions {_pct(b.balanced_accuracy)} → "
        f"{_pct(a.balanced_accuracy)} · mean IoU {b.mean_iou:.3f} → "
        f"{a.mean_iou:.3f} · samples predicted with no foreground "
        f"{_pct(b.no_predicted_foreground)} → {_pct(a.no_predicted_foreground)}"
    )


def position_threshold_table(r: PositionThreshold) -> str:
    """`fix --threshold` on a dense model: one threshold over the positions."""
    v = r.verdict
    lines = [
        f"Decision threshold over positions maximising balanced accuracy · model head: "
        f"{r.head} · score: {r.score}",
        f"chosen on {r.fit_samples} samples of {r.data}, measured on the other "
        f"{r.heldout_samples} ({r.positions_heldout} positions; seed {r.seed})"
        f"; before = 0.5, after = {r.threshold_fitted:.4g}",
        _class_rows(r.before, r.tried),
        _overall(r.before, r.tried),
        f"gain {v.gain:+.3f} (noise ±{v.noise:.3f}) · mean IoU "
        f"{v.mean_iou_gain:+.3f} (noise ±{v.mean_iou_noise:.3f}) · "
        + ("validated" if r.validated else "NOT validated: keep 0.5"),
    ]
    if r.roc_auc is not None:
        lines.append(f"ROC AUC over the held-out positions {r.roc_auc:.3f}")
    lines.append(f"rule: {r.validation}")
    if r.note:
        lines.append(f"note: {r.note}")
    else:
        lines.append("Use it:\n" + r.code.rstrip("\n"))
    if r.repair_command:
        lines.append(f"Or move it into the model: {r.repair_command}")
    return "\n".join(lines) + "\n"


def _position_lines(r: RepairResult) -> list[str]:
    before = r.before
    shown = r.after or r.details.tried
    assert before is None or isinstance(before, PositionSummary)
    assert shown is None or isinstance(shown, PositionSummary)
    lines = [
        f"held-out samples of {r.data or 'DATA'}: {r.heldout_rows}; the "
        f"cure was fitted on the other {r.fit_rows} (seed {r.seed})"
    ]
    if before is not None:
        if shown is not None and r.after is None:
            lines.append("what the cure would give (not written):")
        lines.append(_class_rows(before, shown))
        lines.append(_overall(before, shown))
    return lines + _diagnosis(r.diagnosis_after, "samples")
