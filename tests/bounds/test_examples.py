"""Hand-checkable examples: the dependency problem, exactness on stable paths,
the L2 dual norm, empty sub-problems, the decision margin and input checks."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from verifier.bounds import (MARGIN_FLOOR, METHODS, BoundOptions, Box, Interval, L2Ball,
                             compute_bounds, refuted)
from verifier.errors import MismatchError, VerifierError
from verifier.ir import evaluate, ops
from verifier.ir.graph import Graph


def dependency_graph():
    """y = relu(x) + relu(-x) on one input."""
    nodes = (
        ops.Input(shape=(1, 1)),
        ops.Relu(inputs=(0,), shape=(1, 1)),
        ops.Scale(inputs=(0,), shape=(1, 1), scale=np.array([[-1.0]]), shift=np.array([[0.0]])),
        ops.Relu(inputs=(2,), shape=(1, 1)),
        ops.Add(inputs=(1, 3), shape=(1, 1)),
    )
    return Graph(nodes, output=4)


def test_dependency_example():
    graph = dependency_graph()
    box = Box([-1.0], [1.0])
    results = {m: compute_bounds(graph, box, method=m) for m in METHODS}
    assert results["ibp"].lower[0, 0] == 0.0 and results["ibp"].upper[0, 0] == 2.0
    for method, result in results.items():
        assert result.lower[0, 0] <= 0.0 and result.upper[0, 0] >= 1.0, method  # contain [0, 1]
        assert result.lower[0, 0] >= 0.0 - 1e-12 and result.upper[0, 0] <= 2.0, method
    # the triangle relaxations give the upper bound 1 (up to the relaxation pad)
    assert results["crown"].upper[0, 0] == pytest.approx(1.0, abs=1e-9)


def _corners(lower, upper):
    n = lower.size
    bits = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    return lower + bits * (upper - lower)


def stable_relu_net(rng):
    """Relu layers whose pre-activations stay positive on the unit box around 0."""
    nodes = [ops.Input(shape=(1, 4))]
    width = 4
    for k in range(3):
        W = rng.normal(size=(5, width)) * 0.3
        nodes.append(ops.Linear(inputs=(len(nodes) - 1,), shape=(1, 5), weight=W,
                                bias=np.full(5, 10.0)))
        nodes.append(ops.Relu(inputs=(len(nodes) - 1,), shape=(1, 5)))
        width = 5
    nodes.append(ops.Linear(inputs=(len(nodes) - 1,), shape=(1, 2),
                            weight=rng.normal(size=(2, 5)), bias=rng.normal(size=2)))
    return Graph(tuple(nodes), output=len(nodes) - 1)


def test_crown_is_exact_when_every_relu_is_stable():
    rng = np.random.default_rng(0)
    graph = stable_relu_net(rng)
    lower, upper = -np.ones(4), np.ones(4)
    y = evaluate(graph, _corners(lower, upper).reshape(-1, 1, 4)).reshape(-1, 2)
    C = rng.normal(size=(3, 2))
    v = y @ C.T
    for method in ("crown", "alpha-crown"):
        result = compute_bounds(graph, Box(lower, upper), method=method, C=C)
        pre = result.pre_activation
        assert all(np.all(i.lower > 0) for i in pre.values()), "the example must be stable"
        np.testing.assert_allclose(result.lower[0], v.min(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result.upper[0], v.max(axis=0), rtol=1e-12, atol=1e-12)


def test_ibp_is_exact_on_one_affine_layer_and_stable_relus():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(6, 3)), rng.normal(size=6) + 5.0
    nodes = (ops.Input(shape=(1, 3)), ops.Linear(inputs=(0,), shape=(1, 6), weight=W, bias=b),
             ops.Relu(inputs=(1,), shape=(1, 6)))
    graph = Graph(nodes, output=2)
    lower, upper = -np.ones(3), np.ones(3)
    y = evaluate(graph, _corners(lower, upper).reshape(-1, 1, 3)).reshape(-1, 6)
    for method in METHODS:
        result = compute_bounds(graph, Box(lower, upper), method=method)
        np.testing.assert_allclose(result.lower[0], y.min(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result.upper[0], y.max(axis=0), rtol=1e-12, atol=1e-12)


def test_linear_model_on_an_l2_ball_uses_the_dual_norm():
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=7), 0.3
    graph = Graph((ops.Input(shape=(1, 7)),
                   ops.Linear(inputs=(0,), shape=(1, 1), weight=w[None], bias=np.array([b]))),
                  output=1)
    x0, eps = rng.normal(size=7), 0.25
    for method in ("crown", "alpha-crown"):
        result = compute_bounds(graph, L2Ball(x0, eps), method=method)
        expected = w @ x0 + b - eps * np.linalg.norm(w)
        assert result.lower[0, 0] == pytest.approx(expected, rel=1e-12)
        assert result.upper[0, 0] == pytest.approx(w @ x0 + b + eps * np.linalg.norm(w),
                                                   rel=1e-12)
    ibp = compute_bounds(graph, L2Ball(x0, eps), method="ibp")
    assert ibp.lower[0, 0] == pytest.approx(w @ x0 + b - eps * np.abs(w).sum(), rel=1e-12)


def test_contradictory_splits_mark_the_sub_problem_empty():
    rng = np.random.default_rng(3)
    W = np.array([[1.0, 1.0], [1.0, -1.0]])
    nodes = (ops.Input(shape=(1, 2)), ops.Linear(inputs=(0,), shape=(1, 2), weight=W,
                                                 bias=np.array([5.0, 0.0])),
             ops.Relu(inputs=(1,), shape=(1, 2)),
             ops.Linear(inputs=(2,), shape=(1, 1), weight=rng.normal(size=(1, 2))))
    graph = Graph(nodes, output=3)
    box = Box([[-1.0, -1.0], [-1.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]])
    # neuron 0 is always >= 3: forcing it inactive leaves nothing
    splits = {2: np.array([[-1, 0], [0, 1]], dtype=np.int8)}
    for method in METHODS:
        result = compute_bounds(graph, box, method=method, splits=splits)
        assert result.infeasible.tolist() == [True, False]
        assert result.lower[0, 0] == np.inf and result.upper[0, 0] == -np.inf
        assert np.isfinite(result.lower[1, 0])


def test_decision_margin():
    margin = np.array([MARGIN_FLOOR, 0.5, 0.5])
    assert refuted(np.array([MARGIN_FLOOR * 2, 0.5, 0.0]), margin).tolist() == \
        [True, False, False]
    assert 0 < MARGIN_FLOOR <= 1e-8


def three_relu_layers(rng):
    nodes = [ops.Input(shape=(1, 3))]
    for k in range(3):
        nodes.append(ops.Linear(inputs=(len(nodes) - 1,), shape=(1, 8),
                                weight=rng.normal(size=(8, 3 if k == 0 else 8)),
                                bias=rng.normal(size=8)))
        nodes.append(ops.Relu(inputs=(len(nodes) - 1,), shape=(1, 8)))
    return Graph(tuple(nodes), output=len(nodes) - 1)


def test_intermediate_ibp_option_and_work_budget_fall_back_to_ibp():
    rng = np.random.default_rng(4)
    graph = three_relu_layers(rng)
    box = Box(-np.ones(3), np.ones(3))
    full = compute_bounds(graph, box)
    assert set(full.intermediate_methods.values()) == {"ibp", "crown"}  # first layer: exact IBP
    for options in (BoundOptions(intermediate="ibp"), BoundOptions(max_crown_work=1.0)):
        cheap = compute_bounds(graph, box, options=options)
        assert set(cheap.intermediate_methods.values()) == {"ibp"}
        assert np.all(cheap.lower <= full.lower + 1e-12)


def test_bad_arguments_raise_typed_errors():
    graph = dependency_graph()
    box = Box([-1.0], [1.0])
    with pytest.raises(VerifierError, match="unknown bound method"):
        compute_bounds(graph, box, method="deeppoly")
    with pytest.raises(MismatchError):
        compute_bounds(graph, Box([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(MismatchError):
        compute_bounds(graph, box, C=np.ones((2, 3)))
    with pytest.raises(VerifierError, match="splits"):
        compute_bounds(graph, box, splits={4: np.zeros((1, 1), dtype=np.int8)})
    with pytest.raises(VerifierError, match="empty box"):
        Box([1.0], [0.0])
    with pytest.raises(VerifierError):
        L2Ball([0.0], -1.0)
    with pytest.raises(VerifierError, match="intermediate"):
        compute_bounds(graph, box, intermediate={0: Interval(np.zeros((1, 1)), np.ones((1, 1)))})


def test_alpha_crown_optimises_intermediate_bounds_within_its_budget():
    rng = np.random.default_rng(5)
    graph = three_relu_layers(rng)
    box = Box(-np.ones(3), np.ones(3))
    crown = compute_bounds(graph, box, method="crown")
    full = compute_bounds(graph, box, method="alpha-crown")
    assert "alpha-crown" in full.intermediate_methods.values()
    for k, interval in full.pre_activation.items():
        assert np.all(interval.lower >= crown.pre_activation[k].lower - 1e-12)
        assert np.all(interval.upper <= crown.pre_activation[k].upper + 1e-12)
    cheap = compute_bounds(graph, box, method="alpha-crown", options=BoundOptions(max_alpha_work=0))
    assert "alpha-crown" not in cheap.intermediate_methods.values()
    assert np.all(cheap.lower >= crown.lower - 1e-12)


def test_bounds_crossing_by_rounding_do_not_make_a_sub_problem_empty():
    """A constant entry bounded twice may cross by an ulp: not a contradiction."""
    graph = three_relu_layers(np.random.default_rng(6))
    box = Box(np.zeros(3), np.zeros(3))  # a point: every bound is a point
    first = compute_bounds(graph, box, method="crown")
    nudged = {k: Interval(v.lower + 1e-15 * (1 + np.abs(v.lower)), v.upper)
              for k, v in first.pre_activation.items()}
    again = compute_bounds(graph, box, method="crown", intermediate=nudged)
    assert not again.infeasible.any()
    y = evaluate(graph, np.zeros((1, 1, 3)))[0]
    assert np.all(again.lower[0] <= y + 1e-9) and np.all(again.upper[0] >= y - 1e-9)
