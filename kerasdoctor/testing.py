"""Test helper: assert_healthy(model, x, y) for pytest, failing with the findings table."""

from __future__ import annotations

from typing import Any

from kerasdoctor.findings import Report


def assert_healthy(
    model: Any, x: Any, y: Any = None, fail_on: str = "error", **options: Any
) -> Report:
    """Diagnose and raise AssertionError (message: the report) on a finding at/above fail_on,
    or when a check crashed.

    Takes kerasdoctor.diagnose()'s arguments and options, under the CLI's names:
    ``min_recall=0.8``, ``min_balanced_accuracy=0.85``, ``class_names=...``, a DATA path for
    ``x`` with ``label_column=...``, ... ``fail_on`` defaults to "error", as the CLI's
    ``--fail-on``: a warning is reported in the table but does not fail the test; pass
    ``fail_on="warning"`` for a stricter test.

    >>> from kerasdoctor.testing import assert_healthy
    >>> def test_model_learns_every_class():
    ...     assert_healthy("model.keras", x_val, y_val, min_recall=0.8)  # doctest: +SKIP
    """
    from kerasdoctor import _diagnose
    from kerasdoctor.policy import exit_code, failing
    from kerasdoctor.render.table import render_table

    report = _diagnose(
        model, x, y, {**options, "fail_on": fail_on}, "kerasdoctor.testing.assert_healthy()"
    )  # checks fail_on and the rest
    if exit_code(report, fail_on) != 0:
        bad = [f"{f.id} ({f.severity.value})" for f in failing(report, fail_on)]
        crashed = [e.check_id for e in report.errors]
        head = f"kerasdoctor: model is not healthy at fail_on={fail_on!r}: " + ", ".join(
            bad + [f"{c} (crashed)" for c in crashed]
        )
        raise AssertionError(head + "\n" + render_table(report, color=False))
    return report
