"""End to end: linear input constraints, properties without output constraints,
contradictory output constraints and single-point boxes (audit 7a3fb1e items
B1.5, B2.2, B3.4, B3.8), on small generated networks and on acasxu."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.builders import chain_model, save
from tests.conftest import require_shared
from verifier.cli import main
from verifier.frontend import load_model
from verifier.ir import evaluate
from verifier.result import Verdict
from verifier.search.attack import Targets, pgd, sample_margins
from verifier.spec import load_property
from verifier.spec.property import OutputPolytope
from verifier.verify import Options, verify


def declarations(n_in, n_out):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))


def prop_text(lower, upper, *asserts, n_out=2):
    text = declarations(len(lower), n_out)
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        text += f"(assert (>= X_{i} {float(lo)!r}))\n(assert (<= X_{i} {float(hi)!r}))\n"
    return text + "".join(f"(assert {a})\n" for a in asserts)


def write(tmp_path, text, name="p.vnnlib"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def sum_net(tmp_path):
    """y0 = x0 + x1 and y1 = x0 - x1 on [1, 2] inputs in [-1, 1]^2, through a ReLU
    that is always active there (+3 before it, -3 after)."""
    W = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    layers = [("Gemm", [W, np.full(2, 3.0, np.float32)], {"transB": 1}), ("Relu", [], {}),
              ("Gemm", [np.eye(2, dtype=np.float32), np.full(2, -3.0, np.float32)],
               {"transB": 1})]
    return save(chain_model(layers, (1, 2)), tmp_path / "sum.onnx")


BOX = ([-1.0, -1.0], [1.0, 1.0])
# a band of width 1e-6 that no sub-box centre or uniform sample ever hits
BAND = ("(<= (- X_0 X_1) 0.300001)", "(>= (- X_0 X_1) 0.3)")


def test_empty_input_region_is_unsat_before_any_bound(tmp_path, sum_net):
    prop = write(tmp_path, prop_text(*BOX, "(<= (+ X_0 X_1) -2.5)", "(>= Y_0 -1000000000.0)"))
    result = verify(sum_net, prop, Options(timeout=5))
    assert result.verdict is Verdict.UNSAT
    assert "input region is empty" in result.reason
    assert "domains" not in result.stats and result.stats["empty_input_regions"] == 1


def test_counterexample_inside_a_thin_band_of_linear_constraints(tmp_path, sum_net):
    prop = write(tmp_path, prop_text(*BOX, *BAND, "(>= Y_0 1.5)"))
    result = verify(sum_net, prop, Options(timeout=10))
    assert result.verdict is Verdict.SAT
    x = result.counterexample.x.astype(np.float64)
    assert 0.3 <= x[0] - x[1] <= 0.300001 and result.counterexample.y[0] >= 1.5
    assert load_property(prop).is_counterexample(x, result.counterexample.y)


def test_linear_constraints_tighten_the_box_for_the_proof(tmp_path, sum_net):
    # on the band, x0 + x1 <= 1.700001; on the box it reaches 2
    prop = write(tmp_path, prop_text(*BOX, *BAND, "(>= Y_0 1.8)"))
    result = verify(sum_net, prop, Options(timeout=10))
    assert result.verdict is Verdict.UNSAT
    assert result.stats["domains"] <= 4


def test_input_splitting_drops_sub_boxes_outside_the_polytope(tmp_path, sum_net):
    # x0 + x1 <= 0 leaves the box as it is, so only splitting with the
    # constraint (sub-boxes above the line dropped or shrunk) can prove y0 < 0.1
    prop = write(tmp_path, prop_text(*BOX, "(<= (+ X_0 X_1) 0.0)", "(>= Y_0 0.1)"))
    result = verify(sum_net, prop, Options(timeout=20))
    assert result.verdict is Verdict.UNSAT, result.reason
    assert "input splitting" in result.reason


def test_relu_splitting_bounds_over_the_tightened_box(tmp_path):
    # 20 inputs (ReLU splitting); y0 = sum(x) through an always-active ReLU.
    # x0 + x1 <= -1.9 tightens x0, x1 to [-1, -0.9]: sum(x) <= 16.2 there, 20 on the box
    layers = [("Gemm", [np.ones((1, 20), np.float32), np.full(1, 30.0, np.float32)],
               {"transB": 1}), ("Relu", [], {}),
              ("Gemm", [np.ones((1, 1), np.float32), np.full(1, -30.0, np.float32)],
               {"transB": 1})]
    net = save(chain_model(layers, (1, 20)), tmp_path / "sum20.onnx")
    prop = write(tmp_path, prop_text([-1.0] * 20, [1.0] * 20, "(<= (+ X_0 X_1) -1.9)",
                                     "(>= Y_0 17.0)", n_out=1))
    result = verify(net, prop, Options(timeout=10))
    assert result.verdict is Verdict.UNSAT, result.reason
    assert result.stats["strategy"] == "relu-split" and "CROWN" in result.reason


def test_no_output_assertion_is_sat_with_a_point_of_the_region(tmp_path, sum_net):
    prop = write(tmp_path, prop_text(*BOX, "(<= (+ X_0 X_1) -1.9)"))
    result = verify(sum_net, prop, Options(timeout=10))
    assert result.verdict is Verdict.SAT
    x = result.counterexample.x.astype(np.float64)
    assert x[0] + x[1] <= -1.9 and np.all(np.abs(x) <= 1)
    text = CliRunner().invoke(main, ["bounds", str(sum_net), str(prop)]).output
    assert "no output constraint" in text and "0/1" not in text
    data = json.loads(CliRunner().invoke(main, ["bounds", str(sum_net), str(prop),
                                                "--json"]).output)
    assert data["unconstrained_disjuncts"] == 1 and not data["proved"]


def test_a_polytope_with_no_row_does_not_break_the_attack(sum_net):
    graph = load_model(sum_net)
    everything = Targets.from_polytopes([OutputPolytope(np.zeros((0, 2)), np.zeros(0))])
    _, margin, _ = pgd(graph, np.full((1, 2), -1.0), np.full((1, 2), 1.0), everything,
                       np.array([0]), steps=3)
    assert np.all(margin < 0)
    targets = Targets.from_polytopes([OutputPolytope(np.zeros((0, 2)), np.zeros(0)),
                                      OutputPolytope(np.array([[-1.0, 0.0]]), np.array([-5.0]))])
    lower, upper = np.full((2, 2), -1.0), np.full((2, 2), 1.0)
    x, margin, _ = pgd(graph, lower, upper, targets, np.array([0, 1]), steps=3)
    assert margin[0] < 0 and margin[1] > 0     # no row: always reached; y0 >= 5: never
    _, margin, _ = sample_margins(graph, lower, upper, targets, np.array([0, 1]), 4,
                                  np.random.default_rng(0))
    assert margin.shape == (8,) and np.all(margin[:4] < 0)


@pytest.mark.parametrize("unsafe", ["(< Y_0 Y_0)", "(and (<= Y_0 0) (>= Y_0 1))",
                                    "(<= 1.0 0.0)", "(and (< Y_0 1) (> Y_0 1))"])
def test_contradictory_output_constraints_are_unsat_before_any_bound(tmp_path, sum_net,
                                                                      unsafe):
    prop = write(tmp_path, prop_text(*BOX, unsafe))
    result = verify(sum_net, prop, Options(timeout=5))
    assert result.verdict is Verdict.UNSAT
    assert "no solution on their own" in result.reason and "domains" not in result.stats


def test_a_contradictory_disjunct_is_dropped_and_the_rest_proved(tmp_path, sum_net):
    prop = write(tmp_path, prop_text(*BOX, "(or (< Y_0 Y_0) (>= Y_0 2.5))"))
    result = verify(sum_net, prop, Options(timeout=10))
    assert result.verdict is Verdict.UNSAT
    assert result.stats["infeasible_unsafe_polytopes"] == 1
    assert "no solution on their own" in result.reason


def test_a_single_point_box_is_not_split_forever(tmp_path, sum_net):
    # x = (0.25, 0.25): y0 = 0.5 exactly, the strict row y0 < 0.5 is neither
    # refuted (bound 0, within the margin) nor violated
    prop = write(tmp_path, prop_text([0.25, 0.25], [0.25, 0.25], "(< Y_0 0.5)"))
    result = verify(sum_net, prop, Options(timeout=5))
    assert result.verdict is Verdict.UNKNOWN
    assert "single point" in result.reason and result.stats["domains"] <= 2


def test_proof_reason_names_the_method_on_a_sigmoid_network(tmp_path):
    rng = np.random.default_rng(0)
    layers = [("Gemm", [rng.normal(size=(8, 20)).astype(np.float32) * 0.1,
                        np.zeros(8, np.float32)], {"transB": 1}), ("Sigmoid", [], {}),
              ("Gemm", [np.ones((1, 8), np.float32), np.zeros(1, np.float32)], {"transB": 1})]
    net = save(chain_model(layers, (1, 20)), tmp_path / "sig.onnx")
    prop = write(tmp_path, prop_text([-1.0] * 20, [1.0] * 20, "(>= Y_0 8.5)", n_out=1))
    result = verify(net, prop, Options(timeout=20))
    assert result.verdict is Verdict.UNSAT
    assert "relu" not in result.reason.lower() and "CROWN" in result.reason
    assert result.stats["strategy"] == "activation-split"  # proved before any split


ACAS_BOX = prop_text([-0.5] * 5, [0.5] * 5, n_out=5)


@pytest.mark.parametrize("extra, verdict", [
    ("(assert (<= (+ X_0 X_1) -0.9))\n(assert (>= Y_0 -1000000000.0))\n", Verdict.SAT),
    ("(assert (<= (+ X_0 X_1) -1.5))\n(assert (>= Y_0 -1000000000.0))\n", Verdict.UNSAT),
    ("", Verdict.SAT),
    ("(assert (< Y_0 Y_0))\n", Verdict.UNSAT),
    ("(assert (and (<= Y_0 0) (>= Y_0 1)))\n", Verdict.UNSAT),
    ("(assert (<= 0.0 1.0))\n", Verdict.SAT),
], ids=["lin_in", "lin_in_empty", "no_output", "lt_self", "contradiction", "true_constant"])
def test_audit_reproductions_on_acasxu(tmp_path, extra, verdict):
    model = require_shared("vnncomp", "acasxu", "onnx", "ACASXU_run2a_1_1_batch_2000.onnx")
    prop = write(tmp_path, ACAS_BOX + extra)
    result = verify(model, prop, Options(timeout=20))
    assert result.verdict is verdict, result.reason
    assert result.seconds < 10 and "domains" not in result.stats
    if verdict is Verdict.SAT:
        x = result.counterexample.x.astype(np.float64)
        assert load_property(prop).is_counterexample(x, result.counterexample.y)


@pytest.mark.parametrize("seed", [101, 104, 106, 111, 113, 125, 14, 21])
def test_random_linear_regions_agree_with_dense_sampling(tmp_path, seed):
    """Random ReLU nets, random rows A x <= b (some regions empty or thin) and a
    threshold near the sampled maximum: unsat never contradicts a sampled
    point of the region, sat carries a point of the region."""
    rng = np.random.default_rng(seed)
    n, hidden = int(rng.integers(2, 5)), 10
    layers = [("Gemm", [rng.normal(size=(hidden, n)).astype(np.float32),
                        rng.normal(size=hidden).astype(np.float32)], {"transB": 1}),
              ("Relu", [], {}),
              ("Gemm", [rng.normal(size=(2, hidden)).astype(np.float32),
                        rng.normal(size=2).astype(np.float32)], {"transB": 1})]
    net = save(chain_model(layers, (1, n)), tmp_path / "net.onnx")
    k = int(rng.integers(1, 4))
    A = rng.normal(size=(k, n))
    b = A @ rng.uniform(-1, 1, n) + rng.uniform(-2.0 if seed > 99 else -0.5,
                                                0.05 if seed > 99 else 0.8, k)
    x = rng.uniform(-1, 1, (40000, n))
    x = x[np.all(x @ A.T <= b, axis=1)]
    reached = -np.inf                      # the largest sampled y0 - y1 in the region
    if len(x):
        y = evaluate(load_model(net), x.reshape(-1, 1, n)).reshape(-1, 2)
        reached = float((y[:, 0] - y[:, 1]).max())
    gap = reached + float(rng.choice([-0.002, 0.001, 0.01, 0.05, 0.3])) if len(x) else 0.0
    rows = [f"(<= (+ {' '.join(f'(* {float(a)!r} X_{i})' for i, a in enumerate(row))}) "
            f"{float(rhs)!r})" for row, rhs in zip(A, b)]
    prop = write(tmp_path, prop_text([-1.0] * n, [1.0] * n, *rows, f"(>= (- Y_0 Y_1) {gap!r})"))
    result = verify(net, prop, Options(timeout=10))
    if reached >= gap:
        assert result.verdict is Verdict.SAT
    else:
        assert result.verdict in (Verdict.SAT, Verdict.UNSAT)
    if result.verdict is Verdict.SAT:
        cex = result.counterexample
        assert load_property(prop).is_counterexample(cex.x.astype(np.float64), cex.y)
