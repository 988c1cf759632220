"""`verifier run` never loses results: existing files, locks, signals, kills,
duplicates, output paths, permissions, filters and progress (audit B1.2,
B1.3, B2.7, B2.9, B3.3, B3.4, B3.7, B4.7)."""
from __future__ import annotations

import csv
import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from verifier.cli import main
from verifier.cli.run_cmd import RunProgress
from verifier.result import Verdict
from verifier.runner import (Instance, ResultsFile, Row, read_instances, read_results,
                             run_benchmark, select)
from tests.runner.conftest import ANSWERS

ROOT = Path(__file__).resolve().parents[2]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def invoke(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def test_an_existing_results_file_needs_resume_or_overwrite(finished_run, tmp_path):
    folder, results, _ = finished_run
    out = tmp_path / "results.csv"
    out.write_bytes(results.read_bytes())
    before = out.read_bytes()
    cex = tmp_path / "results_counterexamples" / "mine.counterexample"
    cex.parent.mkdir()
    cex.write_text("sat\n")
    refused = invoke(folder, "--results", out, "--filter", "linear_sat")
    assert refused.exit_code == 2, refused.output
    assert "--resume" in refused.stderr and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.output
    assert out.read_bytes() == before and cex.exists()
    fresh = invoke(folder, "--results", out, "--filter", "linear_unsat", "--overwrite",
                   "--no-expected")
    assert fresh.exit_code == 0, fresh.output
    assert [r["vnnlib"] for r in read_csv(out)] == ["vnnlib/linear_unsat.vnnlib"]
    assert cex.exists()  # a counterexample this run did not write is never deleted
    assert invoke(folder, "--results", out, "--resume", "--overwrite").exit_code == 2


def test_a_second_run_on_a_locked_results_file_names_the_holder(tiny, tmp_path):
    out = tmp_path / "r.csv"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out) + '.lock'!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke(tiny, "--results", out, "--filter", "linear_sat")
        assert result.exit_code == 2, result.output
        assert f"in use by another 'verifier run' (PID {holder.pid}" in result.stderr
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock file is stale and taken over
    taken = invoke(tiny, "--results", out, "--filter", "linear_unsat.vnnlib", "--no-expected")
    assert taken.exit_code == 0, taken.output
    assert len(read_csv(out)) == 1 and not Path(str(out) + ".lock").exists()


def row(vnnlib, result=Verdict.UNSAT):
    return Row("onnx/a.onnx", vnnlib, result, 1.0)


def test_the_final_rewrite_keeps_rows_already_on_disk(tmp_path):
    path = tmp_path / "r.csv"
    with ResultsFile(path, scored=False) as results:
        results.rewrite([row("p.vnnlib")])
        results.append(row("q.vnnlib"))  # e.g. a row appended by an earlier writer
        results.rewrite([row("r.vnnlib"), row("p.vnnlib", Verdict.SAT)])
    assert [(r.vnnlib, r.result) for r in read_results(path)] == [
        ("r.vnnlib", Verdict.UNSAT), ("p.vnnlib", Verdict.SAT), ("q.vnnlib", Verdict.UNSAT)]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_results_files_follow_the_umask(tiny, tmp_path, mask):
    out = tmp_path / "r.csv"
    old = os.umask(mask)
    try:
        run_benchmark(tiny, read_instances(tiny / "instances.csv")[:1], out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    cex = next((tmp_path / "r_counterexamples").iterdir())
    assert stat.S_IMODE(cex.stat().st_mode) == 0o666 & ~mask


def test_duplicate_rows_of_the_instance_list_run_once(tiny, tmp_path):
    lines = (tiny / "instances.csv").read_text().splitlines()
    (tiny / "instances.csv").write_text("\n".join([lines[1], lines[1], "./" + lines[1]]) + "\n")
    out = tmp_path / "r.csv"
    result = invoke(tiny, "--results", out)
    assert result.exit_code == 0, result.output
    assert len(read_csv(out)) == 1
    assert "2 repeated rows of the instance list ran once" in result.stderr
    assert "1 instances (1 run now, 0 from an earlier run; 2 repeated rows" in result.stdout


def test_unusable_results_paths_fail_before_any_instance_runs(finished_run, tmp_path):
    folder = finished_run[0]
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    # root may write anywhere: then /proc stands for a folder nobody can write to
    unwritable = locked if os.geteuid() != 0 else Path("/proc")
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_bytes(b"onnx,vnnlib,result\n\xff\xfe,x,unsat\n")
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,value\na,1\n")
    for args, message in [
        (["--results", tmp_path / "missing" / "r.csv"], "does not exist"),
        (["--results", unwritable / "r.csv"], "r.csv"),
        (["--results", corrupt, "--resume"], "is not UTF-8 text"),
        (["--results", foreign, "--resume"], "not a results file"),
    ]:
        result = invoke(folder, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit)
    assert not (tmp_path / "missing").exists()


def test_filter_globs_match_file_and_instance_names(tiny):
    instances = read_instances(tiny / "instances.csv")
    assert [i.vnnlib for i in select(instances, ["relu_*"])] == [
        "vnnlib/relu_sat.vnnlib.gz", "vnnlib/relu_unsat.vnnlib"]
    assert [i.vnnlib for i in select(instances, ["linear_sat.vnnlib"])] == [
        "vnnlib/linear_sat.vnnlib", "vnnlib/linear_sat.vnnlib"]
    assert len(select(instances, ["relu.onnx*"])) == 2  # the network's file name
    assert len(select(instances, ["*sat"])) == 5  # property names (no suffix)
    assert len(select(instances, ["unsat"])) == 2  # substrings still work


def test_progress_names_running_rows_and_takes_the_eta_from_timeouts():
    stream = io.StringIO()
    progress = RunProgress(stream, tty=True)
    progress.start(3, [], [10.0, 20.0, 30.0], jobs=2)
    assert progress.eta() == pytest.approx(30.0)
    progress.started(Instance("n/a.onnx", "p/one.vnnlib", 10.0), 10.0)
    time.sleep(0.2)
    assert 29.8 <= progress.eta() < 29.95  # the running row's time left shrinks
    progress.tick()
    progress._draw()
    assert "running: a one" in stream.getvalue()
    progress.row(Row("n/a.onnx", "p/one.vnnlib", Verdict.UNSAT, 0.2))
    assert progress.eta() == pytest.approx(25.0)  # the 50 s of rows not started, 2 jobs
    plain = io.StringIO()
    progress = RunProgress(plain, tty=False)
    progress.start(1, [], [5.0])
    progress.started(Instance("n/a.onnx", "p/one.vnnlib", 5.0), 5.0)
    assert "[start] a one (timeout 5 s)" in plain.getvalue()


def test_a_crashed_rows_output_is_kept_in_a_log(tiny, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("import sys\n"
                      "for i in range(40):\n"
                      "    print(f'trace line {i}', file=sys.stderr)\n"
                      "raise SystemExit(3)\n")
    report = run_benchmark(tiny, [Instance("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", 5)],
                           tmp_path / "r.csv",
                           command=lambda m, p, t, r: [sys.executable, str(script)])
    reason = report.rows[0].reason
    assert "exit code 3: trace line 39" in reason
    log = tmp_path / reason.rpartition("(output: ")[2].rstrip(")")
    text = log.read_text()
    assert "trace line 0" in text and "trace line 39" in text
    assert read_csv(tmp_path / "r.csv")[0]["reason"] == reason


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_unwind_like_ctrl_c(name):
    from verifier.runner import Stopped, stop_on_signals

    number = getattr(signal, name)
    before = signal.getsignal(number)
    with pytest.raises(KeyboardInterrupt) as caught:
        with stop_on_signals():
            os.kill(os.getpid(), number)
            time.sleep(5)
    assert isinstance(caught.value, Stopped) and caught.value.signum == number
    assert signal.getsignal(number) is before


# --------------------------------------------------------------------------
# Fault injection: SIGTERM and SIGKILL to a real `verifier run`, then --resume

SLOW = "linear_unsat"


def fake_python(tmp_path: Path) -> Path:
    """An interpreter stand-in: the slow row writes its PID and sleeps; the
    others run the real verifier."""
    path = tmp_path / "python-slow"
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"if any({SLOW!r} in arg for arg in sys.argv):\n"
        f"    open({str(tmp_path / 'slow.pid')!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])\n")
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not alive
        return handle.read().rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_a_run_leaves_no_orphan_and_resume_loses_nothing(tiny, tmp_path, signum):
    out = tmp_path / "r.csv"
    filters = ["--filter", "linear.onnx", "--no-expected"]  # linear_sat, the slow one, broken
    driver = (f"import sys; sys.executable = {str(fake_python(tmp_path))!r}\n"
              "from verifier.cli import main\n"
              f"main(['run', {str(tiny)!r}, '--results', {str(out)!r}] + {filters!r})\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runner = subprocess.Popen([sys.executable, "-c", driver], env=env, stderr=subprocess.PIPE,
                              text=True)
    pid_file = tmp_path / "slow.pid"
    end = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert runner.poll() is None and time.monotonic() < end, runner.stderr.read()
        time.sleep(0.05)
    slow = int(pid_file.read_text())
    assert alive(slow)
    runner.send_signal(signum)
    code = runner.wait(timeout=20)
    stderr = runner.stderr.read()
    assert code == -signum or code == 128 + signum, stderr
    assert wait_gone(slow), f"the running instance (PID {slow}) outlived the runner"
    assert [r["vnnlib"] for r in read_csv(out)] == ["vnnlib/linear_sat.vnnlib"]
    if signum == signal.SIGTERM:
        assert "run again with --resume" in stderr and "Traceback" not in stderr
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".verifier-run-")]
    resumed = invoke(tiny, "--results", out, "--resume", "--fail-on", "none", *filters)
    assert resumed.exit_code == 0, resumed.output
    rows = read_csv(out)
    assert [(r["onnx"], r["vnnlib"], r["result"]) for r in rows] == [
        (o, v, answer if answer != "unknown" else "error")
        for (o, v), answer in ANSWERS.items() if o == "onnx/linear.onnx"]
    assert "1 from an earlier run" in resumed.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".verifier-run-")]
