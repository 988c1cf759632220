"""Per-box bounds of Linear/ReLU chains (verifier.bounds.chain): the real
bounds hold on float64 values, the float32 bounds and every refutation hold
on what onnxruntime computes (samples and corners of random boxes), and a
box's result does not depend on the rest of its batch."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds.chain import Chain, chain_bounds
from verifier.bounds.margin import refuted
from verifier.bounds.roundoff import float32_hull
from verifier.frontend import load_model
from verifier.ir import evaluate
from verifier.runtime import open_session
from verifier.search.rows import CaseRows

from onnx_models import OnnxBuilder


def chain_net(rng, depth, width=24, n_in=5, n_out=5, matmul=False, activation="Relu"):
    b = OnnxBuilder([1, n_in], rng, opset=17)
    h, n = "x", n_in
    for j in range(depth + 1):
        m = n_out if j == depth else width
        if matmul:  # the rl_benchmarks export: MatMul then Add
            h = b.op("Add", [b.op("MatMul", [h, b.const(b.normal(n, m, scale=n ** -0.5))]),
                             b.const(b.normal(m, scale=0.3))])
        else:
            h = b.gemm(h, n, m)
        if j < depth:
            h = b.op(activation, [h])
        n = m
    return b.model(h)


def rows_of(C, d, sizes):
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    owner = np.repeat(np.arange(len(sizes)), sizes)
    return CaseRows(np.asarray(C, float), np.asarray(d, float), owner, len(sizes), starts)


def run32(model, graph, X):
    session = open_session(model, device="cpu", batching="loop")
    flat = np.asarray(X, dtype=np.float32).reshape((-1,) + tuple(graph.input_shape[1:]))
    return np.asarray(session.run(flat), dtype=np.float64).reshape(len(X), -1)


def boxes_and_points(rng, n_in, count, radius, samples=120):
    centre = rng.normal(size=(count, n_in))
    lower, upper = float32_hull(centre - radius * rng.uniform(0.2, 1, size=(count, n_in)),
                                centre + radius * rng.uniform(0.2, 1, size=(count, n_in)))
    corners = np.array(np.meshgrid(*[[0, 1]] * n_in)).reshape(n_in, -1).T
    points = []
    for b in range(count):
        inside = np.vstack([lower[b] + rng.random((samples, n_in)) * (upper[b] - lower[b]),
                            np.where(corners == 1, upper[b], lower[b])])
        x32 = np.clip(inside.astype(np.float32), lower[b].astype(np.float32),
                      upper[b].astype(np.float32))
        points.append(x32.astype(np.float64))
    return lower, upper, points


def test_chain_of_takes_relu_chains_only():
    rng = np.random.default_rng(0)
    assert Chain.of(load_model(chain_net(rng, 3))) is not None
    chain = Chain.of(load_model(chain_net(rng, 2, matmul=True)))
    assert chain is not None and len(chain.relus) == 2 and chain.hidden == 48
    assert Chain.of(load_model(chain_net(rng, 2, activation="Sigmoid"))) is None


CASES = [(depth, seed, matmul) for depth, seed, matmul in
         ((3, 0, False), (6, 1, False), (7, 2, True), (9, 3, False))]


@pytest.mark.parametrize("depth,seed,matmul", CASES)
@pytest.mark.parametrize("radius", [1e-3, 3e-2, 0.3])
def test_bounds_and_refutations_hold_on_onnxruntime_values(depth, seed, matmul, radius):
    rng = np.random.default_rng(seed)
    model = chain_net(rng, depth, matmul=matmul)
    graph = load_model(model)
    chain = Chain.of(graph)
    lower, upper, points = boxes_and_points(rng, graph.input_size, 10, radius)
    y32 = [run32(model, graph, x) for x in points]
    y64 = [evaluate(graph, x.reshape((-1,) + graph.input_shape)).reshape(len(x), -1)
           for x in points]
    C = rng.normal(size=(6, graph.output_size))
    # rows just below the sampled minimum of the first box: decisions near the margin
    scale = np.abs(y32[0] @ C.T).max()
    d = (y32[0] @ C.T).min(axis=0) - scale * np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1])
    rows = rows_of(C, d, [2, 1, 3])
    found = chain_bounds(graph, chain, lower, upper, rows)
    assert found.lower.shape == found.margin.shape == (10, 6) and np.all(found.margin > 0)
    assert found.coef.shape == (10, 6, graph.input_size)
    for b in range(10):
        real = y64[b] @ C.T - d
        floats = y32[b] @ C.T - d
        assert np.all(found.lower[b] <= real.min(axis=0) + 1e-9 * (1 + np.abs(real).max()))
        assert np.all(found.direct[b] <= floats.min(axis=0))
        gone = refuted(found.lower[b], found.margin[b])
        assert np.all(floats[:, gone] > 0)  # a refuted row holds on the float32 network


def test_the_float_bound_decides_where_the_gap_bound_is_loose():
    """Deep net, small boxes, rows barely above their minimum: the forward gap
    bound is larger than the distance, the float32 bound is not, and it is
    what refutes the rows (the margin drops to the floor)."""
    rng = np.random.default_rng(5)
    model = chain_net(rng, 8, width=32)
    graph = load_model(model)
    lower, upper, points = boxes_and_points(rng, graph.input_size, 8, 1e-4)
    C = rng.normal(size=(3, graph.output_size))
    values = [run32(model, graph, x) @ C.T for x in points]
    d = np.min([v.min(axis=0) for v in values], axis=0) - 1e-3 * np.abs(values[0]).max()
    found = chain_bounds(graph, Chain.of(graph), lower, upper, rows_of(C, d, [1, 1, 1]))
    assert np.isfinite(found.direct).any()
    for b in range(8):
        assert np.all(found.direct[b] <= (values[b] - d).min(axis=0))
    assert refuted(found.lower, found.margin).any()


def test_a_box_gets_the_same_bounds_alone_or_in_a_batch_and_with_its_parents_hint():
    rng = np.random.default_rng(7)
    model = chain_net(rng, 6)
    graph = load_model(model)
    chain = Chain.of(graph)
    lower, upper, points = boxes_and_points(rng, graph.input_size, 12, 0.05)
    C = rng.normal(size=(2, graph.output_size))
    rows = rows_of(C, (run32(model, graph, points[0]) @ C.T).min(axis=0) - 0.01, [2])
    together = chain_bounds(graph, chain, lower, upper, rows)
    for b in (0, 5, 11):
        alone = chain_bounds(graph, chain, lower[b:b + 1], upper[b:b + 1], rows)
        for name in ("lower", "margin", "pre_lower", "pre_upper"):
            assert np.allclose(getattr(alone, name)[0], getattr(together, name)[b],
                               rtol=1e-12, atol=1e-12), name
    # children of a box, given the parent's pre-activation bounds: still sound
    mid = 0.5 * (lower + upper)
    child_upper = upper.copy()
    child_upper[:, 0] = mid[:, 0]
    hinted = chain_bounds(graph, chain, lower, child_upper, rows,
                          (together.pre_lower, together.pre_upper))
    for b in range(12):
        inside = points[b][points[b][:, 0] <= child_upper[b, 0]]
        if len(inside):
            values = run32(model, graph, inside) @ C.T - rows.d
            assert np.all(hinted.direct[b] <= values.min(axis=0))
            gone = refuted(hinted.lower[b], hinted.margin[b])
            assert np.all(values[:, gone] > 0)
    assert np.all(hinted.pre_lower <= hinted.pre_upper)
