"""The CLI's failure contract, deadlines and outputs (audit 7a3fb1e, B1.1, B2.3-B2.5,
B3.1-B3.3, B3.6, B4.1, B4.3, B2.10).

Whatever goes wrong: a one-paragraph ``error: ...`` on stderr (no traceback),
exit 2 (130 on Ctrl-C), ``error`` in --result-file, and with --json one
``{"result": "error", ...}`` object on stdout.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.builders import chain_model, save
from tests.conftest import require_shared
from tests.test_verify import box_property
from verifier.cli import main
from verifier.result import Result, Verdict, write_result_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    """|x| on [-1, 1]: an unsat, a sat and a robustness property."""
    model = save(chain_model([("Abs", [], {})], (1, 1)), tmp_path / "abs.onnx")
    unsat = tmp_path / "unsat.vnnlib"
    unsat.write_text(box_property([-1.0], [1.0], "(<= Y_0 -0.01)", 1))
    sat = tmp_path / "sat.vnnlib"
    sat.write_text(box_property([-1.0], [1.0], "(>= Y_0 0.9)", 1))
    return str(model), str(unsat), str(sat)


def relu_mlp():
    """A 3-input, 2-class ReLU MLP."""
    rng = np.random.default_rng(0)
    layers = [("Gemm", [rng.normal(size=(12, 3)).astype(np.float32),
                        rng.normal(size=12).astype(np.float32)], {"transB": 1}),
              ("Relu", [], {}),
              ("Gemm", [rng.normal(size=(2, 12)).astype(np.float32),
                        np.zeros(2, np.float32)], {"transB": 1})]
    return chain_model(layers, (1, 3))


@pytest.fixture
def mlp(tmp_path):
    """:func:`relu_mlp` and a robustness property around a point."""
    model = save(relu_mlp(), tmp_path / "mlp.onnx")
    prop = tmp_path / "rob.vnnlib"
    prop.write_text(box_property([-0.01, 0.1, 0.2], [0.01, 0.12, 0.22], "(>= Y_1 Y_0)", 2))
    return str(model), str(prop)


def invoke(args):
    return CliRunner().invoke(main, args)


def stderr_of(result) -> str:
    return result.stderr if hasattr(result, "stderr") else result.output


def assert_one_paragraph_error(text: str, *words):
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, text
    assert "Traceback" not in text
    for word in words:
        assert word in errors[0], (word, errors[0])


def json_line(output: str) -> dict:
    objects = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(objects) == 1, output
    return objects[0]


# ----------------------------------------------------------------- result file


@pytest.mark.parametrize("where", ["missing-dir", "under-a-file", "a-directory"])
def test_unusable_result_file_is_refused_before_the_search(tmp_path, files, monkeypatch, where):
    import verifier.verify as driver

    calls = []
    monkeypatch.setattr(driver, "verify", lambda *a, **k: calls.append(a))
    (tmp_path / "plain").write_text("x")
    (tmp_path / "dir").mkdir()
    target = {"missing-dir": tmp_path / "nodir" / "r.txt",
              "under-a-file": tmp_path / "plain" / "r.txt",
              "a-directory": tmp_path / "dir"}[where]
    model, unsat, _ = files
    result = invoke(["verify", model, unsat, "--json", "--result-file", str(target)])
    assert result.exit_code == 2
    assert not calls  # refused before any work
    assert_one_paragraph_error(stderr_of(result), str(target), "--result-file")
    assert json_line(result.stdout)["result"] == "error"
    assert (tmp_path / "dir").is_dir() and not list((tmp_path / "dir").iterdir())


class FakeOrtError(RuntimeError):
    """Stands for onnxruntime's own exception types."""


FakeOrtError.__module__ = "onnxruntime.capi.onnxruntime_pybind11_state"


@pytest.mark.parametrize("exc, words, code", [
    (RuntimeError("boom"), ["internal error", "RuntimeError: boom", "VERIFIER_DEBUG=1"], 2),
    (OSError(errno.EACCES, "Permission denied", "/some/file"), ["Permission denied",
                                                                "/some/file"], 2),
    (MemoryError(), ["out of memory"], 2),
    (FakeOrtError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT"), ["onnxruntime failed",
                                                                 "INVALID_ARGUMENT"], 2),
    (AttributeError("module 'onnxruntime' has no attribute 'SessionOptions'"),
     ["onnxruntime installation is broken", "SessionOptions"], 2),
    (KeyboardInterrupt(), ["interrupted"], 130),
], ids=["bug", "oserror", "memory", "onnxruntime", "broken-install", "ctrl-c"])
def test_any_exception_follows_the_contract(tmp_path, files, monkeypatch, exc, words, code):
    import verifier.verify as driver

    def explode(*args, **kwargs):
        raise exc

    monkeypatch.setattr(driver, "verify", explode)
    model, unsat, _ = files
    out = tmp_path / "result.txt"
    result = invoke(["verify", model, unsat, "--json", "--result-file", str(out)])
    assert result.exit_code == code
    assert_one_paragraph_error(stderr_of(result), *words)
    assert out.read_text() == "error\n"
    data = json_line(result.stdout)
    assert data["result"] == "error" and words[0] in data["reason"]
    assert data["model"] == model and data["property"] == unsat


def test_debug_variable_shows_the_traceback(files, monkeypatch):
    import verifier.verify as driver

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(driver, "verify", explode)
    monkeypatch.setenv("VERIFIER_DEBUG", "1")
    result = invoke(["verify", *files[:2]])
    assert result.exit_code == 2
    assert "Traceback" in stderr_of(result) and "RuntimeError: boom" in stderr_of(result)


@pytest.mark.parametrize("args", [
    ["{dir}", "{unsat}"], ["{model}", "{dir}"], ["{missing}", "{unsat}"],
    ["{model}", "{unsat}", "--timeout", "0"], ["{model}", "{unsat}", "--timeout", "-5"],
    ["{model}", "{unsat}", "--timeout", "abc"], ["{model}", "{unsat}", "--timeout", "nan"],
    ["{model}", "{unsat}", "--timeout", "inf"], ["{model}", "{unsat}", "--timeout", "1e400"],
    ["{model}", "{unsat}", "--smoothing-sigma", "nan"], ["{model}", "{unsat}", "--bogus"],
    ["{model}"],
], ids=["model-dir", "property-dir", "missing-model", "timeout-0", "timeout-neg",
        "timeout-abc", "timeout-nan", "timeout-inf", "timeout-1e400", "sigma-nan",
        "unknown-option", "missing-argument"])
def test_usage_errors_follow_the_contract(tmp_path, files, args):
    model, unsat, _ = files
    names = {"dir": str(tmp_path), "unsat": unsat, "model": model,
             "missing": str(tmp_path / "missing.onnx")}
    out = tmp_path / "result.txt"
    result = invoke(["verify", *(a.format(**names) for a in args), "--json",
                     "--result-file", str(out)])
    assert result.exit_code == 2
    assert_one_paragraph_error(stderr_of(result))
    assert "Usage:" not in result.output
    assert out.read_text() == "error\n"
    assert json_line(result.stdout)["result"] == "error"


@pytest.mark.parametrize("command", ["verify", "bounds", "inspect", "spec"])
def test_a_directory_is_reported_in_the_same_words_by_every_command(tmp_path, files, command):
    model, unsat, _ = files
    args = {"verify": [model, str(tmp_path)], "bounds": [model, str(tmp_path)],
            "inspect": [str(tmp_path)], "spec": [str(tmp_path)]}[command]
    result = invoke([command, *args])
    assert result.exit_code == 2
    kind = "model" if command == "inspect" else "property"
    assert_one_paragraph_error(stderr_of(result), f"{kind} path is a directory, not a file")


@pytest.mark.parametrize("command", ["verify", "bounds", "inspect", "spec"])
def test_json_errors_are_json_on_stdout(tmp_path, files, command):
    model, unsat, _ = files
    broken = tmp_path / "broken.vnnlib"
    broken.write_text("(declare-const X_0 Real)\n(assert (<= X_0")
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"not an onnx model")
    args = {"verify": [model, str(broken)], "bounds": [model, str(broken)],
            "inspect": [str(bad_model)], "spec": [str(broken)]}[command]
    result = invoke([command, *args, "--json"])
    assert result.exit_code == 2
    data = json_line(result.stdout)
    assert data["result"] == "error"
    assert ("broken.vnnlib" if command != "inspect" else "bad.onnx") in data["reason"]


def test_result_files_have_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "r.txt"
        write_result_file(path, Result(Verdict.UNKNOWN))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        write_result_file(path, Result(Verdict.TIMEOUT))  # overwriting keeps 0644
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o640)
        write_result_file(path, Result(Verdict.ERROR))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "error\n"
        os.umask(0o027)
        fresh = tmp_path / "fresh.txt"
        write_result_file(fresh, Result(Verdict.UNKNOWN))
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
        assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.txt", "r.txt"]
    finally:
        os.umask(old)


# ------------------------------------------------------------- outputs and options


def test_plain_verify_shows_the_counterexample(files):
    model, _, sat = files
    result = invoke(["verify", model, sat])
    assert result.exit_code == 1
    assert result.stdout.strip() == "sat"
    shown = stderr_of(result)
    assert "counterexample" in shown and "X = [" in shown and "Y = [" in shown
    x = float(shown.split("X = [")[1].split("]")[0])
    y = float(shown.split("Y = [")[1].split("]")[0])
    assert abs(x) >= 0.9 and y == pytest.approx(abs(x))


def test_json_names_the_inputs_and_gives_seconds_once(files):
    model, unsat, _ = files
    result = invoke(["verify", model, unsat, "--json"])
    assert result.exit_code == 0
    data = json_line(result.stdout)
    assert list(data)[:4] == ["result", "reason", "model", "property"]
    assert data["model"] == model and data["property"] == unsat
    assert data["seconds"] > 0 and "seconds" not in data["stats"]


def many_disjuncts(tmp_path, count=3):
    text = box_property([-1.0], [1.0], "(or " + " ".join(
        f"(and (<= Y_0 {-k - 1.0!r}))" for k in range(count)) + ")", 1)
    path = tmp_path / "many.vnnlib"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("command", ["verify", "bounds", "spec"])
def test_max_disjuncts_from_the_cli(tmp_path, files, command):
    model = files[0]
    prop = many_disjuncts(tmp_path)
    args = [model, prop] if command != "spec" else [prop]
    refused = invoke([command, *args, "--max-disjuncts", "2"])
    assert refused.exit_code == 2
    assert_one_paragraph_error(stderr_of(refused), "2")
    accepted = invoke([command, *args, "--max-disjuncts", "3"])
    assert accepted.exit_code == 0, accepted.output


def test_bounds_rejects_non_finite_timeout(files):
    result = invoke(["bounds", *files[:2], "--timeout", "inf"])
    assert result.exit_code == 2
    assert_one_paragraph_error(stderr_of(result), "--timeout", "finite")


def run_cli(args, timeout=60, env=None):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return proc, time.monotonic() - start


def test_inspect_times_the_model_not_the_imports(files):
    proc, _ = run_cli(["inspect", files[0], "--samples", "0", "--json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["load_seconds"] < 0.25  # importing onnx alone takes longer


# ----------------------------------------------------------- the hard stop


HUNG_SEARCH = textwrap.dedent("""
    import os, sys, time
    import verifier.verify as driver

    def hung(model, prop, options=None, *, stats=None):
        stats["phase"] = "branch and bound"
        stats["domains"] = 41
        open(os.path.join(os.path.dirname(__file__), "started"), "w").close()
        time.sleep(60)  # stands for a call that ignores its deadline

    driver.verify = hung
    from verifier.cli import run
    sys.argv = ["verifier"] + sys.argv[1:]
    run()
""")


def run_hung(tmp_path, args):
    script = tmp_path / "hung.py"
    script.write_text(HUNG_SEARCH)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, time.monotonic() - start


def test_hard_stop_keeps_the_reason_the_time_and_the_stats(tmp_path, files):
    model, unsat, _ = files
    out = tmp_path / "r.txt"
    # (timeouts of a few seconds: imports alone took 2-3 s on a loaded 2-core machine)
    proc, wall = run_hung(tmp_path, ["verify", model, unsat, "--timeout", "4", "--json",
                                     "--result-file", str(out)])
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["result"] == "timeout"
    assert "hard time limit" in data["reason"] and "branch and bound" in data["reason"]
    assert data["stats"]["domains"] == 41
    assert 4.0 <= data["seconds"] <= wall + 0.05  # process start: clock-tick (10 ms) resolution
    assert wall <= 4.0 + 2.0
    assert out.read_text() == "timeout\n"


def test_smoothing_certificate_starts_by_itself_while_the_search_runs(mlp):
    """The certificate thread starts at the end of the search's share of the
    time and fills the shared stats, which the hard stop reports, even when
    the search never returns (here: the test thread just waits)."""
    from verifier.cli.verify_cmd import CertificateJob

    model, prop = mlp
    stats = {}
    job = CertificateJob(model, prop, 0.05, 300, 0, stats, begin_at=time.monotonic() + 0.2)
    deadline = time.monotonic() + 60
    while "smoothing" not in stats and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not job.close()  # finished, nothing left running
    certificate = stats["smoothing"]
    assert certificate["n"] == 300 and certificate["radius"] > 0, certificate


def test_real_search_returns_within_the_timeout_on_a_hard_instance(tmp_path):
    net = require_shared("vnncomp", "mnist_fc", "onnx", "mnist-net_256x6.onnx")
    prop = require_shared("vnncomp", "mnist_fc", "vnnlib", "prop_1_0.05.vnnlib")
    out = tmp_path / "r.txt"
    proc, wall = run_cli(["verify", str(net), str(prop), "--timeout", "4", "--json",
                          "--result-file", str(out)])
    assert proc.returncode == 3, proc.stderr
    data = json.loads(proc.stdout)
    assert data["result"] in ("timeout", "unknown")
    assert wall <= 4.0 + 2.0
    assert out.read_text().strip() == data["result"]


def test_ctrl_c_in_a_real_process(tmp_path, files):
    import signal

    model, unsat, _ = files
    out = tmp_path / "r.txt"
    script = tmp_path / "hung.py"
    script.write_text(HUNG_SEARCH)
    # a shell's background job starts with SIGINT ignored, and Python keeps it
    # so: give the child the default disposition, as an interactive shell does
    proc = subprocess.Popen([sys.executable, str(script), "verify", model, unsat, "--timeout",
                             "60", "--json", "--result-file", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:  # until the search starts
        if (tmp_path / "started").exists():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert_one_paragraph_error(stderr, "interrupted")
    assert json.loads(stdout)["result"] == "error"
    assert out.read_text() == "error\n"


def test_a_closed_stdout_is_an_error_not_sat(files):
    """Writing the answer to a closed pipe must not exit 1 (the sat code)."""
    model, unsat, _ = files
    proc = subprocess.Popen([sys.executable, "-m", "verifier", "verify", model, unsat, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 2, stderr
    assert_one_paragraph_error(stderr, "Broken pipe")
