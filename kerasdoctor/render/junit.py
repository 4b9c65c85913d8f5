"""JUnit XML for CI test reporters: one test case per check; findings at --fail-on fail it."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

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


def _check_ids(report: Report) -> list[tuple[str, str]]:
    """(id, kind) of every registered check, then any finding or crash from outside it."""
    from kerasdoctor.checks import registry

    ids = [(c.spec.id, c.spec.kind.value) for c in registry()]
    seen = {cid for cid, _ in ids}
    extra: Iterable[tuple[str, str]] = [(f.id, f.kind.value) for f in report.findings] + [
        (e.check_id, "check") for e in report.errors
    ]
    for cid, kind in extra:
        if cid not in seen:
            seen.add(cid)
            ids.append((cid, kind))
    return ids


def render_junit(report: Report, *, fail_on: str = "error") -> str:
    """The report as one JUnit <testsuite>; `fail_on` decides which findings are failures."""
    floor = None if fail_on == "never" else Severity(fail_on).rank
    model = str(report.model.get("path"))
    data = str(report.data.get("path"))
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
        ("n_samples", report.data.get("n_samples")),
        ("accuracy", m.get("accuracy")),
        ("balanced_accuracy", m.get("balanced_accuracy")),
        ("kerasdoctor_version", report.version),
    ):
        ET.SubElement(props, "property", name=key, value=_clean("" if value is None else value))

    for cid, kind in _check_ids(report):
        counts["tests"] += 1
        case = ET.SubElement(
            suite, "testcase", classname=f"kerasdoctor.{kind}", name=_clean(cid), time="0"
        )
        if cid in report.ignored:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_clean(f"ignored: {report.ignored[cid]}"))
            continue
        if cid in errors:
            counts["errors"] += 1
            err = ET.SubElement(
                case, "error", message=_clean(errors[cid].message), type="CheckCrashed"
            )
            err.text = _clean(f"kerasdoctor's check {cid} crashed: {errors[cid].message}")
        found = sorted(by_id.get(cid, []), key=lambda f: -f.severity.rank)
        failing = [f for f in found if floor is not None and f.severity.rank >= floor]
        if failing and cid not in errors:
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
        if rest:  # below --fail-on: the test passes, the finding stays readable
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
