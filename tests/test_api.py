"""The top-level Python API (audit 7a3fb1e, B2.1, B2.3, B4.5, B4.6)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import verifier
from tests.builders import save
from tests.test_cli_contract import relu_mlp
from verifier.errors import MismatchError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def mlp(tmp_path):
    model = save(relu_mlp(), tmp_path / "mlp.onnx")
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i, (lo, hi) in enumerate([(-0.2, 0.1), (0.0, 0.3), (0.2, 0.25)]):
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    lines.append("(assert (or (and (>= Y_1 Y_0)) (and (<= Y_0 -100.0))))")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    return model, prop


def python(code: str, env=None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**clean, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_verify_can_be_called_again_and_again(mlp):
    model, prop = mlp
    first = verifier.verify(model, prop, verifier.Options(timeout=20))
    second = verifier.verify(model, prop, verifier.Options(timeout=20))
    assert first.verdict == second.verdict
    assert first.verdict in (verifier.Verdict.SAT, verifier.Verdict.UNSAT)


def test_verify_takes_a_model_as_path_bytes_or_proto(mlp):
    import onnx

    model, prop = mlp
    by_path = verifier.verify(model, prop, verifier.Options(timeout=20))
    data = Path(model).read_bytes()
    for given in (data, onnx.load_model_from_string(data)):
        result = verifier.verify(given, prop, verifier.Options(timeout=20))
        assert result.verdict == by_path.verdict
    with pytest.raises(MismatchError, match="<model>"):
        verifier.verify(data, Path(ROOT / "verifier" / "examples" / "tiny_mlp_robust.vnnlib"))


def test_verify_is_callable_however_the_submodule_was_imported_first(mlp):
    model, prop = mlp
    out = python(f"""
from verifier.verify import Options          # binds the submodule on the package first
import verifier
import verifier.verify as driver             # the module stays reachable
assert driver.Options is Options
print([verifier.verify({str(model)!r}, {str(prop)!r}, Options(timeout=20)).verdict.value
       for _ in range(2)])
""")
    assert out.strip() in ("['sat', 'sat']", "['unsat', 'unsat']")


def test_top_level_names():
    from verifier.errors import VerifierError

    assert verifier.VerifierError is VerifierError
    listed = dir(verifier)
    for name in ("load_model", "load_property", "compute_bounds", "verify", "Options",
                 "VerifierError", "bound_problems", "evaluate", "Verdict"):
        assert name in listed
    assert not [name for name in listed if name.startswith("_") and name != "__version__"]


def test_graph_repr_is_a_summary_not_the_weights(mlp):
    graph = verifier.load_model(mlp[0])
    text = repr(graph)
    assert len(text) < 300 and "array" not in text
    assert "Linear x2" in text and "[1, 3]" in text and f"{graph.parameter_count():,}" in text


def test_evaluate_rejects_inputs_of_the_wrong_shape(mlp):
    graph = verifier.load_model(mlp[0])          # input shape (1, 3)
    assert verifier.evaluate(graph, np.zeros((1, 3))).shape == (1, 2)   # unbatched
    assert verifier.evaluate(graph, np.zeros((5, 1, 3))).shape == (5, 1, 2)
    for bad in (np.zeros(3), np.zeros((2, 3)), np.zeros((1, 3, 1)), np.zeros((1, 4))):
        with pytest.raises(MismatchError, match=r"\(1, 3\)"):
            verifier.evaluate(graph, bad)


def test_bound_problems_feed_compute_bounds_soundly(mlp):
    graph = verifier.load_model(mlp[0])
    prop = verifier.load_property(mlp[1])
    problems = verifier.bound_problems(prop)
    assert [(p.case, p.polytope, p.C.shape) for p in problems] == [(0, 0, (1, 2)), (0, 1, (1, 2))]
    rng = np.random.default_rng(1)
    for problem in problems:
        result = verifier.compute_bounds(graph, problem.box, method="crown", C=problem.C,
                                         d=problem.d)
        x = problem.box.lower + rng.random((500, 3)) * (problem.box.upper - problem.box.lower)
        y = verifier.evaluate(graph, x.reshape(-1, 1, 3)).reshape(-1, 2)
        values = y @ problem.C.T - problem.d
        assert (values >= result.lower - 1e-9).all() and (values <= result.upper + 1e-9).all()
    assert "case 0, polytope 1" in repr(problems[1]) and "array" not in repr(problems[1])


def test_verdict_has_a_docstring():
    assert "counterexample" in verifier.Verdict.__doc__


def test_library_use_defaults_to_one_blas_thread():
    out = python("import os, verifier; print(os.environ['OPENBLAS_NUM_THREADS'])")
    assert out.strip() == "1"
    mine = python("import os, verifier; print(os.environ['OPENBLAS_NUM_THREADS'])",
                  env={"OPENBLAS_NUM_THREADS": "2"})
    assert mine.strip() == "2"  # a value the user set is kept


def test_api_verify_returns_by_its_timeout(tmp_path):
    """The API deadline reaches the bound engine: a network whose alpha-CROWN
    pass alone takes seconds still answers about when Options.timeout says."""
    from tests.bounds.test_deadline import slow_mlp

    model = save(slow_mlp(), tmp_path / "slow.onnx")
    graph = verifier.load_model(model)
    x = np.random.default_rng(1).uniform(-0.5, 0.5, size=(4000, 1, 20))
    top = float(verifier.evaluate(graph, x)[..., 0].max())
    lines = [f"(declare-const X_{i} Real)" for i in range(20)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i in range(20):
        lines += [f"(assert (>= X_{i} -0.5))", f"(assert (<= X_{i} 0.5))"]
    lines.append(f"(assert (>= Y_0 {top + 0.5!r}))")
    prop = tmp_path / "hard.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    result = verifier.verify(model, prop, verifier.Options(timeout=5.0))
    elapsed = time.monotonic() - start
    assert result.verdict in (verifier.Verdict.TIMEOUT, verifier.Verdict.UNKNOWN)
    assert elapsed <= 5.0 + 1.5, (elapsed, result.reason)  # 7a3fb1e: 10.3 s at timeout 6
