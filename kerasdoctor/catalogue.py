"""The finding catalogue, generated from the registry: as markdown (`python -m
kerasdoctor.catalogue > docs/checks.md`), as the one-line list of `kerasdoctor checks`, and as
that list in the README (`python -m kerasdoctor.catalogue --readme` rewrites its block). Tests
keep the shipped files equal to these, so adding a check means its module and its tests."""

from __future__ import annotations

from pathlib import Path

# The README's catalogue: the fenced block after this sentence start.
README_MARKER = "The catalogue (`kerasdoctor checks`)"


def one_line_list() -> list[str]:
    """`kerasdoctor checks`: id, kind and summary of every check, in catalogue order."""
    from kerasdoctor.checks import registry

    return [f"{c.spec.id:<24} {c.spec.kind.value:<8} {c.spec.summary}" for c in registry()]


def readme_with_catalogue(text: str) -> str:
    """The README text with its catalogue block replaced by one_line_list()."""
    head, sep, rest = text.partition(README_MARKER)
    if not sep:
        raise ValueError(f"the README has no '{README_MARKER}' paragraph")
    intro, fence, block = rest.partition("```text\n")
    _, end, tail = block.partition("```")
    if not fence or not end:
        raise ValueError("the README's catalogue paragraph is not followed by a ```text block")
    return head + sep + intro + fence + "\n".join(one_line_list()) + "\n" + end + tail


def markdown() -> str:
    """Every check: kind, what it means, how it is measured, its thresholds, its edges, fix."""
    from kerasdoctor.checks import registry
    from kerasdoctor.checks.base import OUTPUT, PREDICTIONS, SINGLE_LABEL

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
        lines += [
            "",
            f"## {sp.id}",
            "",
            f"*{sp.kind.value}.* {sp.summary}",
            "",
            f"**How it is measured.** {sp.measures}",
            "",
        ]
        if sp.thresholds:
            lines.append(f"**Thresholds** (override in `[tool.kerasdoctor.thresholds.{sp.id}]`):")
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
        if sp.tasks != {SINGLE_LABEL}:
            lines += ["", f"**Diagnosed for:** {sp.task_names()} models."]
        if sp.repair:
            lines += [
                "",
                f"**Repair without retraining** (`kerasdoctor fix --repair`): {sp.repair}.",
            ]
    return "\n".join(lines) + "\n"


def main(args: list[str]) -> None:
    """No argument: the markdown on stdout. --readme [PATH]: rewrite the README's block."""
    import sys

    if args[:1] == ["--readme"]:
        path = (
            Path(args[1]) if len(args) > 1 else Path(__file__).resolve().parent.parent / "README.md"
        )
        path.write_text(readme_with_catalogue(path.read_text()))
        return
    sys.stdout.write(markdown())


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
