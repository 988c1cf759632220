"""benchmarks/vnncomp/prepare_instance.sh and run_instance.sh (the VNN-COMP interface)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from verifier.runner import Instance, check_counterexample, run_benchmark

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "vnncomp"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def script(name, *args, cwd):
    env = dict(os.environ, VERIFIER_PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPTS / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_prepare_instance_checks_arguments_and_files(tiny):
    ok = script("prepare_instance.sh", "v1", "tiny", "onnx/linear.onnx",
                "vnnlib/relu_sat.vnnlib", cwd=tiny)  # only the .gz exists: accepted
    assert ok.returncode == 0, ok.stderr
    assert script("prepare_instance.sh", "v2", "tiny", "onnx/linear.onnx",
                  "vnnlib/linear_sat.vnnlib", cwd=tiny).returncode == 1
    missing = script("prepare_instance.sh", "v1", "tiny", "onnx/missing.onnx",
                     "vnnlib/linear_sat.vnnlib", cwd=tiny)
    assert missing.returncode == 1 and "missing.onnx not found" in missing.stderr
    assert script("prepare_instance.sh", "v1", "tiny", cwd=tiny).returncode == 1


@pytest.mark.parametrize("onnx_path, vnnlib, answer", [
    ("onnx/relu.onnx", "vnnlib/relu_sat.vnnlib", "sat"),  # both only exist as .gz
    ("onnx/linear.onnx", "vnnlib/linear_unsat.vnnlib", "unsat"),
    ("onnx/linear.onnx", "vnnlib/broken.vnnlib", "error"),
])
def test_run_instance_writes_the_result_file_and_exits_0(tiny, tmp_path, onnx_path, vnnlib,
                                                         answer):
    results = tmp_path / "out.txt"
    results.write_text("stale answer from an earlier run\n")
    done = script("run_instance.sh", "v1", "tiny", onnx_path, vnnlib, results, 10, cwd=tiny)
    assert done.returncode == 0, done.stderr
    text = results.read_text()
    assert text.splitlines()[0] == answer
    if answer == "sat":
        assert check_counterexample(tiny / "onnx/relu.onnx.gz", tiny / "vnnlib/relu_sat.vnnlib.gz",
                                    text).valid


def test_run_instance_answers_error_when_the_verifier_cannot_start(tiny, tmp_path):
    results = tmp_path / "out.txt"
    env = dict(os.environ, VERIFIER_PYTHON="/nonexistent/python")
    done = subprocess.run(["bash", str(SCRIPTS / "run_instance.sh"), "v1", "tiny",
                           "onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", str(results), "5"],
                          cwd=tiny, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert results.read_text() == "error\n"


def test_run_instance_rejects_a_bad_timeout(tiny, tmp_path):
    done = script("run_instance.sh", "v1", "tiny", "onnx/linear.onnx",
                  "vnnlib/linear_sat.vnnlib", tmp_path / "r.txt", "soon", cwd=tiny)
    assert done.returncode == 1 and "TIMEOUT must be a positive number" in done.stderr


def test_the_runner_can_drive_run_instance_sh(tiny, tmp_path, monkeypatch):
    """The benchmark runner with the official script as its per-instance command,
    on instance names without .gz (the runner finds the .gz files)."""

    def command(model, prop, timeout, result_file):
        return ["bash", str(SCRIPTS / "run_instance.sh"), "v1", "tiny", str(model), str(prop),
                str(result_file), f"{timeout:g}"]

    instances = [Instance("onnx/relu.onnx", "vnnlib/relu_sat.vnnlib", 10.0)]
    monkeypatch.setenv("VERIFIER_PYTHON", sys.executable)
    report = run_benchmark(tiny, instances, tmp_path / "r.csv", command=command)
    row = report.rows[0]
    assert row.result.value == "sat" and row.check.valid
