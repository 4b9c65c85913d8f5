"""The Markdown report: compact, for a GitHub job summary ($GITHUB_STEP_SUMMARY) or a PR comment."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kerasdoctor.findings import Finding, Report, Severity, to_jsonable

ICON = {Severity.ERROR: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}
# A PR comment with a 1000-row table is unreadable: beyond this many classes the per-class
# table keeps the worst ones (never-predicted classes first, then the lowest recall).
MAX_CLASS_ROWS = 30
MAX_CONFUSION = 12  # wider confusion matrices stay in the JSON / HTML report

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~])")


def esc(text: Any) -> str:
    """Text that Markdown (and GitHub's HTML filter) shows literally, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def code(text: str) -> str:
    """An inline code span that survives backticks inside the text."""
    text = " ".join(text.split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def pct(v: Any) -> str:
    return "—" if v is None else f"{float(v):.1%}"


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def evidence_scalars(evidence: Mapping[str, Any], limit: int = 8) -> str:
    """The scalar numbers of a finding's evidence, `key=value` in code spans."""
    parts = []
    for k, v in evidence.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            parts.append(code(f"{k}={_num(v)}"))
        if len(parts) >= limit:
            break
    return " ".join(parts)


def compact_json(obj: Mapping[str, Any]) -> str:
    """Valid JSON, one line per key and one per record of a list of records: short to read."""
    items = list(obj.items())
    lines = ["{"]
    for i, (k, v) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            inner = ",\n".join(f"    {json.dumps(x, allow_nan=False)}" for x in v)
            lines.append(f"  {json.dumps(k)}: [\n{inner}\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}{comma}")
    lines.append("}")
    return "\n".join(lines)


def _details(summary: str, body: str) -> str:
    # a blank line after <summary> lets GitHub render the Markdown inside
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def _fixes(f: Finding) -> list[str]:
    out = []
    for fx in f.fixes:
        line = f"- **Fix:** {esc(fx.summary)}"
        if fx.command:
            line += f": {code(fx.command)}"
        out.append(line)
        if fx.code:
            out.append("")
            out.append("  " + code_block(fx.code, "python").replace("\n", "\n  "))
    return out


def _header(r: Report) -> list[str]:
    from kerasdoctor.render import words

    w = words(r)
    m, d = r.metrics, r.data
    sick = r.verdict == "sick"
    verdict = "🔴 **SICK**" if sick else "🟢 **HEALTHY**"
    lines = [
        f"## kerasdoctor: {verdict}",
        "",
        f"{code(str(r.model.path))} on {code(str(d.path))}: "
        f"{d.n_samples} samples"
        + (f" (sampled from {d.sampled_from})" if d.sampled_from else "")
        + f", {d.n_classes} {w['classes']}, head {code(str(r.model.head))}, "
        f"loss {code(str(r.model.loss))}",
        "",
        f"**{w['accuracy'].capitalize()} {pct(m.accuracy)}** vs {w['baseline']} "
        f"{pct(m.majority_baseline)} · {w['balanced']} "
        f"**{pct(m.balanced_accuracy)}**",
        "",
    ]
    root = r.root_cause
    if root is not None:
        lines += [
            f"### Most likely cause: {code(root.id)} ({root.severity.value})",
            "",
            f"{ICON[root.severity]} **{esc(root.title)}**",
            "",
            esc(root.detail),
            "",
        ]
        ev = evidence_scalars(root.evidence)
        if ev:
            lines += [f"- **Evidence:** {ev}"]
        lines += _fixes(root)
        lines.append("")
    elif r.findings:
        worst = max(r.findings, key=lambda f: f.severity.rank)
        lines += [
            f"{len(r.findings)} finding(s); the worst: {code(worst.id)} "
            f"({worst.severity.value}). No cause stands out.",
            "",
        ]
    else:
        lines += ["No findings: the predictions cover the classes as the labels do.", ""]
    if len(r.chain) > 1:
        lines += ["**Chain:** " + " → ".join(code(c) for c in r.chain), ""]
    return lines


def _per_class(r: Report) -> list[str]:
    rows = list(r.metrics.per_class)
    if not rows:
        return []
    note: list[str] = []
    if len(rows) > MAX_CLASS_ROWS:
        rows.sort(
            key=lambda c: (
                not c.missing,
                c.recall if c.recall is not None else 2.0,
                c.index,
            )
        )
        note = [
            "",
            f"_The {MAX_CLASS_ROWS} weakest of {len(rows)} classes; the full table is in the "
            "JSON and HTML reports._",
        ]
        rows = sorted(rows[:MAX_CLASS_ROWS], key=lambda c: c.index)
    out = [
        "### Per class",
        "",
        "| class | name | support | predicted | recall | precision |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in rows:
        predicted = "**0 — never predicted** ❌" if c.missing else str(c.predicted)
        out.append(
            f"| {c.index} | {esc(c.name)} | {c.support} | {predicted} | "
            f"{pct(c.recall)} | {pct(c.precision)} |"
        )
    return out + note


def _masks(r: Report) -> list[str]:
    """issue 16: how a segmentation folder's masks became classes (data.masks)."""
    masks = r.data.masks
    if not masks:
        return []
    from kerasdoctor.seg_folder import mask_lines

    head, *rows = mask_lines(masks)
    return (
        [f"**Masks:** {esc(head.removeprefix('masks: '))}", ""]
        + [f"- {esc(line.strip())}" for line in rows]
        + [""]
    )


def _confusion(r: Report) -> list[str]:
    cm = r.metrics.confusion_matrix
    if not cm or len(cm) > MAX_CONFUSION:
        return []
    names = r.data.class_names or [str(i) for i in range(len(cm))]
    head = "| label → predicted | " + " | ".join(esc(n) for n in names) + " |"
    sep = "|---|" + "---:|" * len(cm)
    body = [
        f"| **{esc(names[i])}** | "
        + " | ".join(f"**{v}**" if i == j else str(v) for j, v in enumerate(row))
        + " |"
        for i, row in enumerate(cm)
    ]
    return [
        _details(
            "Confusion matrix (rows: labels, columns: predictions)", "\n".join([head, sep, *body])
        )
    ]


def _finding(f: Finding) -> list[str]:
    out = [
        f"#### {ICON[f.severity]} {code(f.id)} ({f.kind.value}, {f.severity.value}): "
        f"{esc(f.title)}",
        "",
        esc(f.detail),
        "",
    ]
    ev = evidence_scalars(f.evidence)
    if ev:
        out.append(f"- **Evidence:** {ev}")
    out += _fixes(f)
    if any(
        not isinstance(v, (int, float, str, bool)) and v is not None for v in f.evidence.values()
    ):
        full = compact_json(to_jsonable(dict(f.evidence)))
        out += ["", _details("All evidence", code_block(full, "json"))]
    out.append("")
    return out


def render_markdown(report: Report) -> str:
    """The whole report as GitHub-flavoured Markdown."""
    r = report
    lines = _header(r)
    lines += _masks(r)
    lines += _per_class(r)
    lines.append("")
    cm = _confusion(r)
    if cm:
        lines += cm + [""]
    if r.findings:
        lines += ["### Findings", "", "| | id | kind | finding |", "|---|---|---|---|"]
        for f in r.findings:
            lines.append(
                f"| {ICON[f.severity]} {f.severity.value} | {code(f.id)} | {f.kind.value} | "
                f"{esc(f.title)} |"
            )
        lines.append("")
        for f in r.findings:
            if f is r.root_cause:  # told in full at the top already
                lines += [
                    f"#### {ICON[f.severity]} {code(f.id)} ({f.kind.value}, {f.severity.value}): "
                    "the most likely cause, above",
                    "",
                ]
                continue
            lines += _finding(f)
    if r.errors:
        lines += ["### Checks that crashed", ""]
        lines += [f"- 💥 {code(e.check_id)}: {esc(e.message)}" for e in r.errors]
        lines += ["", "_kerasdoctor itself failed on these checks (exit code 3)._", ""]
    if r.ignored:
        lines += ["### Ignored checks", ""]
        lines += [f"- {code(cid)}: {esc(reason)}" for cid, reason in r.ignored.items()]
        lines.append("")
    notes = r.model.notes
    if notes:
        lines += ["_Notes: " + esc("; ".join(str(n) for n in notes)) + "_", ""]
    lines.append(f"<sub>kerasdoctor {esc(r.version)}</sub>")
    return "\n".join(lines).rstrip() + "\n"
