"""The one place that turns a report and --fail-on into the exit code."""

from __future__ import annotations

from kerasdoctor.findings import Report, Severity

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_STDOUT_CLOSED = 1  # `| head`: as click, never 0, so a cut-off report is no pass
FAIL_ON = ("error", "warning", "info", "never")


def exit_code(report: Report, fail_on: str = "error") -> int:
    """0 clean, 1 a finding at or above fail_on, 3 when a check crashed (it outranks 1)."""
    if report.errors:
        return EXIT_INTERNAL
    if fail_on == "never":
        return EXIT_OK
    floor = Severity(fail_on).rank
    if any(f.severity.rank >= floor for f in report.findings):
        return EXIT_FINDINGS
    return EXIT_OK
