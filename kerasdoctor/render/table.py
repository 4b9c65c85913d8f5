"""The terminal report: verdict and root cause first, then the per-class table and findings."""

from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kerasdoctor.findings import Finding, Report, Severity

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_CONFUSION = 20  # a wider confusion matrix is unreadable in a terminal; it stays in the JSON


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def evidence_line(f: Finding, limit: int = 6) -> str:
    """The evidence of a finding in one line: its scalar numbers."""
    parts = []
    for k, v in f.evidence.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        elif isinstance(v, (int, str, bool)) and not isinstance(v, bool):
            parts.append(f"{k}={v}")
        if len(parts) >= limit:
            break
    return ", ".join(parts)


def _header(r: Report) -> Any:
    m = r.metrics
    sick = r.verdict == "sick"
    lines = Text()
    lines.append("SICK" if sick else "HEALTHY", style="bold red" if sick else "bold green")
    lines.append(f"  {r.model.path}  on  {r.data.path}\n")
    n = r.data.n_samples
    k = r.data.n_classes
    sampled = r.data.sampled_from
    lines.append(f"{n} samples" + (f" (sampled from {sampled})" if sampled else ""))
    from kerasdoctor.render import words

    w = words(r)
    lines.append(f", {k} {w['classes']} · head {r.model.head} · loss {r.model.loss}\n")
    acc, base = m.accuracy, m.majority_baseline
    lines.append(f"{w['accuracy']} {_pct(acc)}  vs  {w['baseline']} {_pct(base)}")
    lines.append(f"  ·  {w['balanced']} {_pct(m.balanced_accuracy)}")
    root = r.root_cause
    if root is not None:
        lines.append("\n\nMost likely cause: ", style="bold")
        lines.append(root.id, style=SEVERITY_STYLE[root.severity])
        lines.append(f" — {root.title}\n")
        ev = evidence_line(root)
        if ev:
            lines.append(f"evidence: {ev}\n", style="dim")
        if len(r.chain) > 1:
            lines.append("chain: " + " → ".join(r.chain) + "\n")
        fix = next((fx for fx in root.fixes), None)
        if fix is not None:
            lines.append("fix: ", style="bold")
            lines.append(fix.command or fix.summary)
    elif r.findings:
        worst = max(r.findings, key=lambda f: f.severity.rank)
        lines.append(
            f"\n\n{len(r.findings)} finding(s); worst: {worst.id} ({worst.severity.value})"
        )
    else:
        lines.append("\n\nNo findings: the predictions cover the classes as the labels do.")
    return Panel(lines, title="kerasdoctor", box=box.ROUNDED, expand=False)


def _per_class(r: Report) -> Table:
    t = Table(title="Per class", box=box.SIMPLE_HEAVY, title_justify="left")
    for col, just in (
        ("class", "right"),
        ("name", "left"),
        ("support", "right"),
        ("predicted", "right"),
        ("recall", "right"),
        ("precision", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in r.metrics.per_class:
        missing = row.missing
        style = "bold red" if missing else None
        t.add_row(
            str(row.index),
            str(row.name),
            str(row.support),
            str(row.predicted) + (" (never)" if missing else ""),
            _pct(row.recall),
            _pct(row.precision),
            style=style,
        )
    return t


def _confusion(r: Report) -> Table | None:
    cm = r.metrics.confusion_matrix
    if not cm or len(cm) > MAX_CONFUSION:
        return None
    names = r.data.class_names or [str(i) for i in range(len(cm))]
    t = Table(
        title="Confusion matrix (rows: labels → columns: predicted)",
        box=box.SIMPLE,
        title_justify="left",
        min_width=52,
    )
    t.add_column("")
    for nm in names:
        t.add_column(str(nm)[:12], justify="right")
    for i, row in enumerate(cm):
        cells = [
            Text(str(v), style="bold green" if i == j and v else ("dim" if v == 0 else ""))
            for j, v in enumerate(row)
        ]
        t.add_row(str(names[i])[:16], *cells)
    return t


def _findings(r: Report) -> list[Any]:
    out: list[Any] = []
    for f in r.findings:
        body = Text()
        body.append(f"[{f.severity.value}] ", style=SEVERITY_STYLE[f.severity])
        body.append(f"{f.id}", style="bold")
        body.append(f" ({f.kind.value}) — {f.title}\n")
        body.append(f"{f.detail}\n")
        ev = evidence_line(f, limit=8)
        if ev:
            body.append(f"evidence: {ev}\n", style="dim")
        for fx in f.fixes:
            body.append("→ ", style="bold")
            body.append(fx.summary + "\n")
            if fx.command:
                body.append(f"    $ {fx.command}\n", style="green")
            if fx.code:
                for line in fx.code.rstrip().splitlines():
                    body.append(f"    {line}\n", style="green")
        out.append(body)
    for e in r.errors:
        out.append(Text(f"[crashed] {e.check_id}: {e.message}\n", style="bold magenta"))
    return out


def _masks(r: Report) -> Text | None:
    """issue 16: how a segmentation folder's masks became classes (data.masks)."""
    masks = r.data.masks
    if not masks:
        return None
    from kerasdoctor.seg_folder import mask_lines

    return Text("\n".join(mask_lines(masks)))


def report_renderable(r: Report) -> Group:
    parts: list[Any] = [_header(r)]
    masks = _masks(r)
    if masks is not None:
        parts.append(masks)
    parts.append(_per_class(r))
    cm = _confusion(r)
    if cm is not None:
        parts.append(cm)
    notes = r.model.notes
    if notes:
        parts.append(Text("notes: " + "; ".join(notes), style="dim"))
    if r.findings or r.errors:
        parts.append(Text("\nFindings", style="bold underline"))
        parts.extend(_findings(r))
    if r.ignored:
        parts.append(
            Text("ignored: " + "; ".join(f"{k} ({v})" for k, v in r.ignored.items()), style="dim")
        )
    return Group(*parts)


def render_table(r: Report, *, color: bool = True, width: int | None = None) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=color,
        color_system="auto" if color else None,
        width=width or 110,
        highlight=False,
        soft_wrap=False,
    )
    console.print(report_renderable(r))
    return buf.getvalue()
