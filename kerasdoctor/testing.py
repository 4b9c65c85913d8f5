"""Test helper: assert_healthy(model, x, y) for pytest, failing with the findings table."""

from __future__ import annotations

from typing import Any

from kerasdoctor.findings import Report


def assert_healthy(model: Any, x: Any, y: Any, fail_on: str = "warning",
                   **options: Any) -> Report:
    """Diagnose and raise AssertionError (message: the report) on a finding at/above fail_on.

    >>> from kerasdoctor.testing import assert_healthy
    >>> def test_model_learns_every_class():
    ...     assert_healthy("model.keras", x_val, y_val)  # doctest: +SKIP
    """
    from kerasdoctor import diagnose
    from kerasdoctor.policy import FAIL_ON, exit_code
    from kerasdoctor.render.table import render_table

    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}")
    report = diagnose(model, x, y, **options)
    if exit_code(report, fail_on) != 0:
        bad = [f"{f.id} ({f.severity.value})" for f in report.findings
               if fail_on != "never" and f.severity.rank >= _rank(fail_on)]
        crashed = [e.check_id for e in report.errors]
        head = f"kerasdoctor: model is not healthy at fail_on={fail_on!r}: " + ", ".join(
            bad + [f"{c} (crashed)" for c in crashed])
        raise AssertionError(head + "\n" + render_table(report, color=False))
    return report


def _rank(fail_on: str) -> int:
    from kerasdoctor.findings import Severity

    return Severity(fail_on).rank
