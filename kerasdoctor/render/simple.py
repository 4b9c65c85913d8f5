"""Small rich tables for the `fix` command's results."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kerasdoctor.fix.results import (
        ClassWeights,
        OutputBias,
        ResampleReport,
        RetrainReport,
        Summary,
        ThresholdReport,
    )


def to_text(renderable: Any, width: int = 100) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(renderable)
    return buf.getvalue()


def weights_table(result: ClassWeights, names: list[str] | None) -> str:
    """`fix --class-weights`: the count and weight of each class."""
    t = Table(title=f"Class weights ({result.method})", box=box.SIMPLE_HEAVY, title_justify="left")
    for col in ("class", "name", "count", "weight"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for k, n in enumerate(result.label_counts):
        name = names[k] if names and k < len(names) else str(k)
        w = result.class_weight.get(str(k))
        t.add_row(str(k), name, str(n), "—" if w is None else f"{w:.4f}")
    items = ", ".join(f"{k}: {v:.4g}" for k, v in result.class_weight.items())
    note = f"note: {result.note}\n" if result.note else ""
    # a line of its own, not the title: rich wraps a title to the table's width
    source = f"from the labels of TRAIN_DATA {result.train_data}\n" if result.train_data else ""
    return source + to_text(t) + f"\nmodel.fit(..., class_weight={{{items}}})\n" + note


# --------------------------------------------------------------- fix: the other modes


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _simple(title: str, cols: list[str]) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for col in cols:
        t.add_column(col, justify="left" if col == "name" else "right")
    return t


def _interval(s: Summary) -> str:
    """A summary's 95% interval of balanced accuracy, in brackets."""
    ci = s.balanced_accuracy_ci95
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def bias_table(result: OutputBias) -> str:
    """`fix --output-bias`: the prior per class and the bias of each kind of head."""
    heads = result.heads
    t = _simple("Output bias at the label prior", ["class", "name", "count", "share"])
    per_class = [h for h in heads if h.units > 1]  # one value per class: a column each
    for h in per_class:
        t.add_column(f"{h.head} bias ({h.units} units)", justify="right")
    names = result.class_names or ()
    for k, (n, p) in enumerate(zip(result.label_counts, result.prior)):
        cells = [str(k), names[k] if k < len(names) else str(k), str(n), _pct(p)]
        cells += [f"{h.bias[k]:.4f}" for h in per_class]
        t.add_row(*cells)
    lines = [to_text(t).rstrip("\n")]
    if result.train_data:
        lines.insert(0, f"from the labels of TRAIN_DATA {result.train_data}")
    for h in heads:
        if h.units == 1:
            lines.append(f"one sigmoid unit: bias = {h.formula} = {h.bias[0]:.4f}")
    if result.absent_classes:
        lines.append(
            "classes absent from the labels get the share of half a sample: "
            + ", ".join(str(k) for k in result.absent_classes)
        )
    lines.append(f"note: {result.note}")
    for h in heads:
        lines += ["", f"For {h.for_}:", h.code.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _confusion(conf: Sequence[Sequence[int]], names: Sequence[str]) -> Table:
    t = Table(box=box.SIMPLE, show_header=True)
    t.add_column("labels → predicted", justify="left")
    for n in names:
        t.add_column(n, justify="right")
    for n, row in zip(names, conf):
        t.add_row(n, *(str(v) for v in row))
    return t


def threshold_table(r: ThresholdReport) -> str:
    """`fix --threshold`: the chosen threshold, and the confusion before and after."""
    names = r.class_names
    obj = r.objective
    b, a = r.before, r.after
    t = _simple(
        f"Decision threshold maximising {obj.replace('-', ' ')} · model head: {r.head} · "
        f"score: {r.score}",
        ["", "threshold", "balanced acc.", "F1", "predicted " + " / ".join(names)]
        + [f"recall {n}" for n in names],
    )
    for label, s in (("before", b), ("after", a)):
        t.add_row(
            label,
            f"{s.threshold:.4g}",
            _pct(s.balanced_accuracy),
            f"{s.f1:.3f}",
            " / ".join(str(v) for v in s.predicted_counts),
            *(_pct(v) for v in s.recall),
        )
    parts = [to_text(t).rstrip("\n")]
    parts.append(
        f"ROC AUC {r.roc_auc:.3f} · labels "
        + " / ".join(f"{n} {c}" for n, c in zip(names, r.label_counts))
    )
    parts.append("before (0.5):" + "\n" + to_text(_confusion(b.confusion_matrix, names)).rstrip())
    parts.append(
        f"after ({a.threshold:.4g}):"
        + "\n"
        + to_text(_confusion(a.confusion_matrix, names)).rstrip()
    )
    cc = r.cross_check
    if cc.objective is not None:
        parts.append(
            f"split-half check: chosen on one half, {obj} {cc.objective:.3f} on the other "
            f"(thresholds {', '.join(f'{v:.4g}' for v in cc.thresholds)})"
        )
    if r.logit_threshold is not None:
        parts.append(f"the model outputs logits: threshold {r.logit_threshold:.4g} on them")
    if r.warning:
        parts.append(f"warning: {r.warning}")
    parts.append(f"note: {r.note}")
    parts.append("Use it:\n" + r.code.rstrip("\n"))
    return "\n".join(parts) + "\n"


def resample_table(r: ResampleReport) -> str:
    """`fix --oversample/--undersample`: counts before and after."""
    t = _simple("", ["class", "name", "before", "after"])
    names = r.class_names
    for k, (n0, n1) in enumerate(zip(r.label_counts_before, r.label_counts_after)):
        t.add_row(str(k), names[k], str(n0), str(n1))
    t.add_row("", "total", str(r.n_samples_before), str(r.n_samples_after))
    return (
        f"{r.method.capitalize()}d TRAIN_DATA {r.data} → {r.output} "
        f"(seed {r.seed})\n" + to_text(t) + _resample_kept(r) + f"note: {r.note}\n"
    )


def _resample_kept(r: ResampleReport) -> str:
    """What the rebalanced copy holds, by the format it was written in."""
    if r.format == "image-folder":
        how = (
            "symbolic links to the original images"
            if r.written_as == "links"
            else "copies of the original images"
        )
        return f"written as: {how}, in one subfolder per class\n"
    if r.columns is not None:
        cols = r.columns
        shown = ", ".join(cols[:20]) + (f", ... ({len(cols)} in all)" if len(cols) > 20 else "")
        how = "as text, byte for byte" if r.format == "csv" else "as stored"
        return f"columns kept ({how}): {shown}\n"
    if r.arrays is not None:
        return f"arrays kept aligned: {', '.join(r.arrays)}\n"
    return ""


def _ci(s: dict[str, Any]) -> str:
    ci = s.get("balanced_accuracy_ci95")
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def retrain_table(r: RetrainReport) -> str:
    """`fix --retrain`: per-class recall on rows never trained on, before and after."""
    before, after = r.before, r.after
    lr = "" if r.learning_rate is None else f", learning rate {r.learning_rate:.3g}"
    if r.eval_data:
        where = f"EVAL_DATA {r.eval_data} ({r.n_heldout} samples, never trained on)"
    else:
        share = r.validation_split
        part = "" if share is None else f"{100 * share:.0f}% "
        where = (
            f"Held-out part of TRAIN_DATA ({r.n_heldout} samples, a seeded stratified "
            f"{part}never trained on)"
        )
    t = _simple(
        f"{where}: before → after",
        [
            "class",
            "name",
            "support",
            "recall before",
            "recall after",
            "predicted before",
            "predicted after",
            "weight",
        ],
    )
    for pb, pa in zip(before.per_class, after.per_class):
        w = r.class_weight.get(str(pb.index))
        t.add_row(
            str(pb.index),
            pb.name,
            str(pb.support),
            _pct(pb.recall),
            _pct(pa.recall),
            str(pb.predicted),
            str(pa.predicted),
            "—" if w is None else f"{w:.3g}",
        )
    lines = [
        f"Fine-tuned {r.model} → {r.output}: {r.epochs} epoch(s) on {r.n_train} "
        f"samples of TRAIN_DATA {r.data}, balanced class weights, "
        f"{r.optimizer}{lr}, loss {r.loss}" + (" (from logits)" if r.loss_from_logits else ""),
        "",
        to_text(t).rstrip("\n"),
        f"balanced accuracy {_pct(before.balanced_accuracy)}{_interval(before)} → "
        f"{_pct(after.balanced_accuracy)}{_interval(after)} on {r.n_heldout} rows never "
        f"trained on · accuracy {_pct(before.accuracy)} → {_pct(after.accuracy)}",
    ]
    if before.effective_n:
        lines.append(
            f"[brackets]: {100 * r.interval.level:.0f}% Wilson interval at the effective "
            f"sample size K²/Σ(1/n_k) = {before.effective_n:.1f} rows"
        )
        bci, aci = before.balanced_accuracy_ci95, after.balanced_accuracy_ci95
        if bci and aci and max(bci[0], aci[0]) <= min(bci[1], aci[1]):
            lines.append(
                f"the two intervals overlap: {r.n_heldout} rows cannot tell the change "
                "from noise; measure on more data the model never saw"
            )
    bias = r.bias
    if bias.applied and bias.before is not None and bias.refit is not None:
        lines.append(
            f"output bias of '{bias.layer}' re-fitted for class-balanced training: "
            f"[{', '.join(f'{v:.3g}' for v in bias.before)}] → "
            f"[{', '.join(f'{v:.3g}' for v in bias.refit)}] (class-balanced loss "
            f"{bias.balanced_loss_before:.3f} → {bias.balanced_loss_refit:.3f})"
        )
    else:
        lines.append(f"output bias: {bias.reason}")
    for note in r.notes:
        lines.append(f"note: {note}")
    if r.heldout_file:
        lines.append(
            f"held-out rows: {r.n_heldout} of {r.data}, never trained on, listed in "
            f"{r.heldout_file}"
        )
    follow = r.follow_up
    if follow is not None and follow.spent:
        lines.append(f"note: {follow.spent}")
    if follow is not None and follow.command:
        lines.append(f"check it: {follow.command}")
        if follow.why:
            lines.append(f"  ({follow.why})")
    else:
        import shlex

        lines.append(
            f"check it: kerasdoctor diagnose {shlex.quote(r.output)} NEW_DATA (data it never saw)"
        )
    return "\n".join(lines) + "\n"
