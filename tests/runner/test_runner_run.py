"""End-to-end runs of the tiny benchmark: one process per instance, the results
file, counterexample files, the malformed rows, scoring, resume, kills, the CLI."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from verifier.cli import main
from verifier.cli.run_cmd import RunProgress
from verifier.result import Verdict
from verifier.runner import (SCORE_CORRECT, Instance, Row, read_expected, read_instances,
                             run_benchmark)
from tests.runner.conftest import ANSWERS, ROWS


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_full_run_answers_every_row_and_goes_on_after_errors(finished_run):
    folder, results, report = finished_run
    got = {(row.onnx, row.vnnlib): row.result.value for row in report.rows}
    for (onnx_path, vnnlib), answer in ANSWERS.items():
        assert got[onnx_path, vnnlib] == (answer if answer != "unknown" else "error")
    assert [row.onnx for row in report.rows] == [o for o, _, _ in ROWS]  # instance order
    assert report.ran == len(ROWS) and report.resumed == 0
    assert not report.wrong


def test_malformed_rows_say_why(finished_run):
    _, _, report = finished_run
    broken = next(row for row in report.rows if row.vnnlib.endswith("broken.vnnlib"))
    assert "broken.vnnlib" in broken.reason and "parenthes" in broken.reason
    missing = next(row for row in report.rows if row.onnx.endswith("missing.onnx"))
    assert "missing.onnx" in missing.reason


def test_results_csv_and_counterexample_files(finished_run):
    _, results, report = finished_run
    rows = read_csv(results)
    assert list(rows[0]) == ["onnx", "vnnlib", "result", "seconds", "reason",
                             "counterexample", "check", "expected", "score"]
    assert [r["result"] for r in rows] == [row.result.value for row in report.rows]
    for record in rows:
        assert float(record["seconds"]) > 0
        if record["result"] == "sat":
            assert record["check"] == "valid" and record["score"] == str(SCORE_CORRECT)
            cex = results.parent / record["counterexample"]
            assert cex.parent.name == "results_counterexamples"
            text = cex.read_text()
            assert text.startswith("sat\n((X_0 ") and "(Y_1 " in text
        else:
            assert record["counterexample"] == "" and record["check"] == ""
    assert sum(int(r["score"]) for r in rows) == 4 * SCORE_CORRECT
    assert not [p for p in results.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_summary_per_network_and_property(finished_run):
    _, _, report = finished_run
    summary = report.summary()
    assert summary["totals"]["solved"] == 4 and summary["totals"]["error"] == 2
    assert summary["networks"]["linear"] == {**summary["networks"]["linear"],
                                             "sat": 1, "unsat": 1, "error": 1, "count": 3}
    assert summary["networks"]["missing"]["error"] == 1
    assert summary["properties"]["linear_sat"]["count"] == 2
    assert summary["properties"]["relu_sat"]["sat"] == 1
    group = summary["properties"]["linear_sat"]
    assert group["total_seconds"] > 0 and group["median_seconds"] > 0
    assert summary["score"] == {"total": 40, "correct": 4, "wrong": 0, "unscored": 2,
                                "best_possible": 40}
    assert summary["wrong"] == []


def copy_results(results: Path, target: Path) -> Path:
    """Copy a results CSV and its counterexample folder into ``target``."""
    import shutil

    shutil.copytree(results.parent / "results_counterexamples",
                    target / "results_counterexamples")
    return Path(shutil.copy(results, target / "results.csv"))


def test_wrong_ground_truth_makes_the_run_fail_and_lists_it(finished_run, tmp_path):
    folder, results, _ = finished_run
    out = copy_results(results, tmp_path)
    lie = tmp_path / "expected.csv"
    lie.write_text((folder / "expected.csv").read_text().replace(
        "linear_unsat.vnnlib,unsat", "linear_unsat.vnnlib,sat"))
    result = CliRunner().invoke(main, ["run", str(folder), "--results", str(out), "--resume",
                                       "--expected", str(lie)])
    assert result.exit_code == 1, result.output
    assert "1 WRONG ANSWER:" in result.stderr
    assert "WRONG  onnx/linear.onnx  vnnlib/linear_unsat.vnnlib: answered unsat" in result.stderr
    assert "score -120 (best possible 40)" in result.stdout
    rows = {r["vnnlib"]: r for r in read_csv(out)}
    assert rows["vnnlib/linear_unsat.vnnlib"]["score"] == "-150"


def test_a_tampered_counterexample_is_a_wrong_answer_even_without_ground_truth(
        finished_run, tmp_path):
    folder, results, _ = finished_run
    out = copy_results(results, tmp_path)
    cex = tmp_path / "results_counterexamples" / "linear__linear_sat.counterexample"
    lines = cex.read_text().splitlines()
    lines[-2] = "(Y_0 1.25)"  # Y_0 is x0 + x1 >= 1.5 for the real point
    cex.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(main, ["run", str(folder), "--results", str(out), "--resume",
                                       "--no-expected", "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["score"] is None
    assert [w["vnnlib"] for w in summary["wrong"]] == ["vnnlib/linear_sat.vnnlib"]
    assert "invalid counterexample" in summary["wrong"][0]["wrong"]
    assert "Y_0 is 1.25 in the file" in result.stderr
    assert "expected" not in read_csv(out)[0]


def test_resume_skips_rows_already_in_the_results_file(tiny, tmp_path):
    out = tmp_path / "results.csv"
    instances = read_instances(tiny / "instances.csv")
    expected = read_expected(tiny / "expected.csv")
    first = run_benchmark(tiny, instances[:2], out, expected=expected)
    assert first.ran == 2
    stamp = {r["vnnlib"]: r["seconds"] for r in read_csv(out)}

    started = []

    def command(model, prop, timeout, result_file):
        started.append((Path(model).name, Path(prop).name))
        from verifier.runner import verify_command
        return verify_command(model, prop, timeout, result_file)

    second = run_benchmark(tiny, instances, out, expected=expected, resume=True,
                           command=command, jobs=2)
    assert second.ran == len(ROWS) - 2 and second.resumed == 2
    assert ("linear.onnx", "linear_sat.vnnlib") not in started
    assert ("linear.onnx", "linear_unsat.vnnlib") not in started
    assert len(started) == len(ROWS) - 2
    rows = read_csv(out)
    assert [r["vnnlib"] for r in rows] == [v for _, v, _ in ROWS]
    assert {r["vnnlib"]: r["seconds"] for r in rows[:2]} == stamp  # kept as they were
    assert second.summary()["score"]["total"] == 4 * SCORE_CORRECT


def test_resume_keeps_rows_of_other_instances(tiny, tmp_path):
    out = tmp_path / "results.csv"
    instances = read_instances(tiny / "instances.csv")
    run_benchmark(tiny, instances[4:], out)  # the two error rows
    report = run_benchmark(tiny, instances[1:2], out, resume=True)
    assert [row.vnnlib for row in report.rows] == ["vnnlib/linear_unsat.vnnlib"]
    assert len(read_csv(out)) == 3


def write_script(path: Path, body: str) -> list[str]:
    path.write_text(body)
    return [sys.executable, str(path)]


def test_a_hanging_instance_is_killed_with_its_children_and_the_run_goes_on(tiny, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    hang = write_script(tmp_path / "hang.py", (
        "import subprocess, sys, time\n"
        "if 'linear_unsat' in sys.argv[2]:\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(60)\n"
        "open(sys.argv[4], 'w').write('unknown\\n')\n"))

    def command(model, prop, timeout, result_file):
        return hang + [str(model), str(prop), f"{timeout:g}", str(result_file)]

    instances = [Instance("onnx/linear.onnx", "vnnlib/linear_unsat.vnnlib", 1.0),
                 Instance("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", 1.0)]
    start = time.monotonic()
    report = run_benchmark(tiny, instances, tmp_path / "r.csv", timeout_scale=0.5, grace=0.5,
                           command=command)
    assert time.monotonic() - start < 10
    killed, other = report.rows
    assert killed.result is Verdict.TIMEOUT and "killed after" in killed.reason
    assert "timeout 0.5 s + 0.5 s grace" in killed.reason
    assert 1.0 <= killed.seconds < 5
    assert other.result is Verdict.UNKNOWN
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the instance's child process survived the kill")


@pytest.mark.parametrize("body, result, reason", [
    ("raise RuntimeError('boom')", Verdict.ERROR, "exit code 1: RuntimeError: boom"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", Verdict.ERROR,
     "killed by SIGKILL (out of memory?)"),
    ("import sys; open(sys.argv[4], 'w').write('maybe\\n')", Verdict.ERROR,
     "the result file starts with 'maybe'"),
    # a verifier that claims sat without a valid counterexample: wrong, -150
    ("import sys; open(sys.argv[4], 'w').write('sat\\n((X_0 0.0)\\n(X_1 0.0)\\n(Y_0 0.0)\\n"
     "(Y_1 0.0))\\n')", Verdict.SAT, ""),
    # exit 1 alone (the sat exit code) does not make an answer: the result file does
    ("import sys; sys.exit(1)", Verdict.ERROR, "exit code 1 and no result file"),
])
def test_crashes_and_bogus_answers_of_an_instance(tiny, tmp_path, body, result, reason):
    script = write_script(tmp_path / "fake.py", body + "\n")

    def command(model, prop, timeout, result_file):
        return script + [str(model), str(prop), f"{timeout:g}", str(result_file)]

    instances = [Instance("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", 5.0)]
    report = run_benchmark(tiny, instances, tmp_path / "r.csv",
                           expected=read_expected(tiny / "expected.csv"), command=command)
    row = report.rows[0]
    assert row.result is result
    assert reason in row.reason
    if result is Verdict.SAT:
        assert not row.check.valid and "does not violate" in row.check.reason
        assert row.wrong and row.score == -150


def test_a_command_that_cannot_start_is_an_error_row(tiny, tmp_path):
    instances = [Instance("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", 5.0),
                 Instance("onnx/linear.onnx", "vnnlib/linear_unsat.vnnlib", 5.0)]
    report = run_benchmark(tiny, instances, tmp_path / "r.csv",
                           command=lambda *args: [str(tmp_path / "no-such-program")])
    assert [row.result for row in report.rows] == [Verdict.ERROR] * 2
    assert report.rows[0].reason.startswith("cannot start")


def test_cli_plain_progress_lines_and_json_summary(tiny, tmp_path):
    out = tmp_path / "res.csv"
    stale = tmp_path / "res_counterexamples" / "old__run.counterexample"
    stale.parent.mkdir()
    stale.write_text("sat\n")
    result = CliRunner().invoke(main, ["run", str(tiny), "--results", str(out), "--filter",
                                       "relu", "--limit", "1", "--json", "--timeout-scale", "0.5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["instances"] == 1 and summary["totals"]["sat"] == 1
    assert summary["results_file"] == str(out.resolve())
    assert summary["counterexamples"].endswith("res_counterexamples")
    assert "[1/1] sat" in result.stderr and "relu relu_sat" in result.stderr
    assert "ETA" in result.stderr
    assert stale.exists()  # counterexamples of other runs are never deleted


def test_cli_text_summary_and_usage_errors(finished_run, tmp_path):
    folder, results, _ = finished_run
    out = copy_results(results, tmp_path)
    result = CliRunner().invoke(main, ["run", str(folder), "--results", str(out), "--resume"])
    assert result.exit_code == 1  # the two error rows fail by default (--fail-on sat,error)
    assert "2 rows fail (--fail-on error,sat):" in result.stderr
    assert "FAIL  onnx/missing.onnx  vnnlib/linear_sat.vnnlib: error: " in result.stderr
    text = result.stdout
    assert "6 instances (0 run now, 6 from an earlier run)" in text
    assert "network" in text and "property" in text and "median s" in text
    assert "solved 4/6 (2 sat, 2 unsat)" in text
    assert "score 40 (best possible 40)" in text and "wrong answers: 0" in text
    for args, message in [
        ([str(tmp_path / "nowhere")], "benchmark folder not found"),
        ([str(folder), "--filter", "zzz"], "no instance matches 'zzz'"),
        ([str(folder), "--instances", str(tmp_path / "none.csv")], "instance list not found"),
    ]:
        bad = CliRunner().invoke(main, ["run", *args, "--results", str(tmp_path / "x.csv")])
        assert bad.exit_code == 2 and message in bad.stderr, bad.output


def test_tty_progress_bar_redraws_in_place():
    stream = io.StringIO()
    progress = RunProgress(stream, tty=True)
    progress.start(3, [Row("a.onnx", "p.vnnlib", Verdict.UNSAT, 1.0, resumed=True)])
    progress.row(Row("a.onnx", "q.vnnlib", Verdict.SAT, 2.0))
    progress.row(Row("b.onnx", "q.vnnlib", Verdict.UNSAT, 2.0, wrong="answered unsat"))
    progress.finish()
    text = stream.getvalue()
    assert "resuming: 1 of 3" in text
    assert "\r[" in text and "3/3" in text and "ETA" in text
    assert "1 sat  2 unsat  0 unknown  1 WRONG" in text
    assert "WRONG: answered unsat" in text  # printed above the bar
    assert text.endswith("\r\033[K")


@pytest.mark.parametrize("jobs, cores, workers", [(1, 2, 2), (2, 2, 1), (3, 8, 2), (4, 2, 1)])
def test_default_command_gives_each_row_its_share_of_the_cores(tiny, tmp_path, monkeypatch,
                                                               jobs, cores, workers):
    from verifier.runner import driver
    from verifier.search import split_workers

    monkeypatch.setattr(split_workers, "available_cores", lambda: cores)
    tasks = []
    monkeypatch.setattr(driver, "drive", lambda backend, todo, *rest: tasks.extend(todo))
    instances = read_instances(tiny / "instances.csv")
    run_benchmark(tiny, instances[:1], tmp_path / "r.csv", jobs=jobs)
    argv = tasks[0].command(tasks[0].model, tasks[0].prop, 5.0, tmp_path / "x.txt")
    assert argv[argv.index("--workers") + 1] == str(workers)


def test_a_given_command_is_used_as_it_is(tiny, tmp_path, monkeypatch):
    from verifier.runner import driver, verify_command

    tasks = []
    monkeypatch.setattr(driver, "drive", lambda backend, todo, *rest: tasks.extend(todo))
    instances = read_instances(tiny / "instances.csv")

    def command(model, prop, timeout, result_file):
        return verify_command(model, prop, timeout, result_file)

    run_benchmark(tiny, instances[:1], tmp_path / "r.csv", command=command, jobs=2)
    argv = tasks[0].command(tasks[0].model, tasks[0].prop, 5.0, tmp_path / "x.txt")
    assert "--workers" not in argv
