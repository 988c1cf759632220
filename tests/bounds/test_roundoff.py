"""The float32 rounding bound (verifier.bounds.roundoff) and the per-row
decision margins built on it: the gap between onnxruntime's float32 outputs
and the float64 IR is never above the bound; networks that are safe in real
arithmetic but not in float32 are never proved."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.bounds import Box, compute_bounds, decision_margins
from verifier.bounds.report import bound_property
from verifier.bounds.result import Interval
from verifier.bounds.roundoff import (APPROX_ULPS, RULES, U, direct_lower, float32_hull,
                                      output_error, row_gaps)
from verifier.errors import VerifierError
from verifier.frontend import load_model
from verifier.ir import evaluate, ops
from verifier.ir.graph import Graph
from verifier.runtime import open_session
from verifier.spec import parse_vnnlib
from verifier.verify import Options, verify

from tests.builders import save

from onnx_models import OnnxBuilder, conv_model, relu_mlp, smooth_model

# ---------------------------------------------------------------- helpers


def _float32_run(model, X, input_shape):
    session = open_session(model, device="cpu", batching="loop")
    flat = np.asarray(X, dtype=np.float32).reshape((-1,) + tuple(input_shape[1:]))
    return np.asarray(session.run(flat), dtype=np.float64).reshape(len(X), -1)


def _box_samples(rng, lower, upper, count):
    """float32 points of the box: random ones and (up to 64) corners."""
    n = lower.size
    points = rng.uniform(lower, upper, size=(count, n))
    corners = rng.integers(0, 2, size=(min(64, 2 ** n), n))
    points = np.vstack([points, np.where(corners == 1, upper, lower)])
    return np.clip(points.astype(np.float32), lower.astype(np.float32),
                   upper.astype(np.float32)).astype(np.float64)


def _property(n_in, lower, upper, rows):
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(4)]
    lines += [f"(assert (>= X_{i} {float(lower[i])!r}))\n(assert (<= X_{i} {float(upper[i])!r}))"
              for i in range(n_in)]
    lines += [f"(assert {rows})"]
    return parse_vnnlib("\n".join(lines))


def _gap_bound(graph, lower, upper):
    lo, hi = float32_hull(lower, upper)
    result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown")
    return output_error(graph, result.node_bounds)[0]


# ---------------------------------------------------------------- the two patterns


def cancel_model(a_scale=2e4, seed=0):
    """y = (A x + B) - A x: exactly B in real arithmetic, not in float32."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 4], rng, opset=13)
    weight = rng.uniform(-a_scale, a_scale, size=(4, 4))
    shifted = b.op("Gemm", ["x", b.const(weight), b.const(rng.uniform(-2, 2, size=4))],
                   transB=1)
    plain = b.op("Gemm", ["x", b.const(weight)], transB=1)
    return b.model(b.op("Sub", [shifted, plain]))


def test_cancel_pattern_is_not_proved_and_its_float32_counterexample_is_found(tmp_path):
    """The real output is the constant B; float32's differs by ~1e-2 at x ~ 25.
    The old constant margin (1e-6) proved ``Y_0 >= float32 value`` impossible."""
    model = cancel_model()
    graph = load_model(model)
    centre = np.float32([25.3, -2.6, 5.6, 5.9]).astype(np.float64)
    lower, upper = centre - 0.1, centre + 0.1
    y32 = _float32_run(model, centre[None], graph.input_shape)[0]
    y64 = evaluate(graph, centre.reshape(graph.input_shape)).reshape(-1)
    j = int(np.argmax(y32 - y64))
    assert y32[j] - y64[j] > 1e-4  # the pattern does what it should
    target = float(np.float32(y32[j]))
    prop = _property(4, lower, upper, f"(>= Y_{j} {target!r})")
    # real arithmetic: Y_j is the constant y64[j] < target, so CROWN bounds the
    # row target - Y_j >= (target - y64[j]) > 1e-4; the margin must cover it
    report = bound_property(graph, prop, "crown")
    assert not report.proved
    assert report.margins.max() > y32[j] - y64[j]
    result = verify(save(model, tmp_path / "m.onnx"), prop, Options(timeout=20))
    assert result.verdict.value == "sat"
    assert result.counterexample.y[j] >= target


def large_model(seed):
    """Gemm-Relu-Gemm-Relu-Gemm with output weights ~50: outputs ~30."""
    rng = np.random.default_rng(seed)
    b = OnnxBuilder([1, 5], rng, opset=17)
    h = b.op("Relu", [b.gemm("x", 5, 6)])
    h = b.op("Relu", [b.gemm(h, 6, 5)])
    w = b.const(rng.uniform(-55, 55, size=(4, 5)))
    return b.model(b.op("Gemm", [h, w], transB=1))


def test_large_weights_pattern_is_not_proved_on_a_point_box(tmp_path):
    """A box pinned to one float32 point x0 where float32 gives more than the
    real network: ``Y_j >= float32 value`` holds in real arithmetic (the only
    real value is below it) but the float32 network reaches it."""
    rng = np.random.default_rng(3)
    model = large_model(3)
    graph = load_model(model)
    X = rng.uniform(-1, 1, size=(400, 5)).astype(np.float32).astype(np.float64)
    y32 = _float32_run(model, X, graph.input_shape)
    y64 = evaluate(graph, X.reshape((-1,) + graph.input_shape)).reshape(len(X), -1)
    k, j = np.unravel_index(np.argmax(y32 - y64), y32.shape)
    assert y32[k, j] - y64[k, j] > 1e-6  # above the old constant margin
    x0 = X[k]
    prop = _property(5, x0, x0, f"(>= Y_{j} {float(np.float32(y32[k, j]))!r})")
    for method in ("ibp", "crown", "alpha-crown"):
        assert not bound_property(graph, prop, method).proved
    result = verify(save(model, tmp_path / "m.onnx"), prop, Options(timeout=20))
    assert result.verdict.value == "sat"


# ---------------------------------------------------------------- the bound holds


def _scaled_mlp(rng):
    """Gemm, Sub/Mul/Div by constants, BatchNormalization with a large mean,
    LeakyRelu, Tanh, residual Add, MatMul + Add: folded chains and big constants."""
    b = OnnxBuilder([1, 6], rng)
    scale = 10.0 ** rng.uniform(-1, 2)
    x = b.op("Div", [b.op("Sub", ["x", b.const(rng.normal(size=6) * scale)]),
                     b.const(rng.uniform(0.5, 2, size=6))])
    h = b.op("Gemm", [x, b.const(rng.normal(size=(8, 6)) * scale),
                      b.const(rng.normal(size=8) * scale)], transB=1)
    mean = rng.normal(size=8) * scale * 10
    h = b.op("BatchNormalization", [h, b.const(rng.uniform(0.5, 2, 8)),
                                    b.const(mean + rng.normal(size=8)), b.const(mean),
                                    b.const(rng.uniform(0.5, 2, 8))])
    h = b.op("LeakyRelu", [h], alpha=0.2)
    g = b.op("Tanh", [b.op("Mul", [b.gemm(h, 8, 8), b.const(0.01)])])
    h = b.op("Add", [h, b.op("Mul", [g, b.const(scale)])])
    y = b.op("Add", [b.op("MatMul", [h, b.const(rng.normal(size=(8, 4)) * scale)]),
                     b.const(rng.normal(size=4))])
    return b.model(y)


MODELS = {"relu_mlp": relu_mlp, "conv_model": conv_model, "smooth_model": smooth_model,
          "scaled_mlp": _scaled_mlp}


def test_the_models_exercise_folding():
    graph = load_model(_scaled_mlp(np.random.default_rng(0)))
    assert any(getattr(n, "folded", None) is not None for n in graph.nodes)


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=6, deadline=None, database=None)
@given(seed=st.integers(0, 2 ** 31 - 1), radius=st.sampled_from([0.0, 1e-3, 0.3]))
def test_the_gap_bound_holds_at_sampled_points_and_corners(name, seed, radius):
    rng = np.random.default_rng(seed)
    model = MODELS[name](rng)
    graph = load_model(model)
    n = graph.input_size
    centre = rng.normal(size=n) * 10.0 ** rng.uniform(-1, 1.5)
    lower, upper = centre - radius, centre + radius
    bound = _gap_bound(graph, lower, upper)
    X = _box_samples(rng, *float32_hull(lower, upper), 48)
    y32 = _float32_run(model, X, graph.input_shape)
    y64 = evaluate(graph, X.reshape((-1,) + graph.input_shape)).reshape(len(X), -1)
    gap = np.abs(y32 - y64)
    assert np.all(gap <= bound), (
        f"{name}: float32 gap {gap.max(axis=0)} above the bound {bound}")
    # rows c·y: the backward bound keeps signs, and must still hold
    C = rng.normal(size=(5, graph.output_size)) * (rng.uniform(size=(5, 1)) < 0.8)
    lo, hi = float32_hull(lower, upper)
    result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown")
    rows = row_gaps(graph, result.node_bounds, C)[0]
    assert np.all(np.abs((y32 - y64) @ C.T) <= rows)
    assert np.all(rows <= (np.abs(C) @ bound) * (1 + 1e-12))
    # the direct bound of c·y32 - d (CROWN on the float32 network) is below
    # every float32 value seen; d = the real network's value at a sample
    d = C @ y64[0]
    direct = direct_lower(graph, result.node_bounds, C, d)[0]
    assert np.all(direct <= (y32 @ C.T - d).min(axis=0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_gap_bound_is_not_absurdly_loose(name):
    """On one-point boxes (the tightest magnitudes), the bound is within 1e4x
    of the largest gap observed over nearby points (measured: see the report
    of the f32 branch; typically 10x-1000x)."""
    rng = np.random.default_rng(5)
    model = MODELS[name](rng)
    graph = load_model(model)
    X = rng.normal(size=(64, graph.input_size)).astype(np.float32).astype(np.float64)
    y32 = _float32_run(model, X, graph.input_shape)
    y64 = evaluate(graph, X.reshape((-1,) + graph.input_shape)).reshape(len(X), -1)
    lo, hi = float32_hull(X, X)
    result = compute_bounds(graph, Box(lo, hi), method="ibp")
    bound = output_error(graph, result.node_bounds)
    assert np.all(np.abs(y32 - y64) <= bound)
    observed = np.abs(y32 - y64).max()
    assert observed > 0
    assert bound.max() <= 1e4 * observed


# ---------------------------------------------------------------- details


def test_folding_records_the_constants_of_a_cancelling_chain():
    """(x + 1e6) - 1e6 folds to the identity; onnxruntime rounds x + 1e6 to a
    multiple of 1/16: the folded Scale must remember |1e6| twice."""
    rng = np.random.default_rng(0)
    b = OnnxBuilder([1, 3], rng)
    y = b.op("Sub", [b.op("Add", ["x", b.const(np.full(3, 1e6))]), b.const(np.full(3, 1e6))])
    model = b.model(b.op("Relu", [y]))
    graph = load_model(model)
    scale = next(n for n in graph.nodes if isinstance(n, ops.Scale))
    assert np.all(scale.shift == 0) and np.all(scale.folded.offset == 2e6)
    x = np.float32([[0.3, 0.7, 0.01]]).astype(np.float64)
    gap = np.abs(_float32_run(model, x, graph.input_shape) - np.maximum(x, 0))
    assert gap.max() > 1e-3
    assert np.all(gap <= _gap_bound(graph, x[0], x[0]))


def test_margins_grow_with_the_rows_coefficients_and_shrink_with_the_box():
    graph = load_model(large_model(1))
    small = float32_hull(np.full(5, 0.1), np.full(5, 0.2))
    large = float32_hull(np.full(5, -1.0), np.full(5, 1.0))
    C = np.array([[1.0, 0, 0, 0], [10.0, 0, 0, 0]])
    margins = []
    for lo, hi in (small, large):
        result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", C=C)
        margins.append(decision_margins(graph, result.node_bounds, C))
    assert np.all(margins[0] < margins[1])
    assert margins[0][0, 1] > 9 * margins[0][0, 0]


def test_every_core_op_has_a_rule_and_unknown_ops_raise():
    assert set(ops.CORE_OPS) <= set(RULES)

    class Strange(ops.Relu):
        pass

    graph = Graph((ops.Input(shape=(1, 2)), Strange(inputs=(0,), shape=(1, 2))), 1)
    bounds = {i: Interval(np.zeros((1, 2)), np.ones((1, 2))) for i in range(2)}
    with pytest.raises(VerifierError, match="no float32 rounding rule.*Strange"):
        output_error(graph, bounds)


@pytest.mark.parametrize("op_type", ["Sigmoid", "Tanh", "Softplus", "Erf", "Exp", "Gelu"])
def test_onnxruntime_kernels_are_within_the_ulp_allowance(op_type):
    """The element-wise allowance (APPROX_ULPS ulps of max(|y|, 1), or of
    |y| + |x| for GELU and Erf) holds on a sweep of float32 inputs."""
    from onnx import TensorProto, helper
    from scipy.special import erf

    x = np.concatenate([np.linspace(-30, 30, 60001), np.linspace(-1, 1, 20001),
                        np.geomspace(1e-30, 1, 2001), -np.geomspace(1e-30, 1, 2001)])
    x = x.astype(np.float32).astype(np.float64)
    reference = {"Sigmoid": lambda v: 0.5 * (1 + np.tanh(v / 2)), "Tanh": np.tanh,
                 "Softplus": lambda v: np.logaddexp(0, v), "Erf": erf, "Exp": np.exp,
                 "Gelu": lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2)))}[op_type]
    node = helper.make_node(op_type, ["x"], ["y"])
    graph = helper.make_graph([node], "k", [helper.make_tensor_value_info("x", 1, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x.astype(np.float32)})[0].astype(np.float64)
    exact = reference(x)
    scale = np.maximum(np.abs(exact), 1.0)
    if op_type in ("Gelu", "Erf"):
        scale = np.abs(exact) + np.abs(x)
    if op_type == "Exp":
        scale = np.abs(exact)
    assert np.all(np.abs(y - exact) <= APPROX_ULPS * U * scale)


def test_the_margins_are_reported_by_bounds_and_verify():
    from pathlib import Path

    import verifier.examples as examples
    from verifier.spec import load_property

    folder = Path(examples.__file__).parent
    model, prop = folder / "tiny_mlp.onnx", folder / "tiny_mlp_robust.vnnlib"
    report = bound_property(load_model(model), load_property(prop), "crown")
    data = report.to_dict()
    assert data["margin"]["max"] == report.margins.max() > 0
    assert data["cases"][0]["disjuncts"][0]["margin"][0] > 0
    result = verify(model, prop, Options(timeout=20))
    assert result.verdict.value == "unsat"
    assert 0 < result.stats["margin_median"] <= result.stats["margin_max"] < 1e-3


def test_a_value_that_may_overflow_float32_has_no_finite_gap():
    """Y = 1e38·x on [0, 2] reaches 2e38, past half of float32's largest value
    (3.4e38): the rounding rules assume no overflow, so the gap bound must be
    inf there (no proof may rest on it); on [0, 1e-3] it is finite."""
    from verifier.bounds import compute_bounds
    from verifier.bounds.inputs import Box
    from verifier.bounds.roundoff import node_errors
    from verifier.frontend.loader import lower_model
    from tests.builders import chain_model

    proto = chain_model([("MatMul", [np.full((1, 2), 1e38, np.float32)], {})], [1, 1])
    graph = lower_model(proto)
    result = compute_bounds(graph, Box(np.zeros((1, 1)), np.full((1, 1), 2.0)), method="ibp")
    errors = node_errors(graph, result.node_bounds)
    assert np.all(np.isinf(errors[graph.output]))
    small = compute_bounds(graph, Box(np.zeros((1, 1)), np.full((1, 1), 1e-3)), method="ibp")
    assert np.all(np.isfinite(node_errors(graph, small.node_bounds)[graph.output]))
