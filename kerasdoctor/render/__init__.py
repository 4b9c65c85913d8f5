"""Renderers: a Report to table (rich), json, and the later formats. Only here is rich used."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    """The report formats: the one list that --format, --report and render() share."""

    table = "table"
    json = "json"
    markdown = "markdown"
    junit = "junit"
    html = "html"


FORMATS = tuple(f.value for f in Format)


def words(report: object) -> dict[str, str]:
    """The header's words for the report's task: a multi-label model has labels, its accuracy
    is over (row, label) pairs, its baseline predicts no label, its balanced accuracy is the
    mean over labels."""
    from kerasdoctor.findings import Report

    assert isinstance(report, Report)
    if report.metrics.task == "multilabel":
        return {
            "classes": "labels",
            "accuracy": "label-wise accuracy",
            "baseline": "per-label majority baseline",
            "balanced": "macro balanced accuracy",
        }
    if report.metrics.task == "dense":  # counted over pixel / token positions
        return {
            "classes": "classes",
            "accuracy": "position accuracy",
            "baseline": "majority-class baseline (positions)",
            "balanced": "balanced accuracy over positions",
        }
    return {
        "classes": "classes",
        "accuracy": "accuracy",
        "baseline": "majority-class baseline",
        "balanced": "balanced accuracy",
    }


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
