"""JUnit XML for CI test reporters: one test case per check that ran; what it found decides."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from kerasdoctor.findings import Finding, Report, Severity, to_jsonable

# Characters XML 1.0 cannot carry at all, even escaped (control characters, lone surrogates).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: object) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))


def _describe(f: Finding) -> str:
    """A finding as plain text: what the CI log shows when the test case is opened."""
    lines = [
        f"[{f.severity.value}] {f.id} ({f.kind.value}): {f.title}",
        f.detail,
        "evidence: " + json.dumps(to_jsonable(dict(f.evidence)), allow_nan=False),
    ]
    for fx in f.fixes:
        lines.append(f"fix: {fx.summary}")
        if fx.command:
            lines.append(f"  $ {fx.command}")
        if fx.code:
            lines += ["  " + ln for ln in fx.code.rstrip().splitlines()]
    return "\n".join(lines)


def _cases(report: Report) -> list[tuple[str, str, str, str]]:
    """(id, kind, status, reason) of every check of this run, from the report's outcomes;
    a report without them (built by hand) falls back to the registry, judged by findings."""
    if report.outcomes:
        return [(o.check_id, o.kind.value, o.status, o.reason) for o in report.outcomes]
    from kerasdoctor.checks import registry

    found = {f.id for f in report.findings}
    crashed = {e.check_id: e.message for e in report.errors}
    cases = []
    for c in registry():
        cid = c.spec.id
        if cid in report.ignored:
            cases.append((cid, c.spec.kind.value, "skipped", f"ignored: {report.ignored[cid]}"))
        elif cid in crashed:
            cases.append((cid, c.spec.kind.value, "errored", crashed[cid]))
        else:
            cases.append((cid, c.spec.kind.value, "found" if cid in found else "passed", ""))
    known = {cid for cid, *_ in cases}
    for f in report.findings:  # a finding from outside the registry
        if f.id not in known:
            known.add(f.id)
            cases.append((f.id, f.kind.value, "found", ""))
    return cases


def render_junit(report: Report, *, fail_on: str = "error") -> str:
    """The report as one JUnit <testsuite>: one test case per check that ran.

    The XML says what was found whatever --fail-on says (which decides only the exit code,
    and is recorded as a property): an error finding is a <failure type="error">, a warning
    a <failure type="warning">, info is written to the case's output and passes; a check
    that did not apply, was ignored or not selected is <skipped> with the reason; a crash is
    an <error>.
    """
    model = str(report.model.path)
    data = str(report.data.path)
    suite_name = f"kerasdoctor {model} on {data}"
    errors = {e.check_id: e for e in report.errors}
    by_id: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_id.setdefault(f.id, []).append(f)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    suite = ET.Element("testsuite", name=_clean(suite_name))
    props = ET.SubElement(suite, "properties")
    m = report.metrics
    for key, value in (
        ("model", model),
        ("data", data),
        ("verdict", report.verdict),
        ("root_cause", report.root_cause.id if report.root_cause else ""),
        ("chain", " -> ".join(report.chain)),
        ("fail_on", fail_on),
        ("n_samples", report.data.n_samples),
        ("accuracy", m.accuracy),
        ("balanced_accuracy", m.balanced_accuracy),
        ("kerasdoctor_version", report.version),
    ):
        ET.SubElement(props, "property", name=key, value=_clean("" if value is None else value))

    for cid, kind, status, reason in _cases(report):
        counts["tests"] += 1
        case = ET.SubElement(
            suite, "testcase", classname=f"kerasdoctor.{kind}", name=_clean(cid), time="0"
        )
        if status == "skipped":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_clean(reason or "skipped"))
            continue
        if status == "errored" or cid in errors:
            counts["errors"] += 1
            msg = errors[cid].message if cid in errors else reason
            err = ET.SubElement(case, "error", message=_clean(msg), type="CheckCrashed")
            err.text = _clean(f"kerasdoctor's check {cid} crashed: {msg}")
            continue
        found = sorted(by_id.get(cid, []), key=lambda f: -f.severity.rank)
        failing = [f for f in found if f.severity is not Severity.INFO]
        if failing:
            counts["failures"] += 1
            worst = failing[0]
            fail = ET.SubElement(
                case,
                "failure",
                message=_clean(f"{worst.id}: {worst.title}"),
                type=worst.severity.value,
            )
            fail.text = _clean("\n\n".join(_describe(f) for f in failing))
        rest = [f for f in found if f not in failing]
        if rest:  # info: the test passes, the finding stays readable
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n\n".join(_describe(f) for f in rest))

    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", "0")
    root = ET.Element("testsuites", name="kerasdoctor")
    for key, value in counts.items():
        root.set(key, str(value))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
