"""The HTML report: one self-contained page (inline CSS, plots as base64 PNG, no network).

render_html(report) is a whole document for --format html; standalone=False returns an
embeddable fragment for Jupyter (Report._repr_html_). Plots are drawn with matplotlib's
object API on an Agg canvas, so a notebook's own pyplot backend is never touched.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from kerasdoctor.findings import Finding, Report, Severity, to_jsonable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kerasdoctor.sections import InputSummary

SEVERITY_COLOR = {Severity.ERROR: "#c62828", Severity.WARNING: "#e08a00", Severity.INFO: "#0969da"}
# Beyond these many classes, labels and per-cell numbers no longer fit a plot: draw without.
MAX_TICK_CLASSES = 40
MAX_ANNOTATED_CELLS = 15
MAX_INPUT_PLOTS = 8  # inputs beyond this are listed in the table only
DPI = 100

CSS = """
.kd { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1b1f24; line-height: 1.45; max-width: 1180px; margin: 0 auto; padding: 8px 16px; }
.kd h1 { font-size: 1.6em; margin: 0.3em 0; }
.kd h2 { font-size: 1.25em; margin: 1.4em 0 0.5em; border-bottom: 1px solid #d0d7de;
  padding-bottom: 0.2em; }
.kd h3 { font-size: 1.05em; margin: 0.2em 0 0.4em; }
.kd .badge { display: inline-block; padding: 0.1em 0.6em; border-radius: 1em; color: #fff;
  font-weight: 700; font-size: 0.85em; vertical-align: middle; }
.kd .sick { background: #c62828; } .kd .healthy { background: #1a7f37; }
.kd .error { background: #c62828; } .kd .warning { background: #e08a00; }
.kd .info { background: #0969da; }
.kd .meta { color: #57606a; }
.kd .cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.kd .card { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; min-width: 150px; }
.kd .card .v { font-size: 1.5em; font-weight: 700; }
.kd .card .k { color: #57606a; font-size: 0.85em; }
.kd .root { border-left: 6px solid #c62828; background: #fff5f5; padding: 10px 16px;
  border-radius: 4px; margin: 12px 0; }
.kd .root.calm { border-left-color: #1a7f37; background: #f3faf3; }
.kd .chain code { background: #eef1f4; }
.kd .plots { display: grid; grid-auto-flow: dense;
  grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
  gap: 16px; }
.kd figure { margin: 0; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px; }
.kd figure.wide { grid-column: 1 / -1; }
.kd figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.kd figcaption { color: #57606a; font-size: 0.85em; margin-top: 4px; }
.kd table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
.kd th, .kd td { border: 1px solid #d0d7de; padding: 3px 9px; text-align: right; }
.kd th { background: #f6f8fa; }
.kd td.l, .kd th.l { text-align: left; }
.kd tr.missing td { background: #ffebee; color: #b71c1c; font-weight: 600; }
.kd .finding { border: 1px solid #d0d7de; border-left-width: 6px; border-radius: 6px;
  padding: 8px 14px; margin: 10px 0; }
.kd .finding .id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-weight: 700; }
.kd pre { background: #f6f8fa; border-radius: 6px; padding: 8px 10px; overflow-x: auto;
  font-size: 0.88em; margin: 4px 0; }
.kd pre.wrap { white-space: pre-wrap; word-break: break-word; max-width: 900px; }
.kd .scroll { overflow-x: auto; max-width: 100%; }
.kd code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.kd ul.fixes { margin: 4px 0; padding-left: 1.2em; }
.kd details summary { cursor: pointer; color: #57606a; }
.kd footer { color: #8c959f; font-size: 0.8em; margin: 24px 0 8px; }
"""


# ------------------------------------------------------------------ plots


def _png(fig: Figure) -> str:
    """A figure as a base64 PNG data URI (drawn on an Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _names(r: Report, k: int) -> list[str]:
    names = list(r.data.class_names)
    return [str(names[i]) if i < len(names) else str(i) for i in range(k)]


def _tick_labels(ax: Any, axis: str, names: Sequence[str]) -> None:
    k = len(names)
    if k > MAX_TICK_CLASSES:
        return
    labels = [n if len(n) <= 14 else n[:13] + "…" for n in names]
    rotate = 45 if k > 6 or max((len(n) for n in labels), default=0) > 8 else 0
    if axis == "x":
        ax.set_xticks(range(k))
        ax.set_xticklabels(labels, rotation=rotate, ha="right" if rotate else "center")
    else:
        ax.set_yticks(range(k))
        ax.set_yticklabels(labels)


def plot_confusion(r: Report) -> str | None:
    import numpy as np
    from matplotlib.figure import Figure

    cm = np.asarray(r.metrics.confusion_matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.size == 0:
        return None
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = 4.6 + min(k, 20) * 0.18
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the label's samples")
    names = _names(r, k)
    _tick_labels(ax, "x", names)
    _tick_labels(ax, "y", names)
    if k <= MAX_ANNOTATED_CELLS:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=10 if k <= 6 else 7,
                    color="white" if share[i, j] > 0.55 else "#1b1f24",
                    fontweight="bold" if i == j else "normal",
                )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix (counts; colour = share of each row)")
    return _png(fig)


def plot_recall_support(r: Report) -> str | None:
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    per = list(r.metrics.per_class)
    if not per:
        return None
    k = len(per)
    recall = np.array([np.nan if c.recall is None else c.recall for c in per], dtype=float)
    support = np.array([c.support for c in per], dtype=float)
    missing = np.array([c.missing for c in per])
    colors = np.where(missing, "#c62828", np.where(recall < 0.5, "#e08a00", "#2e7d32"))
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot()
    if k <= MAX_TICK_CLASSES:
        x = np.arange(k)
        ax.bar(x, np.nan_to_num(recall), color=colors, width=0.6, label="recall")
        for i in range(k):
            if missing[i]:
                ax.text(
                    i,
                    0.02,
                    "never\npredicted",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#c62828",
                    fontweight="bold",
                )
        ax.set_ylim(0, 1.3)  # headroom for the legend
        ax.set_ylabel("recall")
        _tick_labels(ax, "x", _names(r, k))
        ax2 = ax.twinx()
        ax2.plot(x, support, "o", color="#1b1f24", label="support (right axis)")
        ax2.set_ylabel("support (samples with this label)")
        ax2.set_ylim(0, max(float(support.max()), 1.0) * 1.3)
        handles = [
            Patch(color="#2e7d32", label="recall"),
            Patch(color="#e08a00", label="recall < 50%"),
            Patch(color="#c62828", label="never predicted"),
            *ax2.get_legend_handles_labels()[0],
        ]
        ax.legend(handles=handles, loc="upper right", fontsize=8, ncol=2)
        ax.set_xlabel("class")
    else:  # many classes: each class a point, rare classes on the left
        ax.scatter(support, np.nan_to_num(recall), c=list(colors), s=14, alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("support (samples with this label, log scale)")
        ax.set_ylabel("recall")
        ax.set_ylim(-0.03, 1.05)
    ax.set_title("Per-class recall against support (red: never predicted)")
    return _png(fig)


def plot_distributions(r: Report) -> str | None:
    import numpy as np
    from matplotlib.figure import Figure

    per = list(r.metrics.per_class)
    if not per:
        return None
    k = len(per)
    labels = np.array([c.support for c in per], dtype=float)
    preds = np.array([c.predicted for c in per], dtype=float)
    n = max(labels.sum(), 1.0)
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot()
    if k <= MAX_TICK_CLASSES:
        x = np.arange(k)
        ax.bar(x - 0.2, labels / n, width=0.4, color="#8c959f", label="labels")
        ax.bar(x + 0.2, preds / n, width=0.4, color="#1565c0", label="predictions")
        _tick_labels(ax, "x", _names(r, k))
        ax.set_xlabel("class")
    else:  # many classes: classes ordered by label frequency, both shares as lines
        order = np.argsort(-labels, kind="stable")
        ax.plot(labels[order] / n, color="#8c959f", label="labels")
        ax.plot(preds[order] / n, color="#1565c0", label="predictions", alpha=0.8)
        ax.set_xlabel("classes, most frequent label first")
    ax.set_ylabel("share of samples")
    ax.set_ylim(0, max(float(labels.max()), float(preds.max()), 1.0) / n * 1.25)
    ax.legend(fontsize=8)
    ax.set_title("Predicted-class distribution against the label distribution")
    return _png(fig)


def plot_input(info: InputSummary) -> str | None:
    """The values of one input (histogram) and, per feature, its typical magnitude."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    hist = info.histogram
    rms = [np.nan if v is None else float(v) for v in info.feature_rms or ()]
    if hist is None and not rms:
        return None
    two = len(rms) > 1
    fig = Figure(figsize=(9.0 if two else 6.0, 3.6))
    ax = fig.add_subplot(1, 2 if two else 1, 1)
    name = str(info.name)
    if hist is not None:
        counts = np.asarray(hist.counts, dtype=float)
        edges = np.linspace(hist.lo, hist.hi, counts.size + 1)
        ax.stairs(counts, edges, fill=True, color="#1565c0", alpha=0.8)
        if np.any(counts > 0):
            ax.set_yscale("log")
        lo, hi = float(hist.lo), float(hist.hi)
        # the range a network expects: the eye compares it with the data's at once
        if hi > -1.0 and lo < 1.0:
            ax.axvspan(
                max(-1.0, lo),
                min(1.0, hi),
                color="#2e7d32",
                alpha=0.15,
                label="[-1, 1]: unit scale",
            )
            ax.legend(fontsize=8, loc="upper right")
        ax.set_xlabel(f"value (range {lo:.4g} … {hi:.4g})")
        ax.set_ylabel("count (log)")
        mean, std = info.mean, info.std
        stats = (
            f"mean {mean:.3g}, std {std:.3g}"
            if isinstance(mean, (int, float)) and isinstance(std, (int, float))
            else ""
        )
        ax.set_title(f"{name}: values ({stats})", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{name}: values", fontsize=10)
    if two:
        ax2 = fig.add_subplot(1, 2, 2)
        arr = np.asarray(rms, dtype=float)
        shown = np.where(np.isfinite(arr) & (arr > 0), arr, np.nan)
        ax2.bar(np.arange(arr.size), shown, color="#6a1b9a", width=0.8)
        seen = shown[np.isfinite(shown)]
        top = float(seen.max()) if seen.size else 1.0
        if seen.size and (top / float(seen.min()) > 20 or top > 20):  # log shows decades
            ax2.set_yscale("log")
            ax2.set_ylabel("RMS (log)")
        else:
            ax2.set_ylim(0, max(1.2, top * 1.15))
            ax2.set_ylabel("RMS")
        ax2.axhline(1.0, color="#2e7d32", linestyle="--", linewidth=1, label="1: unit scale")
        ax2.legend(fontsize=8)
        total = int(info.n_features or arr.size)
        more = f" (first {arr.size} of {total})" if total > arr.size else ""
        ax2.set_xlabel(f"feature (last axis){more}")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_title(f"{name}: typical magnitude per feature", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------ HTML pieces


def _e(v: Any) -> str:
    return escape(str(v), quote=True)


def _pct(v: Any) -> str:
    return "—" if v is None else f"{float(v):.1%}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


MAX_EVIDENCE_ITEMS = 24  # longer lists are cut (the JSON report holds them whole)


def _value_html(v: Any) -> str:
    """One evidence value, compact: scalars inline, lists of records as a small table."""
    records = isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
    flat = records and all(
        not isinstance(val, (list, dict)) for x in v[:MAX_EVIDENCE_ITEMS] for val in x.values()
    )
    if records and not flat:  # nested records: one compact JSON line each, wrapped
        lines = "\n".join(json.dumps(x) for x in v[:MAX_EVIDENCE_ITEMS])
        more = len(v) - MAX_EVIDENCE_ITEMS
        tail = f"\n… and {more} more" if more > 0 else ""
        return f'<pre class="wrap">{_e(lines + tail)}</pre>'
    if records:
        keys = list(dict.fromkeys(k for x in v[:MAX_EVIDENCE_ITEMS] for k in x))
        head = "".join(f'<th class="l">{_e(k)}</th>' for k in keys)
        body = "".join(
            "<tr>" + "".join(f'<td class="l">{_e(_fmt(x.get(k, "")))}</td>' for k in keys) + "</tr>"
            for x in v[:MAX_EVIDENCE_ITEMS]
        )
        more = len(v) - MAX_EVIDENCE_ITEMS
        tail = f'<div class="meta">… and {more} more</div>' if more > 0 else ""
        return f"<table><tr>{head}</tr>{body}</table>{tail}"
    if isinstance(v, list):
        shown = ", ".join(_fmt(x) for x in v[:MAX_EVIDENCE_ITEMS])
        cut = f", … ({len(v) - MAX_EVIDENCE_ITEMS} more)" if len(v) > MAX_EVIDENCE_ITEMS else ""
        return f"<code>[{_e(shown)}{_e(cut)}]</code>"
    if isinstance(v, dict):
        return f"<code>{_e(json.dumps(v))}</code>"
    return f"<code>{_e(_fmt(v))}</code>"


def _evidence(evidence: Mapping[str, Any]) -> str:
    if not evidence:
        return ""
    rows = [
        f'<tr><th class="l">{_e(k)}</th><td class="l">{_value_html(v)}</td></tr>'
        for k, v in to_jsonable(dict(evidence)).items()
    ]
    return (
        '<details open><summary>evidence</summary><div class="scroll"><table>'
        + "".join(rows)
        + "</table></div></details>"
    )


def _fixes(f: Finding) -> str:
    if not f.fixes:
        return ""
    items = []
    for fx in f.fixes:
        item = _e(fx.summary)
        if fx.command:
            item += f"<pre><code>$ {_e(fx.command)}</code></pre>"
        if fx.code:
            item += f"<pre><code>{_e(fx.code.rstrip())}</code></pre>"
        items.append(f"<li>{item}</li>")
    return '<div><b>Fix</b><ul class="fixes">' + "".join(items) + "</ul></div>"


def _finding(f: Finding) -> str:
    color = SEVERITY_COLOR[f.severity]
    return (
        f'<div class="finding" id="finding-{_e(f.id)}" style="border-left-color:{color}">'
        f'<h3><span class="badge {f.severity.value}">{f.severity.value}</span> '
        f'<span class="id">{_e(f.id)}</span> <span class="meta">({f.kind.value})</span> '
        f"— {_e(f.title)}</h3>"
        f"<p>{_e(f.detail)}</p>{_evidence(f.evidence)}{_fixes(f)}</div>"
    )


def _header(r: Report) -> str:
    from kerasdoctor.render import words

    w = words(r)
    m, d = r.metrics, r.data
    sick = r.verdict == "sick"
    sampled = f" (sampled from {d.sampled_from})" if d.sampled_from else ""
    parts = [
        f'<h1>kerasdoctor <span class="badge {"sick" if sick else "healthy"}">'
        f"{'SICK' if sick else 'HEALTHY'}</span></h1>",
        f'<p class="meta"><code>{_e(r.model.path)}</code> on '
        f"<code>{_e(d.path)}</code> · head <code>{_e(r.model.head)}</code> · "
        f"loss <code>{_e(r.model.loss)}</code></p>",
        '<div class="cards">',
    ]
    for value, label in (
        (_pct(m.accuracy), w["accuracy"]),
        (_pct(m.majority_baseline), w["baseline"]),
        (_pct(m.balanced_accuracy), w["balanced"]),
        (f"{d.n_samples}{sampled}", "samples"),
        (str(d.n_classes), w["classes"]),
    ):
        parts.append(
            f'<div class="card"><div class="v">{_e(value)}</div>'
            f'<div class="k">{_e(label)}</div></div>'
        )
    parts.append("</div>")
    root = r.root_cause
    if root is not None:
        fix = root.fixes[0] if root.fixes else None
        fix_html = ""
        if fix is not None:
            fix_html = f"<p><b>Fix:</b> {_e(fix.summary)}</p>"
            if fix.command:
                fix_html += f"<pre><code>$ {_e(fix.command)}</code></pre>"
            if fix.code:
                fix_html += f"<pre><code>{_e(fix.code.rstrip())}</code></pre>"
        parts.append(
            '<div class="root"><h2 style="border:0;margin-top:0">Most likely cause: '
            f'<span class="id"><code>{_e(root.id)}</code></span></h2>'
            f"<h3>{_e(root.title)}</h3><p>{_e(root.detail)}</p>"
            f"{_evidence(root.evidence)}{fix_html}</div>"
        )
    elif r.findings:
        worst = max(r.findings, key=lambda f: f.severity.rank)
        parts.append(
            f'<div class="root{"" if sick else " calm"}"><p>{len(r.findings)} finding(s); the '
            f"worst: <code>{_e(worst.id)}</code> ({worst.severity.value}): {_e(worst.title)}. "
            "No cause stands out.</p></div>"
        )
    else:
        parts.append(
            '<div class="root calm"><p>No findings: the predictions cover the classes as the '
            "labels do.</p></div>"
        )
    if len(r.chain) > 1:
        chain = " → ".join(f"<code>{_e(c)}</code>" for c in r.chain)
        parts.append(f'<p class="chain"><b>Chain:</b> {chain}</p>')
    return "".join(parts)


def _per_class_table(r: Report) -> str:
    rows = []
    for c in r.metrics.per_class:
        missing = c.missing
        rows.append(
            ("<tr class='missing'>" if missing else "<tr>") + f"<td>{c.index}</td>"
            f'<td class="l">{_e(c.name)}</td><td>{c.support}</td>'
            f"<td>{c.predicted}{' (never)' if missing else ''}</td>"
            f"<td>{_pct(c.recall)}</td><td>{_pct(c.precision)}</td></tr>"
        )
    head = (
        '<tr><th>class</th><th class="l">name</th><th>support</th><th>predicted</th>'
        "<th>recall</th><th>precision</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _inputs_table(r: Report) -> str:
    rows = []
    for i in r.data.inputs:
        rows.append(
            f'<tr><td class="l"><code>{_e(i.name)}</code></td>'
            f'<td class="l">{_e(list(i.shape))}</td><td class="l">{_e(i.dtype)}</td>'
            + "".join(f"<td>{_e(_fmt(v))}</td>" for v in (i.mean, i.std, i.min, i.max))
            + "</tr>"
        )
    head = (
        '<tr><th class="l">input</th><th class="l">shape</th><th class="l">dtype</th>'
        "<th>mean</th><th>std</th><th>min</th><th>max</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


@dataclass(frozen=True)
class Plot:
    """One embedded plot of the page."""

    kind: str  # confusion, recall-support, distribution, input:NAME
    uri: str | None  # a data: URI, None when there is nothing to draw
    alt: str
    caption: str
    wide: bool = False  # spans the page's width (an input's two panels)

    def html(self) -> str:
        if self.uri is None:
            return ""
        wide = ' class="wide"' if self.wide else ""
        return (
            f'<figure{wide} data-plot="{_e(self.kind)}"><img src="{self.uri}" '
            f'alt="{_e(self.alt)}"><figcaption>{_e(self.caption)}</figcaption></figure>'
        )


def plots(r: Report) -> list[Plot]:
    """Every plot of the report, in page order."""
    out = [
        Plot(
            "confusion",
            plot_confusion(r),
            "confusion matrix heatmap",
            "Rows are the true labels, columns the predictions; a healthy model is dark on "
            "the diagonal. A single dark column is a collapse onto that class.",
        ),
        Plot(
            "recall-support",
            plot_recall_support(r),
            "per-class recall against support",
            "Recall of each class next to how many samples carry its label: dropped classes "
            "that are also the rare ones point to class imbalance.",
        ),
        Plot(
            "distribution",
            plot_distributions(r),
            "predicted-class distribution against label distribution",
            "How often each class is predicted next to how often it is the label; the two "
            "bars of a class should be about equal.",
        ),
    ]
    for info in r.data.inputs[:MAX_INPUT_PLOTS]:
        out.append(
            Plot(
                f"input:{info.name}",
                plot_input(info),
                f"value histogram of input {info.name}",
                "Values of this input (histogram over the whole data's range, from a bounded "
                "sample) and each feature's typical magnitude; networks train best near unit "
                "scale (green).",
                wide=len(info.feature_rms or ()) > 1,
            )
        )
    return out


# ------------------------------------------------------------------ dense: sample masks

# Class i is drawn in MASK_PALETTE[i] (no grey among them: grey is void); classes beyond it get
# hues spaced by the golden ratio. Fixed, so a class has the same colour in every report.
MASK_PALETTE = (
    "#000000",
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
)
VOID_COLOR = "#9e9e9e"  # positions that do not count (the mask, --ignore-label)
SAMPLE_PX = 168  # CSS width of each drawn image; small masks are scaled up, pixelated
MAX_LEGEND = 24  # beyond this many classes the legend names those in the drawn masks only


def mask_colors(k: int) -> list[str]:
    """The fixed colour of each of k classes."""
    import colorsys

    out = list(MASK_PALETTE[:k])
    for i in range(len(out), k):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.7, 0.9)
        out.append(_hex((round(r * 255), round(g * 255), round(b * 255))))
    return out


def _hex(rgb: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _rgb_bytes(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _png_array(rgb: Any) -> str:
    """An (h, w, 3) uint8 array as a base64 PNG data URI."""
    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, rgb, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mask_png(classes: Any, void: Any, colors: Sequence[str]) -> str:
    """Class indices (h, w) drawn in their colours, void positions grey, as a PNG data URI."""
    import numpy as np

    lut = np.array([_rgb_bytes(c) for c in colors], dtype=np.uint8)
    idx = np.clip(np.asarray(classes, dtype=np.int64), 0, len(lut) - 1)
    rgb = lut[idx]
    rgb[np.asarray(void, dtype=bool)] = _rgb_bytes(VOID_COLOR)
    return _png_array(rgb)


def _sample_img(uri: str, kind: str, alt: str) -> str:
    return (
        f'<img data-mask="{_e(kind)}" src="{uri}" alt="{_e(alt)}" '
        f'style="width:{SAMPLE_PX}px;height:auto;display:block;'
        'image-rendering:pixelated">'
    )


def _swatch(color: str) -> str:
    return (
        f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{color};'
        'border:1px solid #57606a;vertical-align:-0.1em;margin-right:0.3em"></span>'
    )


def _samples_section(r: Report) -> str:
    """Sample inputs with their true and predicted masks (a dense report of image-like data);
    "" for every other report."""
    samples = tuple(getattr(r, "samples", ()) or ())
    if not samples:
        return ""
    k = int(r.data.n_classes or 0)
    names = _names(r, k)
    colors = mask_colors(k)
    majority = r.metrics.majority_class
    major = names[majority] if isinstance(majority, int) and 0 <= majority < k else "?"
    shown = set(range(k))
    if k > MAX_LEGEND:
        import numpy as np

        shown = {
            int(c)
            for s in samples
            for c in np.unique(np.concatenate([np.ravel(s.true[~s.void]), np.ravel(s.pred)]))
        }
    legend = " ".join(
        f'<span class="meta" style="white-space:nowrap;margin-right:0.8em">{_swatch(colors[i])}'
        f"{_e(names[i])}{' (majority)' if i == majority else ''}</span>"
        for i in sorted(shown)
        if i < k
    )
    if any(bool(s.void.any()) for s in samples):
        legend += (
            f' <span class="meta" style="white-space:nowrap">{_swatch(VOID_COLOR)}'
            "void / not counted</span>"
        )
    has_image = any(s.image is not None for s in samples)
    head = (
        '<tr><th class="l">sample</th>'
        + ('<th class="l">input</th>' if has_image else "")
        + '<th class="l">true mask</th><th class="l">predicted mask</th></tr>'
    )
    rows = []
    for s in samples:
        lost = (
            f"foreground lost: {s.lost:,} of {s.foreground:,} px ({s.lost / s.foreground:.0%})"
            if s.foreground
            else "no foreground"
        )
        why = "worst" if s.why == "worst" else "picked by seed"
        acc = "" if s.accuracy is None else f"<br>accuracy {s.accuracy:.1%}"
        cells = [
            f'<td class="l" style="vertical-align:top"><b>#{s.row}</b> ({why})<br>'
            f"{_e(lost)}{acc}</td>"
        ]
        if has_image:
            cells.append(
                "<td>"
                + (
                    _sample_img(_png_array(s.image), "input", f"input of sample {s.row}")
                    if s.image is not None
                    else "—"
                )
                + "</td>"
            )
        cells.append(
            "<td>"
            + _sample_img(mask_png(s.true, s.void, colors), "true", f"true mask of sample {s.row}")
            + "</td>"
        )
        cells.append(
            "<td>"
            + _sample_img(
                mask_png(s.pred, s.void, colors), "pred", f"predicted mask of sample {s.row}"
            )
            + "</td>"
        )
        rows.append(f'<tr data-sample="{s.row}">{"".join(cells)}</tr>')
    stride = max(s.stride for s in samples)
    scale = f"; drawn at 1/{stride} resolution" if stride > 1 else ""
    return (
        f'<h2>Samples</h2><p class="meta">The samples that lose the largest share of their '
        f"foreground to the majority class ({_e(major)}), then samples picked by the seed"
        f"{scale}.</p><p>{legend}</p>"
        f'<div class="scroll"><table data-samples="{len(samples)}">{head}{"".join(rows)}'
        "</table></div>"
    )


def _mask_value(value: Any, color: Any, kind: Any) -> str:
    """A mask value of data.masks: a colour with its swatch, a palette index, a grey value."""

    def hexed(v: Any) -> str | None:
        if isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(c, int) for c in v):
            return _hex([max(0, min(255, c)) for c in v])
        return None

    if value is None:
        return '<span class="meta">in no mask</span>'
    rgb = hexed(value)
    if rgb is not None:
        return f"{_swatch(rgb)}<code>{_e(rgb)}</code> {_e(tuple(value))}"
    swatch = hexed(color)
    what = "index" if kind == "palette" else "value"
    return (_swatch(swatch) if swatch else "") + f"{what} <code>{_e(value)}</code>"


def _masks_section(r: Report) -> str:
    """How the segmentation folder's mask files became classes (data.masks); "" without."""
    m = r.data.masks
    if m is None:
        return ""
    kind = m.kind
    rows = []
    for c in m.classes:
        rows.append(
            f'<tr><td>{_e(c.index)}</td><td class="l">{_e(c.name)}</td>'
            f'<td class="l">{_mask_value(c.value, c.color, kind)}</td>'
            f"<td>{_e(f'{c.pixels:,}')}</td></tr>"
        )
    void = m.void
    if void is not None:
        rows.append(
            f'<tr><td>—</td><td class="l">void (not counted)</td>'
            f'<td class="l">{_mask_value(void, None, kind)}</td>'
            f"<td>{_e(f'{m.void_pixels:,}')}</td></tr>"
        )
    matched, pairs = m.matched, m.pairs
    of = f" (a sample of {pairs})" if pairs != matched else ""
    rule = f" · {_e(m.rule)}" if m.rule else ""
    head = (
        '<tr><th>class</th><th class="l">name</th><th class="l">mask value</th><th>pixels</th></tr>'
    )
    return (
        f'<h2>Mask files</h2><p class="meta"><code>{_e(m.dir)}/</code>: '
        f"{_e(matched)} mask(s) matched to their images{_e(of)} · {_e(kind)} masks{rule}</p>"
        f'<table data-masks="{_e(kind)}">{head}{"".join(rows)}</table>'
    )


def render_html(report: Report, *, standalone: bool = True) -> str:
    """The report as one self-contained HTML page, or (standalone=False) a fragment."""
    r = report
    body = [_header(r)]
    figures = "".join(p.html() for p in plots(r))
    body.append(f'<h2>Plots</h2><div class="plots">{figures}</div>')
    body.append(_samples_section(r))  # dense reports of images only
    body.append(_masks_section(r))  # segmentation folders only
    body.append("<h2>Per class</h2>" + _per_class_table(r))
    if r.findings:
        body.append("<h2>Findings</h2>" + "".join(_finding(f) for f in r.findings))
    if r.errors:
        items = "".join(
            f"<li><code>{_e(e.check_id)}</code>: {_e(e.message)}</li>" for e in r.errors
        )
        body.append(
            "<h2>Checks that crashed</h2><p>kerasdoctor itself failed on these checks "
            f"(exit code 3); the others ran.</p><ul>{items}</ul>"
        )
    if r.ignored:
        items = "".join(
            f"<li><code>{_e(cid)}</code>: {_e(reason)}</li>" for cid, reason in r.ignored.items()
        )
        body.append(f"<h2>Ignored checks</h2><ul>{items}</ul>")
    body.append("<h2>Inputs</h2>" + _inputs_table(r))
    notes = r.model.notes
    if notes:
        body.append(f'<p class="meta">Notes: {_e("; ".join(str(n) for n in notes))}</p>')
    body.append(f"<footer>kerasdoctor {_e(r.version)}</footer>")
    if not standalone:  # a notebook cell: the style travels inside the fragment
        return f'<div class="kd"><style>{CSS}</style>{"".join(body)}</div>'
    title = f"kerasdoctor: {r.verdict} — {r.model.path}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f'<body style="margin:0;background:#fff"><div class="kd">{"".join(body)}</div>'
        "</body></html>\n"
    )
