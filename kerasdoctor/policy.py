"""The one place that turns a report and --fail-on into the exit code, and the exit codes'
names. Light to import (enum only): the Ctrl-C handling reads EXIT_INTERRUPTED before anything
else is loaded."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kerasdoctor.findings import Finding, Report

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_STDOUT_CLOSED = 1  # `| head`: as click, never 0, so a cut-off report is no pass


class FailOn(str, Enum):
    """--fail-on's values: the severities, and never."""

    error = "error"
    warning = "warning"
    info = "info"
    never = "never"


FAIL_ON = tuple(f.value for f in FailOn)


def failing(report: Report, fail_on: str = "error") -> list[Finding]:
    """The findings at or above fail_on (none for "never"): the one home of the fail-on rule
    that the exit code, assert_healthy() and the DoctorCallback share."""
    from kerasdoctor.findings import Severity

    if fail_on == "never":
        return []
    floor = Severity(fail_on).rank
    return [f for f in report.findings if f.severity.rank >= floor]


def exit_code(report: Report, fail_on: str = "error") -> int:
    """0 clean, 1 a finding at or above fail_on, 3 when a check crashed (it outranks 1)."""
    if report.errors:
        return EXIT_INTERNAL
    return EXIT_FINDINGS if failing(report, fail_on) else EXIT_OK
