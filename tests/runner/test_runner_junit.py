"""JUnit XML (parsed with junitparser, a standard JUnit reader) and --fail-on."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from verifier.cli import main
from verifier.result import Verdict
from verifier.runner import Check, Report, Row
from verifier.runner.junit import write_junit

junitparser = pytest.importorskip("junitparser")


def mixed_report(tmp_path) -> Report:
    rows = [
        Row("onnx/a.onnx", "vnnlib/p_sat.vnnlib", Verdict.SAT, 1.5,
            counterexample="c/a.counterexample", check=Check(True)),
        Row("onnx/a.onnx", "vnnlib/p_unsat.vnnlib", Verdict.UNSAT, 2.0, "proved"),
        Row("onnx/b.onnx", "vnnlib/p_unknown.vnnlib", Verdict.UNKNOWN, 3.0, "bounds too loose"),
        Row("onnx/b.onnx", "vnnlib/p_error.vnnlib.gz", Verdict.ERROR, 0.1, "no such file"),
        Row("onnx/b.onnx", "vnnlib/p_wrong.vnnlib", Verdict.UNSAT, 0.5, expected="sat",
            score=-150, wrong="answered unsat, the ground truth is sat"),
        Row("onnx/c.onnx", "vnnlib/p_expected_sat.vnnlib", Verdict.SAT, 0.2, expected="sat",
            check=Check(True), score=10),
        Row("onnx/c.onnx", "vnnlib/p_bad_cex.vnnlib", Verdict.SAT, 0.2, expected="sat",
            check=Check(False, "Y_0 differs"), score=-150,
            wrong="sat with an invalid counterexample (Y_0 differs)"),
    ]
    return Report("mixed", tmp_path / "r.csv", rows, True, ran=7, resumed=0, wall_seconds=9.0)


def failures(path):
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    assert len(suites) == 1
    suite = suites[0]
    cases = {(case.classname, case.name): case for case in suite}
    failed = {key: [r.type for r in case.result if isinstance(r, junitparser.Failure)]
              for key, case in cases.items()}
    return suite, {key: types[0] for key, types in failed.items() if types}


def test_junit_of_a_mixed_run_fails_sat_error_and_wrong_answers_by_default(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, mixed_report(tmp_path))
    suite, failed = failures(path)
    assert suite.name == "mixed" and suite.tests == 7 and suite.failures == 4
    assert failed == {("a", "p_sat"): "sat", ("b", "p_error"): "error",
                      ("b", "p_wrong"): "wrong", ("c", "p_bad_cex"): "wrong"}
    case = next(c for c in suite if c.name == "p_unsat")
    assert case.time == 2.0 and "result: unsat" in case.system_out


def test_fail_on_chooses_the_answers_that_fail(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, mixed_report(tmp_path), fail_on={"unknown", "timeout"})
    suite, failed = failures(path)
    assert suite.failures == 3
    assert failed == {("b", "p_unknown"): "unknown", ("b", "p_wrong"): "wrong",
                      ("c", "p_bad_cex"): "wrong"}


def test_cli_junit_and_exit_code_follow_fail_on(finished_run, tmp_path):
    import shutil

    folder, results, _ = finished_run
    shutil.copytree(results.parent / "results_counterexamples",
                    tmp_path / "results_counterexamples")
    out = shutil.copy(results, tmp_path / "results.csv")
    xml = tmp_path / "junit.xml"
    base = ["run", str(folder), "--results", str(out), "--resume", "--junit", str(xml)]
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 1, result.output  # two error rows
    suite, failed = failures(xml)
    assert suite.tests == 6 and set(failed.values()) == {"error"} and len(failed) == 2
    assert ("relu", "relu_sat") not in failed  # sat, as the ground truth expects
    result = CliRunner().invoke(main, base + ["--fail-on", "unknown,timeout"])
    assert result.exit_code == 0, result.output
    assert failures(xml)[0].failures == 0
    result = CliRunner().invoke(main, base + ["--no-expected", "--fail-on", "sat"])
    assert result.exit_code == 1 and failures(xml)[0].failures == 2  # no ground truth: sat fails
    for args in (["--fail-on", "unsat"], ["--junit", str(tmp_path / "no" / "j.xml")]):
        bad = CliRunner().invoke(main, base + args)
        assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
