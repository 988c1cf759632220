"""The Dask backend on an embedded LocalCluster (2 worker processes on the
loopback interface): the same results as the local backend, --resume across
backends, a worker killed mid-run, and the message without Dask."""
from __future__ import annotations

import csv
import os
import signal
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from verifier.cli import main
from verifier.runner import read_expected, read_instances, run_benchmark, verify_command
from verifier.runner.dask_backend import ClusterError, DaskBackend, parse_cluster

COLUMNS = ("onnx", "vnnlib", "result", "counterexample", "check", "expected", "score")


def read_csv(path):
    with open(path, newline="") as handle:
        return [{k: r[k] for k in COLUMNS} for r in csv.DictReader(handle)]


def test_cluster_address_errors_and_the_hint_without_dask(tiny, tmp_path, monkeypatch):
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.1:8786") == ("address", 0)
    for bad in ("local:0", "local:x", "nowhere"):
        with pytest.raises(ClusterError, match="local:"):
            parse_cluster(bad)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    result = CliRunner().invoke(main, ["run", str(tiny), "--results", str(tmp_path / "r.csv"),
                                       "--cluster", "local:2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert 'pip install "verifier[dask]"' in result.stderr
    assert not (tmp_path / "r.csv").exists()
    both = CliRunner().invoke(main, ["run", str(tiny), "--results", str(tmp_path / "r.csv"),
                                     "--cluster", "local:2", "--jobs", "2"])
    assert both.exit_code == 2 and "--jobs is for the local backend" in both.output


distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from verifier.runner.dask_backend import start_local_cluster

    with start_local_cluster(2) as local:
        yield local


def test_a_cluster_gives_the_results_of_the_local_backend(cluster, finished_run, tmp_path):
    folder, local_results, _ = finished_run
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(main, ["run", str(folder), "--results", str(out), "--filter",
                                       "relu", "--filter", "missing", "--cluster",
                                       cluster.scheduler_address])
    assert result.exit_code == 1, result.output  # the error row, as locally
    assert read_csv(out) == [r for r in read_csv(local_results)
                             if "relu" in r["onnx"] or "missing" in r["onnx"]]
    assert (tmp_path / "results_counterexamples" / "relu__relu_sat.counterexample") \
        .read_text().startswith("sat\n")
    assert "missing.onnx" in next(r for r in csv.DictReader(open(out)) if "missing" in r["onnx"]
                                  )["reason"]


def test_resume_across_backends(cluster, tiny, tmp_path):
    out = tmp_path / "results.csv"
    instances = read_instances(tiny / "instances.csv")
    expected = read_expected(tiny / "expected.csv")
    run_benchmark(tiny, instances[:1], out, expected=expected)  # local
    report = run_benchmark(tiny, instances[:2], out, expected=expected, resume=True,
                           backend=DaskBackend(cluster.scheduler_address))
    assert (report.ran, report.resumed) == (1, 1)
    assert [r.result.value for r in report.rows] == ["sat", "unsat"]
    local = run_benchmark(tiny, instances[:2], out, expected=expected, resume=True)
    assert (local.ran, local.resumed) == (0, 2)
    assert local.summary()["score"]["total"] == 20


class SlowOnce:
    """A command that, on its first call for the slow row, records the worker
    process (its own PID: commands are built on the worker) and sleeps."""

    def __init__(self, folder):
        self.marker = folder / "worker.pid"
        self.child = folder / "child.pid"

    def __call__(self, model, prop, timeout, result_file):
        if "linear_unsat" in str(prop) and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            return [sys.executable, "-c", f"import os, time; open({str(self.child)!r}, 'w')"
                    ".write(str(os.getpid())); time.sleep(60)"]
        return verify_command(model, prop, timeout, result_file)


def test_a_worker_killed_mid_run_reruns_its_row_once(cluster, tiny, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    command = SlowOnce(tmp_path)
    killed = []

    def killer():
        end = time.monotonic() + 60
        while time.monotonic() < end and not command.child.exists():
            time.sleep(0.05)
        time.sleep(0.2)
        worker = int(command.marker.read_text())
        os.kill(worker, signal.SIGKILL)
        killed.append((worker, int(command.child.read_text())))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    instances = read_instances(tiny / "instances.csv")[:2]
    start = time.monotonic()
    report = run_benchmark(tiny, instances, tmp_path / "r.csv", command=command,
                           backend=DaskBackend(cluster.scheduler_address))
    thread.join(5)
    assert killed, "the slow row never started"
    assert time.monotonic() - start < 50
    assert [r.result.value for r in report.rows] == ["sat", "unsat"]  # re-run on a worker
    child = killed[0][1]
    for _ in range(100):  # the killed worker's verify process died with it
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the lost worker's child {child} is still running")


def test_a_task_whose_workers_were_all_lost_becomes_an_error_row(tmp_path):
    from verifier.runner import Instance
    from verifier.runner.outcome import Recorder
    from verifier.runner.process import Task

    class Lost:
        def result(self):
            worker = SimpleNamespace(address="tcp://127.0.0.1:40000")
            raise distributed.KilledWorker("verify-0-x", worker, 1)

    outcome = DaskBackend("local:1").outcome(Lost())  # never entered: no cluster started
    inst = Instance("onnx/a.onnx", "vnnlib/p.vnnlib", 5.0)
    row = Recorder(tmp_path / "r.csv", [inst], lambda rel: tmp_path / rel).row(
        Task(0, inst, tmp_path / "a.onnx", tmp_path / "p.vnnlib", 5.0), outcome)
    assert row.result.value == "error"
    assert row.reason == ("the Dask workers running it were lost (2 times, last on "
                          "tcp://127.0.0.1:40000)")
