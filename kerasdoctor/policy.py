"""The one place that turns a report and --fail-on into the exit code."""

from __future__ import annotations

from kerasdoctor.findings import Finding, Report, Severity

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_STDOUT_CLOSED = 1  # `| head`: as click, never 0, so a cut-off report is no pass
FAIL_ON = ("error", "warning", "info", "never")


def failing(report: Report, fail_on: str = "error") -> list[Finding]:
    """The findings at or above fail_on (none for "never"): the one home of the fail-on rule
    that the exit code, assert_healthy() and the DoctorCallback share."""
    if fail_on == "never":
        return []
    floor = Severity(fail_on).rank
    return [f for f in report.findings if f.severity.rank >= floor]


def exit_code(report: Report, fail_on: str = "error") -> int:
    """0 clean, 1 a finding at or above fail_on, 3 when a check crashed (it outranks 1)."""
    if report.errors:
        return EXIT_INTERNAL
    return EXIT_FINDINGS if failing(report, fail_on) else EXIT_OK
