"""Renderers: a Report to table (rich), json, and the later formats. Only here is rich used."""

from __future__ import annotations

FORMATS = ("table", "json", "markdown", "junit", "html")


def render(
    report: object,
    fmt: str,
    *,
    fail_on: str = "error",
    color: bool = True,
    width: int | None = None,
) -> str:
    """Render a report to text in one of FORMATS."""
    from kerasdoctor.findings import Report

    assert isinstance(report, Report)
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "table":
        from kerasdoctor.render.table import render_table

        return render_table(report, color=color, width=width)
    if fmt == "markdown":
        from kerasdoctor.render.markdown import render_markdown

        return render_markdown(report)
    if fmt == "junit":
        from kerasdoctor.render.junit import render_junit

        return render_junit(report, fail_on=fail_on)
    if fmt == "html":
        from kerasdoctor.render.html import render_html

        return render_html(report)
    raise ValueError(f"unknown format {fmt!r}")
