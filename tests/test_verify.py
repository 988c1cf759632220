"""End-to-end verification on small generated networks with known answers."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.builders import chain_model, save
from verifier.cli import main
from verifier.result import (
    Counterexample, Result, Verdict, float32_admissible, float32_inside, format_result,
    replay_counterexample,
)
from verifier.spec.property import InputRegion, OutputPolytope
from verifier.verify import Options, verify


def box_property(lower, upper, unsafe: str, n_out: int) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lower))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    lines.append(f"(assert {unsafe})")
    return "\n".join(lines) + "\n"


@pytest.fixture
def abs_net(tmp_path):
    """y = relu(x) + relu(-x) = |x| on a [1, 1] input (Abs lowers to two ReLUs)."""
    return save(chain_model([("Abs", [], {})], (1, 1)), tmp_path / "abs.onnx")


@pytest.fixture
def mlp(tmp_path):
    rng = np.random.default_rng(0)
    layers = [("Gemm", [rng.normal(size=(12, 3)).astype(np.float32),
                        rng.normal(size=12).astype(np.float32)], {"transB": 1}),
              ("Relu", [], {}),
              ("Gemm", [rng.normal(size=(8, 12)).astype(np.float32),
                        rng.normal(size=8).astype(np.float32)], {"transB": 1}),
              ("Sigmoid", [], {}),
              ("Gemm", [rng.normal(size=(2, 8)).astype(np.float32),
                        np.zeros(2, np.float32)], {"transB": 1})]
    return save(chain_model(layers, (1, 3)), tmp_path / "mlp.onnx")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_abs_network_unsat_and_sat(tmp_path, abs_net):
    unsat = write(tmp_path, "u.vnnlib", box_property([-1.0], [1.0], "(<= Y_0 -0.01)", 1))
    result = verify(abs_net, unsat, Options(timeout=20))
    assert result.verdict is Verdict.UNSAT
    sat = write(tmp_path, "s.vnnlib", box_property([-1.0], [1.0], "(>= Y_0 0.9)", 1))
    result = verify(abs_net, sat, Options(timeout=20))
    assert result.verdict is Verdict.SAT
    x, y = result.counterexample.x, result.counterexample.y
    assert -1 <= x[0] <= 1 and abs(x[0]) >= 0.9 and y[0] >= 0.9


def test_mlp_with_sigmoid_known_answers(tmp_path, mlp):
    from verifier.frontend import load_model
    from verifier.ir import evaluate

    graph = load_model(mlp)
    lower, upper = np.array([-0.3, -0.2, 0.1]), np.array([0.2, 0.3, 0.4])
    samples = lower + np.random.default_rng(1).random((20000, 3)) * (upper - lower)
    y = evaluate(graph, samples.reshape(-1, 1, 3)).reshape(-1, 2)
    reached = float((y[:, 0] - y[:, 1]).max())
    # some sampled point exceeds reached - 0.05: a counterexample must be found
    sat = write(tmp_path, "s.vnnlib", box_property(
        lower, upper, f"(>= Y_0 (+ Y_1 {reached - 0.05!r}))", 2))
    result = verify(mlp, sat, Options(timeout=30))
    assert result.verdict is Verdict.SAT
    cex = result.counterexample
    assert cex.y[0] - cex.y[1] >= reached - 0.05
    # far above the true maximum: must be proved (never sat)
    unsat = write(tmp_path, "u.vnnlib", box_property(
        lower, upper, f"(>= Y_0 (+ Y_1 {reached + 1.0!r}))", 2))
    result = verify(mlp, unsat, Options(timeout=30))
    assert result.verdict is Verdict.UNSAT


def test_disjunctive_input_regions(tmp_path, abs_net):
    # two input regions; only the second reaches |x| >= 0.95
    text = box_property([-0.5], [0.5], "(>= Y_0 0.95)", 1).replace(
        "(assert (>= X_0 -0.5))\n(assert (<= X_0 0.5))\n",
        "(assert (or (and (>= X_0 -0.5) (<= X_0 0.5)) (and (>= X_0 0.96) (<= X_0 1.0))))\n")
    path = write(tmp_path, "or.vnnlib", text)
    result = verify(abs_net, path, Options(timeout=20))
    assert result.verdict is Verdict.SAT and result.counterexample.x[0] >= 0.96


def test_result_writer_golden_text():
    class FakeSession:
        input_shape = (2,)

        def run(self, x):
            return np.array([[np.float32(0.1) + x[0, 0]]], dtype=np.float32)

    class Prop:
        class _Case:
            region = InputRegion([-2.0, -2.0], [2.0, 2.0])
            unsafe = (OutputPolytope([[-1.0]], [-0.5], [True]),)  # y_0 > 0.5

        cases = (_Case,)

    cex = replay_counterexample(FakeSession(), Prop, np.array([0.5, -1.25]))
    result = Result(Verdict.SAT, cex)
    assert format_result(result) == (
        "sat\n((X_0 0.5)\n(X_1 -1.25)\n(Y_0 0.6000000238418579))\n")
    assert format_result(Result(Verdict.UNSAT)) == "unsat\n"
    # the replay rejects a point that does not violate the property
    assert replay_counterexample(FakeSession(), Prop, np.array([0.1, 0.0])) is None
    with pytest.raises(TypeError):
        Counterexample(np.zeros(1), np.zeros(1), 0)
    with pytest.raises(ValueError):
        Result(Verdict.SAT)


def test_float32_rounding_stays_inside_the_box():
    rng = np.random.default_rng(0)
    lower = rng.uniform(-2, 2, size=2000)
    upper = lower + 4e-7  # narrow, but wider than float32 spacing (<= 2.4e-7 here)
    for point in (lower, upper, (lower + upper) / 2):
        x32 = float32_inside(point, lower, upper).astype(np.float64)
        assert np.all(x32 >= lower) and np.all(x32 <= upper)
    # plain rounding would leave the box for many of these points
    assert np.any(lower.astype(np.float32).astype(np.float64) < lower)


def test_cli_exit_codes_and_result_files(tmp_path, abs_net):
    runner = CliRunner()
    unsat = write(tmp_path, "u.vnnlib", box_property([-1.0], [1.0], "(<= Y_0 -0.01)", 1))
    out = tmp_path / "res.txt"
    result = runner.invoke(main, ["verify", str(abs_net), str(unsat), "--result-file", str(out)])
    assert result.exit_code == 0 and out.read_text() == "unsat\n"
    sat = write(tmp_path, "s.vnnlib", box_property([-1.0], [1.0], "(>= Y_0 0.9)", 1))
    result = runner.invoke(main, ["verify", str(abs_net), str(sat), "--result-file", str(out),
                                  "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["result"] == "sat"
    text = out.read_text().splitlines()
    assert text[0] == "sat" and text[1].startswith("((X_0 ") and text[-1].startswith("(Y_0 ")


@pytest.mark.parametrize("problem", ["missing_model", "bad_property", "size_mismatch"])
def test_bad_input_gives_exit_2_and_error_file(tmp_path, abs_net, problem):
    prop = write(tmp_path, "p.vnnlib", box_property([-1.0], [1.0], "(<= Y_0 -0.01)", 1))
    model = abs_net
    if problem == "missing_model":
        model = tmp_path / "nope.onnx"
    elif problem == "bad_property":
        prop = write(tmp_path, "bad.vnnlib", "(declare-const X_0 Real)\n(assert (<= X_0 1.0)\n")
    else:
        prop = write(tmp_path, "two.vnnlib", box_property([0, 0], [1, 1], "(<= Y_0 0.0)", 1))
    out = tmp_path / "res.txt"
    result = CliRunner().invoke(main, ["verify", str(model), str(prop), "--result-file", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert out.read_text() == "error\n"


def test_timeout_is_honoured(tmp_path):
    """A property that needs much splitting returns timeout/unknown within the limit."""
    import time

    rng = np.random.default_rng(3)
    layers = []
    width = 5
    for _ in range(4):
        layers += [("Gemm", [rng.normal(size=(40, width)).astype(np.float32),
                             rng.normal(size=40).astype(np.float32)], {"transB": 1}),
                   ("Relu", [], {})]
        width = 40
    layers.append(("Gemm", [rng.normal(size=(1, 40)).astype(np.float32)], {"transB": 1}))
    model = save(chain_model(layers, (1, 5)), tmp_path / "deep.onnx")
    from verifier.frontend import load_model
    from verifier.ir import evaluate

    graph = load_model(model)
    samples = rng.uniform(-1, 1, size=(50000, 1, 5))
    top = float(evaluate(graph, samples).max())
    prop = write(tmp_path, "p.vnnlib", box_property([-1.0] * 5, [1.0] * 5,
                                                     f"(>= Y_0 {top + 1e-3!r})", 1))
    start = time.monotonic()
    result = verify(model, prop, Options(timeout=1.0))
    elapsed = time.monotonic() - start
    assert elapsed < 3.0
    assert result.verdict in (Verdict.TIMEOUT, Verdict.UNSAT, Verdict.SAT)
    if result.verdict is Verdict.TIMEOUT:
        assert "time ran out" in result.reason


def test_smoothing_certificate_for_the_json_output(tmp_path, mlp):
    from verifier.cli.verify_cmd import _smoothing_certificate

    prop = write(tmp_path, "rob.vnnlib", box_property(
        [-0.1, 0.0, 0.2], [0.1, 0.2, 0.3], "(>= Y_1 Y_0)", 2))
    cert = _smoothing_certificate(mlp, prop, 0.05, 2000, 0)
    assert cert["label"] == 0 and cert["sigma"] == 0.05 and cert["n"] == 2000
    assert cert["abstained"] or cert["radius"] > 0
    not_robustness = write(tmp_path, "lin.vnnlib", box_property(
        [-0.1, 0.0, 0.2], [0.1, 0.2, 0.3], "(>= Y_1 3.0)", 2))
    assert "skipped" in _smoothing_certificate(mlp, not_robustness, 0.05, 2000, 0)


def test_smoothing_never_changes_a_decided_answer(tmp_path, abs_net):
    prop = write(tmp_path, "u.vnnlib", box_property([-1.0], [1.0], "(<= Y_0 -0.01)", 1))
    result = CliRunner().invoke(main, ["verify", str(abs_net), str(prop), "--json",
                                       "--smoothing-sigma", "0.1"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["result"] == "unsat"
    assert "smoothing" not in data["stats"]


def test_boxes_pinning_inputs_to_non_float32_values_keep_their_counterexample(tmp_path):
    """collins_rul_cnn-style: 100 inputs fixed at 0.1 (no float32 equals 0.1),
    one free; the centre violates the property. The nearest float32 (0.1f)
    stands for 0.1: the answer is sat and the result file carries 0.1f."""
    model = chain_model([("Gemm", [np.ones((1, 101), np.float32)], {"transB": 1})], (1, 101))
    path = save(model, tmp_path / "pinned.onnx")
    lower, upper = np.full(101, 0.1), np.full(101, 0.1)
    lower[100], upper[100] = -1.0, 1.0
    prop = write(tmp_path, "pinned.vnnlib", box_property(lower, upper, "(>= Y_0 9.5)", 1))
    out = tmp_path / "pinned.txt"
    result = CliRunner().invoke(main, ["verify", str(path), str(prop), "--result-file", str(out),
                                       "--timeout", "20"])
    assert result.exit_code == 1, result.output
    text = out.read_text().splitlines()
    assert text[0] == "sat"
    assert f"(X_0 {float(np.float32(0.1))!r})" in text[1]


def test_float32_admissible_is_the_float32_rounding_of_the_box():
    region = InputRegion([0.1, 0.0], [0.1, 1.0], strict_upper=[False, True])
    tenth = np.float32(0.1)
    assert float32_admissible(region, [tenth, 0.5])
    assert float32_admissible(region, [np.nextafter(tenth, np.float32(0)), 0.5])  # other side
    assert not float32_admissible(region, [np.nextafter(tenth, np.float32(1)), 0.5])
    assert not float32_admissible(region, [tenth, 1.0])  # a float32 strict bound stays strict
    assert float32_inside(np.array([0.1, 0.5]), region.lower, region.upper)[0] == tenth


def test_many_polytopes_are_sampled_once_and_attacked_closest_first(mlp):
    """A region with more unsafe polytopes than MANY_POLYTOPES: falsification
    scores them all on one shared sample and finds the one reachable polytope
    among thousands of unreachable ones."""
    from verifier import verify as driver
    from verifier.spec.property import Case, InputRegion, OutputPolytope, Property

    far = [OutputPolytope(np.eye(2)[:1], np.array([-1e6 - k])) for k in range(3000)]
    near = OutputPolytope(-np.eye(2)[:1], np.array([1e6]))  # Y_0 >= -1e6: always reached
    region = InputRegion(np.zeros(3), np.ones(3))
    prop = Property(3, 2, (Case(region, tuple(far) + (near,)),))
    assert len(prop.cases[0].unsafe) > driver.MANY_POLYTOPES
    result = driver.verify(mlp, prop, driver.Options(timeout=20))
    assert result.verdict.value == "sat" and result.stats["found_by"] == "sampling"
