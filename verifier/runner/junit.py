"""The JUnit XML report of a run (``verifier run --junit FILE``).

One ``testsuite`` (the benchmark) with one ``testcase`` per instance:
``classname`` is the network, ``name`` the property file (without
suffixes), ``time`` its seconds. A row that fails (see
:func:`verifier.runner.scoring.failure`: a wrong answer, an invalid
counterexample, or an answer in ``fail_on``) gets a ``failure`` element
whose ``type`` is ``wrong`` or the answer; every testcase's
``system-out`` holds its answer, reason and counterexample file. Written
with the standard library (``xml.etree``), the dialect CI services read
(Jenkins, GitLab, GitHub test-report actions).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from verifier.runner.scoring import DEFAULT_FAIL_ON, failure
from verifier.runner.summary import Report


def junit_tree(report: Report, fail_on=DEFAULT_FAIL_ON) -> ET.ElementTree:
    """The XML tree of ``report``; rows fail as :func:`failure` says."""
    total = f"{report.wall_seconds:.3f}"
    suites = ET.Element("testsuites", name="verifier run", time=total)
    suite = ET.SubElement(suites, "testsuite", name=report.benchmark, time=total)
    failures = 0
    for row in report.rows:
        case = ET.SubElement(suite, "testcase", classname=row.network, name=row.property_name,
                             time=f"{row.seconds:.3f}", file=row.vnnlib)
        why = failure(row, fail_on)
        if why:
            failures += 1
            kind = "wrong" if row.wrong else row.result.value
            ET.SubElement(case, "failure", type=kind, message=why).text = (
                f"{row.onnx} {row.vnnlib}: {why}")
        lines = [f"result: {row.result.value}", f"reason: {row.reason}"]
        if row.expected:
            lines.append(f"expected: {row.expected}")
        if row.counterexample:
            lines.append(f"counterexample: {row.counterexample} ({row.check})")
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    counts = {"tests": str(len(report.rows)), "failures": str(failures), "errors": "0",
              "skipped": "0"}
    suite.attrib.update(counts)
    suites.attrib.update({k: v for k, v in counts.items() if k != "skipped"})
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(path, report: Report, fail_on=DEFAULT_FAIL_ON) -> None:
    """Write the report to ``path`` (replaced atomically, umask permissions)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        junit_tree(report, fail_on).write(tmp, encoding="utf-8", xml_declaration=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["junit_tree", "write_junit"]
