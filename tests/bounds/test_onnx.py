"""Soundness through the whole path: ONNX models built with onnx.helper,
lowered by load_model, run by onnxruntime on sampled points and box corners;
every method's bounds contain the float32 outputs (tolerance 1e-6 relative)."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds import METHODS, BoundOptions, Box, L2Ball, compute_bounds
from verifier.frontend import load_model
from verifier.ir import ops
from verifier.runtime import open_session

from nets import assert_inside, sample_box, sample_sphere
from onnx_models import conv_model, relu_mlp, smooth_model

MODELS = {"relu_mlp": relu_mlp, "conv_model": conv_model, "smooth_model": smooth_model}


def _run(model, X, input_shape):
    session = open_session(model, device="cpu")
    flat = X.reshape(-1, *input_shape[1:]).astype(np.float32)
    return np.asarray(session.run(flat), dtype=np.float64).reshape(X.shape[0], X.shape[1], -1)


def test_the_models_lower_to_every_op_family():
    seen = set()
    for make in MODELS.values():
        seen |= {type(n) for n in load_model(make(np.random.default_rng(0))).nodes}
    assert {ops.Conv, ops.ConvTranspose, ops.MaxPool, ops.Relu, ops.PRelu, ops.Sigmoid,
            ops.Tanh, ops.Softplus, ops.Gelu, ops.Sign, ops.Softmax, ops.Concat,
            ops.Gather, ops.Linear, ops.Add} <= seen


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_outputs_lie_inside_the_bounds(name):
    rng = np.random.default_rng(21)
    model = MODELS[name](rng)
    graph = load_model(model)
    n = graph.input_size
    # float32-representable boxes, so that samples and corners are exact inputs
    centre = rng.normal(size=(2, n)).astype(np.float32)
    width = rng.uniform(0, 0.3, size=(2, n)).astype(np.float32)
    lower = (centre - width).astype(np.float64)
    upper = (centre + width).astype(np.float64)
    X = sample_box(rng, lower, upper, 150).astype(np.float32)
    X = np.clip(X, lower[:, None].astype(np.float32), upper[:, None].astype(np.float32))
    y = _run(model, X.astype(np.float64), graph.input_shape)
    C = rng.normal(size=(2, 3, graph.output_size))
    d = rng.normal(size=(2, 3))
    rows = np.einsum("brn,bsn->bsr", C, y) - d[:, None]
    for method in METHODS:
        plain = compute_bounds(graph, Box(lower, upper), method=method)
        assert_inside(y, plain.lower, plain.upper, what=f"{name} {method} outputs")
        spec = compute_bounds(graph, Box(lower, upper), method=method, C=C, d=d)
        assert_inside(rows, spec.lower, spec.upper, what=f"{name} {method} rows")


@pytest.mark.parametrize("name", ["relu_mlp", "conv_model"])
def test_onnxruntime_outputs_on_the_sphere_lie_inside_the_bounds(name):
    rng = np.random.default_rng(22)
    model = MODELS[name](rng)
    graph = load_model(model)
    centre = rng.normal(size=(1, graph.input_size))
    points = sample_sphere(rng, centre, 0.4, 300)
    y = _run(model, points, graph.input_shape)
    for method in METHODS:
        result = compute_bounds(graph, L2Ball(centre, 0.4), method=method)
        assert_inside(y, result.lower, result.upper, what=f"{name} {method} L2")


@pytest.mark.parametrize("suite,network,prop", [
    ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_1_0.05.vnnlib"),
    ("eran", "nets/ffnnSIGMOID__Point_6x200.onnx", "specs/mnist/mnist_spec_idx_7167_eps_0.01200.vnnlib"),
])
def test_real_networks_onnxruntime_outputs_lie_inside_the_bounds(suite, network, prop):
    from conftest_shared import require_shared
    from verifier.spec import load_property

    root = require_shared("vnncomp", suite)
    graph = load_model(root / network)
    region = load_property(root / prop).cases[0].region
    rng = np.random.default_rng(23)
    lower = region.lower.astype(np.float32)
    upper = region.upper.astype(np.float32)
    lower = np.where(lower < region.lower, np.nextafter(lower, np.float32(np.inf)), lower)
    upper = np.where(upper > region.upper, np.nextafter(upper, np.float32(-np.inf)), upper)
    X = sample_box(rng, lower.astype(np.float64), upper.astype(np.float64), 100)
    y = _run(str(root / network), X.astype(np.float32).astype(np.float64), graph.input_shape)
    quick = BoundOptions(alpha_iterations=3)  # soundness, not tightness, is checked here
    for method in METHODS:
        result = compute_bounds(graph, Box(region.lower, region.upper), method=method,
                                options=quick)
        assert_inside(y, result.lower, result.upper, what=f"{network} {method}")
