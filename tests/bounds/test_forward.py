"""Forward symbolic bounds enclose sampled points and box corners."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from verifier.bounds.forward import forward_bounds, output_lower, supports
from verifier.ir import evaluate, ops
from verifier.ir.graph import Graph


def random_net(seed, d=4, widths=(7, 6, 5), residual=True, prelu=True):
    rng = np.random.default_rng(seed)
    nodes = [ops.Input(shape=(1, d))]
    width = d
    for k, n in enumerate(widths):
        nodes.append(ops.Linear(inputs=(len(nodes) - 1,), shape=(1, n),
                                weight=rng.normal(size=(n, width)), bias=rng.normal(size=n)))
        pre = len(nodes) - 1
        if prelu and k == 1:
            nodes.append(ops.PRelu(inputs=(pre,), shape=(1, n), slope=np.full((1, 1), 0.1)))
        else:
            nodes.append(ops.Relu(inputs=(pre,), shape=(1, n)))
        nodes.append(ops.Scale(inputs=(len(nodes) - 1,), shape=(1, n),
                               scale=rng.normal(size=(1, n)), shift=rng.normal(size=(1, n))))
        if residual and k == 2:
            nodes.append(ops.Add(inputs=(len(nodes) - 1, pre), shape=(1, n)))
        width = n
    nodes.append(ops.Reshape(inputs=(len(nodes) - 1,), shape=(width,)))
    nodes.append(ops.Linear(inputs=(len(nodes) - 1,), shape=(3,),
                            weight=rng.normal(size=(3, width)), bias=None))
    return Graph(tuple(nodes), len(nodes) - 1)


@pytest.mark.parametrize("seed", range(6))
def test_forward_bounds_enclose_samples_and_corners(seed):
    graph = random_net(seed)
    assert supports(graph)
    rng = np.random.default_rng(100 + seed)
    centre = rng.uniform(-1, 1, size=(3, 4))
    radius = rng.uniform(0.01, 1.0, size=(3, 4))
    lower, upper = centre - radius, centre + radius
    C = rng.normal(size=(2, 3))
    d = rng.normal(size=2)
    bound, intervals = output_lower(graph, lower, upper, C, d)
    corners = np.array(list(itertools.product([0, 1], repeat=4)), dtype=float)
    for b in range(3):
        points = np.vstack([lower[b] + rng.random((500, 4)) * (upper[b] - lower[b]),
                            lower[b] + corners * (upper[b] - lower[b])])
        values = evaluate(graph, points.reshape(-1, 1, 4), all_values=True)
        y = values[graph.output].reshape(len(points), -1)
        assert np.all(y @ C.T - d >= bound[b] - 1e-9)
        for k, iv in intervals.items():
            z = values[graph.nodes[k].inputs[0]].reshape(len(points), -1)
            assert np.all(z >= iv.lower[b] - 1e-9) and np.all(z <= iv.upper[b] + 1e-9)


def test_forward_is_exact_on_an_affine_network():
    graph = random_net(0)
    nodes = [n if not isinstance(n, (ops.Relu, ops.PRelu)) else
             ops.Reshape(inputs=n.inputs, shape=n.shape) for n in graph.nodes]
    affine = Graph(tuple(nodes), graph.output)
    lower, upper = np.zeros((1, 4)), np.ones((1, 4))
    C, d = np.eye(3), np.zeros(3)
    bound, _ = output_lower(affine, lower, upper, C, d)
    corners = np.array(list(itertools.product([0, 1], repeat=4)), dtype=float)
    y = evaluate(affine, corners.reshape(-1, 1, 4)).reshape(len(corners), -1)
    np.testing.assert_allclose(bound[0], y.min(axis=0), atol=1e-9)


def test_unsupported_graphs_are_declined():
    graph = random_net(1)
    nodes = list(graph.nodes)
    nodes[2] = ops.Sigmoid(inputs=nodes[2].inputs, shape=nodes[2].shape)
    assert forward_bounds(Graph(tuple(nodes), graph.output), np.zeros((1, 4)),
                          np.ones((1, 4))) is None


def test_forward_bounds_enclose_onnxruntime_outputs():
    """Through the front end and onnxruntime (float32): a Gemm/LeakyRelu/Relu
    network with a Sub normalisation, bounded on random boxes."""
    from tests.builders import chain_model, run_onnxruntime
    from verifier.frontend import load_model

    rng = np.random.default_rng(11)
    model = chain_model([
        ("Sub", [rng.normal(size=(1, 5)).astype(np.float32)], {}),
        ("Gemm", [rng.normal(size=(16, 5)).astype(np.float32),
                  rng.normal(size=16).astype(np.float32)], {"transB": 1}),
        ("Relu", [], {}),
        ("Gemm", [rng.normal(size=(12, 16)).astype(np.float32),
                  rng.normal(size=12).astype(np.float32)], {"transB": 1}),
        ("LeakyRelu", [], {"alpha": 0.05}),
        ("Gemm", [rng.normal(size=(4, 12)).astype(np.float32),
                  rng.normal(size=4).astype(np.float32)], {"transB": 1}),
    ], (1, 5))
    graph = load_model(model)
    assert supports(graph)
    centre = rng.uniform(-1, 1, size=(4, 5))
    radius = rng.uniform(0.05, 0.8, size=(4, 5))
    lower, upper = centre - radius, centre + radius
    C, d = rng.normal(size=(3, 4)), rng.normal(size=3)
    bound, _ = output_lower(graph, lower, upper, C, d)
    corners = np.array(list(itertools.product([0, 1], repeat=5)), dtype=float)
    for b in range(4):
        points = np.vstack([lower[b] + rng.random((300, 5)) * (upper[b] - lower[b]),
                            lower[b] + corners * (upper[b] - lower[b])])
        y = run_onnxruntime(model, points.reshape(-1, 1, 5).astype(np.float32))
        rows = y.reshape(len(points), -1).astype(np.float64) @ C.T - d
        assert np.all(rows >= bound[b] - 1e-5 * (1 + np.abs(bound[b])))


@pytest.mark.parametrize("seed", range(3))
def test_given_crown_intervals_tighten_and_stay_sound(seed):
    """Forward bounds with CROWN's intermediate intervals intersected in have
    intervals no looser than CROWN's and still enclose samples, and their
    coefficients form a linear lower bound. (The final bound is not monotone
    in the intervals: DeepPoly's lower slope can flip, so callers keep the max.)"""
    from verifier.bounds.engine import compute_bounds
    from verifier.bounds.forward import spec_lower
    from verifier.bounds.inputs import Box

    graph = random_net(seed, residual=False)
    rng = np.random.default_rng(200 + seed)
    centre = rng.uniform(-1, 1, size=(8, 4))
    radius = rng.uniform(0.2, 1.0, size=(8, 4))
    lower, upper = centre - radius, centre + radius
    C, d = rng.normal(size=(2, 3)), rng.normal(size=2)
    crown = compute_bounds(graph, Box(lower, upper), method="crown", C=C, d=d, upper=False)
    bound, coef, intervals = spec_lower(graph, lower, upper, C, d, crown.pre_activation)
    for k, iv in intervals.items():
        assert np.all(iv.lower >= crown.pre_activation[k].lower - 1e-12)
    for b in range(8):
        points = lower[b] + rng.random((500, 4)) * (upper[b] - lower[b])
        y = evaluate(graph, points.reshape(-1, 1, 4)).reshape(len(points), -1)
        rows = y @ C.T - d
        assert np.all(rows >= bound[b] - 1e-9)
        # the coefficients are those of a linear lower bound: coef·x + const <= rows
        linear = points @ coef[b].T
        const = bound[b] - np.where(coef[b] > 0, coef[b] * lower[b], coef[b] * upper[b]).sum(1)
        assert np.all(rows >= linear + const - 1e-9)
