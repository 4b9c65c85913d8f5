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


# format -> (module under render/, its function); json is the Report's own
_RENDERERS: dict[Format, tuple[str, str]] = {
    Format.table: ("table", "render_table"),
    Format.markdown: ("markdown", "render_markdown"),
    Format.junit: ("junit", "render_junit"),
    Format.html: ("html", "render_html"),
}


def render(
    report: object,
    fmt: str | Format,
    *,
    fail_on: str = "error",
    color: bool = True,
    width: int | None = None,
) -> str:
    """Render a report to text in one of Format (a Format or its name)."""
    import importlib

    from kerasdoctor.findings import Report

    assert isinstance(report, Report)
    try:
        chosen = Format(fmt)
    except ValueError:
        raise ValueError(f"unknown format {fmt!r}") from None
    if chosen is Format.json:
        return report.to_json() + "\n"
    module, name = _RENDERERS[chosen]
    renderer = getattr(importlib.import_module(f"kerasdoctor.render.{module}"), name)
    if chosen is Format.table:
        return str(renderer(report, color=color, width=width))
    if chosen is Format.junit:
        return str(renderer(report, fail_on=fail_on))
    return str(renderer(report))
