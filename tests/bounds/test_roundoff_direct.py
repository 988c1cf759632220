"""The direct float32 bound (verifier.bounds.roundoff.direct_lower): CROWN
on the float32 network, each node's rounding a perturbation paid at its
signed coefficient. It must never exceed a float32 value onnxruntime
computes, on deep ReLU and sigmoid networks where the forward error bound is
loose, and it must be what lets the margin follow CROWN's bound there."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds import Box, compute_bounds, decision_margins
from verifier.bounds.roundoff import direct_lower, float32_hull, row_gaps
from verifier.frontend import load_model
from verifier.ir import evaluate
from verifier.runtime import open_session

from onnx_models import OnnxBuilder


def deep_net(rng, activation, depth, width=24, n_in=8, n_out=5):
    b = OnnxBuilder([1, n_in], rng, opset=17)
    h, n = "x", n_in
    for _ in range(depth):
        h, n = b.op(activation, [b.gemm(h, n, width)]), width
    return b.model(b.gemm(h, n, n_out))


def _run32(model, X, graph):
    session = open_session(model, device="cpu", batching="loop")
    flat = np.asarray(X, dtype=np.float32).reshape((-1,) + tuple(graph.input_shape[1:]))
    return np.asarray(session.run(flat), dtype=np.float64).reshape(len(X), -1)


CASES = [(activation, depth, seed) for activation in ("Relu", "Sigmoid")
         for depth, seed in ((6, 0), (7, 1), (9, 2))]


@pytest.mark.parametrize("activation,depth,seed", CASES)
def test_the_direct_bound_is_below_float32_values_on_point_boxes(activation, depth, seed):
    """One-point boxes: CROWN is exact on the real network, so the bound is
    within rounding of c·y and a cost term that missed any rounding would
    show (the real value exceeds the float32 one on some rows)."""
    rng = np.random.default_rng(seed)
    model = deep_net(rng, activation, depth)
    graph = load_model(model)
    X = (rng.normal(size=(40, graph.input_size)) * 3).astype(np.float32).astype(np.float64)
    y32 = _run32(model, X, graph)
    y64 = evaluate(graph, X.reshape((-1,) + graph.input_shape)).reshape(len(X), -1)
    C = rng.normal(size=(6, graph.output_size)) * 10.0 ** rng.uniform(-1, 2, size=(6, 1))
    lo, hi = float32_hull(X, X)
    result = compute_bounds(graph, Box(lo, hi), method="crown", upper=False)
    direct = direct_lower(graph, result.node_bounds, C)
    exact32, exact64 = y32 @ C.T, y64 @ C.T
    assert np.any(exact64 > exact32)  # a bound of the real network would fail here
    assert np.all(direct <= exact32)
    assert np.all(exact32 - direct <= 1e-2 * (1 + np.abs(exact32)))  # and near it


@pytest.mark.parametrize("activation,depth,seed", CASES)
@pytest.mark.parametrize("radius", [1e-4, 1e-2, 0.1])
def test_the_direct_bound_holds_on_boxes(activation, depth, seed, radius):
    rng = np.random.default_rng(seed + 100)
    model = deep_net(rng, activation, depth)
    graph = load_model(model)
    centre = rng.normal(size=graph.input_size) * 2
    lo, hi = float32_hull(centre - radius, centre + radius)
    n = graph.input_size
    X = np.vstack([rng.uniform(lo, hi, size=(200, n)),
                   np.where(rng.integers(0, 2, size=(64, n)) == 1, hi, lo)])
    X = np.clip(X.astype(np.float32), lo.astype(np.float32), hi.astype(np.float32))
    X = X.astype(np.float64)
    y32 = _run32(model, X, graph)
    C = rng.normal(size=(8, graph.output_size))
    d = C @ y32[0] - 1e-3  # rows near the sampled values
    result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", upper=False)
    direct = direct_lower(graph, result.node_bounds, C, d)[0]
    assert np.all(direct <= (y32 @ C.T - d).min(axis=0))


def test_the_margin_follows_crown_where_the_gap_bound_is_loose():
    """A 9-layer ReLU net with large weights: the forward/interval-Jacobian
    gap bound is far above the CROWN lower bound, the direct bound proves the
    row for the float32 network and the margin drops to the floor."""
    rng = np.random.default_rng(7)
    b = OnnxBuilder([1, 8], rng, opset=17)
    h, n = "x", 8
    for _ in range(9):
        w = b.const(b.normal(40, n, scale=2.0 * n ** -0.5))
        h, n = b.op("Relu", [b.op("Gemm", [h, w, b.const(b.normal(40, scale=0.3))],
                                  transB=1)]), 40
    model = b.model(b.gemm(h, n, 3))
    graph = load_model(model)
    centre = rng.normal(size=8)
    lo, hi = float32_hull(centre - 1e-3, centre + 1e-3)
    y = evaluate(graph, centre.reshape(graph.input_shape)).reshape(-1)
    C = np.array([[1.0, -1.0, 0.0]])
    d = np.array([C[0] @ y - 1.0])  # c·y - d is about 1 on the box
    result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", C=C, d=d)
    gap = row_gaps(graph, result.node_bounds, C)[0, 0]
    direct = direct_lower(graph, result.node_bounds, C, d)[0, 0]
    margin = decision_margins(graph, result.node_bounds, C, d)[0, 0]
    assert result.lower[0, 0] > 0.5
    assert gap > 10 * result.lower[0, 0] or gap > 1e-2  # the old margin alone is loose
    assert 0 < direct <= result.lower[0, 0]
    assert margin < 1e-6 < gap


def test_a_callers_lower_bound_only_limits_where_the_direct_bound_is_computed():
    rng = np.random.default_rng(7)
    model = deep_net(rng, "Sigmoid", 6, width=30)
    graph = load_model(model)
    centres = rng.normal(size=(3, graph.input_size))
    lo, hi = float32_hull(centres - 1e-3, centres + 1e-3)
    result = compute_bounds(graph, Box(lo, hi), method="crown", upper=False)
    y = result.node_bounds[graph.output]
    C = np.eye(graph.output_size)[:2]
    d = y.lower[:, :2] - 0.5  # every row about 0.5 above its d: proved directly
    full = decision_margins(graph, result.node_bounds, C, d)
    gaps = decision_margins(graph, result.node_bounds, C, d, lower=np.full((3, 2), -1.0))
    # a lower bound between the floor and the gap margin: the direct bound decides
    gated = decision_margins(graph, result.node_bounds, C, d, lower=gaps)
    # one already above the gap margin: nothing to decide, the gap margin stays
    above = decision_margins(graph, result.node_bounds, C, d, lower=2 * gaps)
    assert np.all(full < 1e-6) and np.all(full < gaps)  # the direct bound proved the rows
    assert np.array_equal(gated, full)
    assert np.array_equal(above, gaps)
    assert np.allclose(gaps, row_gaps(graph, result.node_bounds, C) * (1 + 2 ** -20),
                       rtol=1e-6, atol=1e-8)


def test_no_rows_give_no_margins():
    graph = load_model(deep_net(np.random.default_rng(0), "Relu", 6))
    lo, hi = float32_hull(np.zeros((2, 8)), np.full((2, 8), 0.1))
    result = compute_bounds(graph, Box(lo, hi), method="ibp")
    C = np.zeros((0, graph.output_size))
    assert decision_margins(graph, result.node_bounds, C).shape == (2, 0)



def test_alpha_slopes_in_the_direct_bound_recover_alpha_crown_proofs(monkeypatch):
    """eran sigmoid 6x200, image 3881: alpha-CROWN proves every row in real
    arithmetic, CROWN does not; the direct float32 bound needs optimised
    slopes too, else the float32 margins (the loose forward gap, up to 16)
    leave three rows open. With them every row is refuted."""
    from conftest_shared import require_shared
    from verifier.bounds import roundoff
    from verifier.bounds.report import bound_property
    from verifier.spec import load_property

    eran = require_shared("vnncomp", "eran")
    graph = load_model(eran / "nets" / "ffnnSIGMOID__Point_6x200.onnx")
    prop = load_property(eran / "specs" / "mnist" / "mnist_spec_idx_3881_eps_0.01200.vnnlib")
    assert bound_property(graph, prop, method="alpha-crown").proved
    monkeypatch.setattr(roundoff, "DIRECT_ALPHA_ITERATIONS", 0)
    assert not bound_property(graph, prop, method="alpha-crown").proved
