"""The finding catalogue as markdown, generated from the registry: `python -m
kerasdoctor.catalogue > docs/checks.md` (a test keeps the shipped file equal to this)."""

from __future__ import annotations


def markdown() -> str:
    """Every check: kind, what it means, how it is measured, its thresholds, its edges, fix."""
    from kerasdoctor.checks import registry
    from kerasdoctor.checks.base import OUTPUT, PREDICTIONS

    groups = {PREDICTIONS: "any wrong-prediction symptom", OUTPUT: "the output's own symptoms"}
    lines = [
        "# Finding catalogue",
        "",
        "Generated from the check registry (`python -m kerasdoctor.catalogue > docs/checks.md`);"
        " `kerasdoctor explain ID` prints the same for one id. Symptoms describe what the "
        "predictions show; causes say why, and carry the fixes.",
        "",
        "| id | kind | summary |",
        "|---|---|---|",
    ]
    checks = registry()
    for c in checks:
        lines.append(f"| [`{c.spec.id}`](#{c.spec.id}) | {c.spec.kind.value} | {c.spec.summary} |")
    for c in checks:
        sp = c.spec
        lines += ["", f"## {sp.id}", "", f"*{sp.kind.value}.* {sp.summary}", "",
                  f"**How it is measured.** {sp.measures}", ""]
        if sp.thresholds:
            lines.append("**Thresholds** (override in `[tool.kerasdoctor.thresholds."
                         f"{sp.id}]`):")
            lines.append("")
            lines += [f"- `{name} = {t.value:g}`: {t.why}" for name, t in sp.thresholds.items()]
            lines.append("")
        if sp.explains:
            named = sorted(groups.get(e, f"`{e}`") for e in sp.explains)
            lines += [f"**Explains:** {', '.join(named)}.", ""]
        if sp.subsumes:
            located = ", ".join(f"`{e}`" for e in sorted(sp.subsumes))
            lines += [f"**Locates more precisely:** {located}.", ""]
        lines.append(f"**How to fix it.** {sp.fix}")
        if sp.repair:
            lines += ["", f"**Repair without retraining** (`kerasdoctor fix --repair`): "
                      f"{sp.repair}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown())
