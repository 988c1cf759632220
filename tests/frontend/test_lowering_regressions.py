"""Self-contained reproductions of the front-end lowering bugs found by
differential testing (the folders of ../shared/soundness-cases), built with
onnx.helper so that CI without the shared data still covers them.

Every model is checked twice against onnxruntime (the oracle, rule 6 of the
guide): the IR evaluation on random inputs, and the IBP, CROWN, alpha-CROWN
(and, where the graph allows, forward symbolic) bounds of a box against the
outputs of sampled points and box corners.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper

from tests.builders import X, graph_model, run_onnxruntime, save, single_node_model
from verifier.bounds import Box, compute_bounds
from verifier.bounds.forward import output_lower, supports
from verifier.errors import UnsupportedModelError
from verifier.frontend import load_model
from verifier.ir import evaluate, ops

R = np.random.default_rng(2026)


def w(*shape, low=-1.0, high=1.0):
    return R.uniform(low, high, size=shape).astype(np.float32)


def _box_points(rng, lower, upper, samples=48, max_corners=64):
    """float32 points of the box: random ones and corners (all if few)."""
    n = lower.size
    if 2 ** n <= max_corners:
        corners = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    else:
        corners = rng.integers(0, 2, size=(max_corners, n)).astype(float)
    inside = rng.random((samples, n))
    unit = np.vstack([inside, corners])
    return (lower + unit * (upper - lower)).astype(np.float32)


def assert_sound_lowering(model, shape, *, radius=0.25, seed=0):
    """IR evaluation = onnxruntime, and every engine's bounds contain onnxruntime."""
    graph = load_model(model)
    assert graph.input_shape == tuple(shape)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(8,) + tuple(shape)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = evaluate(graph, x.astype(np.float64))
    assert got.size == expected.size
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)

    n = graph.input_size
    centre = rng.uniform(-1, 1, size=n).astype(np.float32)
    lower = (centre - np.float32(radius)).astype(np.float64)
    upper = (centre + np.float32(radius)).astype(np.float64)
    points = _box_points(rng, lower, upper)
    y = run_onnxruntime(model, points.reshape((-1,) + tuple(shape))).reshape(len(points), -1)
    tol = 1e-5 * (1.0 + np.abs(y))
    for method in ("ibp", "crown", "alpha-crown"):
        bounds = compute_bounds(graph, Box(lower, upper), method=method)
        assert np.all(np.isfinite(bounds.lower)) and np.all(np.isfinite(bounds.upper)), method
        assert np.all(y >= bounds.lower[0] - tol), method
        assert np.all(y <= bounds.upper[0] + tol), method
    if supports(graph):
        m = graph.output_size
        C = np.vstack([np.eye(m), -np.eye(m)])
        bound, _ = output_lower(graph, lower[None], upper[None], C, np.zeros(2 * m))
        assert np.all(y >= bound[0, :m] - tol)
        assert np.all(-y >= bound[0, m:] - tol)
    return graph


# ------------------------------------------------- 1. negative axes, one helper


@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2, 3])
def test_flatten_axis_then_softmax(axis):
    """flatten-negative-axis: Flatten(axis=-1) split at axis+rank+1, so the
    Softmax ran over the wrong axis (wrong unsat)."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=axis),
             helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    graph = assert_sound_lowering(graph_model(nodes, {}, (1, 2, 3), "y", opset=13), (1, 2, 3))
    outer = int(np.prod((1, 2, 3)[:axis % 4 if axis >= 0 else axis + 3]))
    assert graph.output_shape == (outer, 6 // outer)


def test_flatten_negative_axis_case():
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=-1),
             helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    graph = assert_sound_lowering(graph_model(nodes, {}, (1, 4), "y", opset=13), (1, 4))
    np.testing.assert_allclose(evaluate(graph, np.zeros((1, 4))), np.full((1, 4), 0.25))


NEGATIVE_AXES = [
    ("Softmax", (1, 3, 4), [X], {"axis": -2}, 13),
    ("Concat", (1, 2, 3), [X, w(1, 2, 2)], {"axis": -1}, 13),
    ("Gather", (1, 4, 3), [X, np.array([2, -1, 0], dtype=np.int64)], {"axis": -2}, 13),
    ("ReduceSum", (1, 3, 4), [X, np.array([-1], dtype=np.int64)], {"keepdims": 0}, 13),
    ("ReduceMean", (1, 3, 4), [X], {"axes": [-2, -1]}, 13),
    ("Squeeze", (1, 3, 1), [X, np.array([-1], dtype=np.int64)], {}, 13),
    ("Unsqueeze", (1, 3), [X, np.array([-1, -3], dtype=np.int64)], {}, 13),
    ("Slice", (1, 4, 5), [X, np.array([1], dtype=np.int64), np.array([4], dtype=np.int64),
                          np.array([-1], dtype=np.int64)], {}, 13),
    ("Pad", (1, 2, 3), [X, np.array([1, 2], dtype=np.int64), None,
                        np.array([-1], dtype=np.int64)], {}, 18),
]


@pytest.mark.parametrize("case", NEGATIVE_AXES, ids=[c[0] for c in NEGATIVE_AXES])
def test_negative_axes_match_onnxruntime(case):
    op_type, shape, inputs, attrs, opset = case
    assert_sound_lowering(single_node_model(op_type, shape, inputs, attrs, opset=opset), shape)


def test_split_negative_axis():
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=-1),
             helper.make_node("Sub", ["a", "b"], ["y"])]
    model = graph_model(nodes, {"sizes": np.array([2, 2], dtype=np.int64)}, (1, 3, 4), "y",
                        opset=13)
    assert_sound_lowering(model, (1, 3, 4))


@pytest.mark.parametrize("op_type, inputs, attrs", [
    ("Flatten", [X], {"axis": 4}),
    ("Softmax", [X], {"axis": -4}),
    ("ReduceSum", [X, np.array([5], dtype=np.int64)], {}),
    ("ReduceSum", [X, np.array([1, -2], dtype=np.int64)], {}),
])
def test_bad_axes_are_rejected_with_a_reason(op_type, inputs, attrs):
    with pytest.raises(UnsupportedModelError, match="axis|axes"):
        load_model(single_node_model(op_type, (1, 3, 4), inputs, attrs, opset=13))


# ------------------------------------- 2./3. folding never rewrites a shared node


def test_affine_fold_shared_operand():
    """t = 2x; n = -t; q = 0.5 n - c; y = n - q = -x + c: folding 0.5·n into
    the node that computes n (read by y too) lost c."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]),
             helper.make_node("Neg", ["t"], ["n"]),
             helper.make_node("Mul", ["n", "h"], ["p"]),
             helper.make_node("Sub", ["p", "c"], ["q"]),
             helper.make_node("Sub", ["n", "q"], ["y"])]
    inits = {"two": np.float32(2.0), "h": np.float32(0.5),
             "c": np.arange(4, dtype=np.float32)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 4), "y", opset=13), (1, 4))
    np.testing.assert_allclose(evaluate(graph, np.zeros((1, 4))), [[0.0, 1.0, 2.0, 3.0]])


def test_matmul_add_abs():
    """Abs(z) = Relu(z) + Relu(-z) with z = x·W + 0.5: the -1 was folded into
    the shared Linear, giving Relu(z) + Relu(z)."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Add", ["m", "c"], ["z"]),
             helper.make_node("Abs", ["z"], ["y"])]
    inits = {"W": np.ones((1, 1), np.float32), "c": np.full(1, 0.5, np.float32)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 1), "y", opset=13), (1, 1),
                                  radius=1.5)
    np.testing.assert_allclose(evaluate(graph, np.array([[-2.0]])), [[1.5]])


@pytest.mark.parametrize("low, high", [(-0.2, 0.3), (-0.2, None), (None, 0.3)])
def test_matmul_add_clip(low, high):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Add", ["m", "c"], ["z"]),
             helper.make_node("Clip", ["z", "lo" if low is not None else "",
                                       "hi" if high is not None else ""], ["y"])]
    inits = {"W": w(3, 3), "c": w(3)}
    if low is not None:
        inits["lo"] = np.float32(low)
    if high is not None:
        inits["hi"] = np.float32(high)
    assert_sound_lowering(graph_model(nodes, inits, (1, 3), "y", opset=13), (1, 3), radius=0.5)


def test_a_scale_shared_after_a_chain_of_folds():
    """Three Scales in a row, the middle value read twice: no fold may reach
    past the shared value, whatever order the folds happen in."""
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["g"]),
             helper.make_node("Mul", ["g", "s"], ["a"]),
             helper.make_node("Add", ["a", "b"], ["shared"]),
             helper.make_node("Mul", ["shared", "s"], ["u"]),
             helper.make_node("Relu", ["shared"], ["v"]),
             helper.make_node("Sub", ["u", "v"], ["y"])]
    inits = {"W": w(3, 3), "b": w(3), "s": w(3)}
    assert_sound_lowering(graph_model(nodes, inits, (1, 3), "y"), (1, 3))


def test_gelu_pattern_is_not_fused_when_an_intermediate_is_the_output():
    import math

    nodes = [helper.make_node("Div", ["x", "s2"], ["t"]),
             helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["y"]),
             helper.make_node("Mul", ["x", "y"], ["m"]),
             helper.make_node("Mul", ["m", "half"], ["out"])]
    inits = {"s2": np.float32(math.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}
    # 'y' (1 + erf) is the graph output: fusing the chain would drop it, and
    # the Erf left alone is an unsupported op, named as such
    with pytest.raises(UnsupportedModelError, match="Erf"):
        load_model(graph_model(nodes, inits, (1, 3), "y"))


# ------------------------------------ 4. Linear over a tensor with several rows


def test_matmul_rank3():
    """matmul-rank3-crash: (1,2,2) @ W crashed the forward symbolic bounds."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    inits = {"W": np.array([[1, -1, 0.5], [2, 0, -0.5]], np.float32)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 2, 2), "y", opset=13),
                                  (1, 2, 2))
    assert supports(graph)


def test_matmul_rank3_with_relu_and_bias():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["z"]),
             helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("MatMul", ["r", "V"], ["y"])]
    inits = {"W": w(4, 5), "b": w(5), "V": w(5, 2)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 3, 4), "y"), (1, 3, 4),
                                  radius=0.5)
    assert supports(graph)


def test_batchnorm_over_matmul_rows():
    """crash-batchnorm: Neg, MatMul on (1,2,4), Add, BatchNormalization over
    the 2 rows (as channels), Flatten, Gemm."""
    nodes = [helper.make_node("Neg", ["x"], ["t1"]),
             helper.make_node("MatMul", ["t1", "W"], ["t3"]),
             helper.make_node("Add", ["c4", "t3"], ["t5"]),
             helper.make_node("BatchNormalization", ["t5", "g", "bb", "mu", "var"], ["t10"],
                              epsilon=1e-3),
             helper.make_node("Flatten", ["t10"], ["t11"], axis=1),
             helper.make_node("Gemm", ["t11", "V", "c13"], ["y"], alpha=-2.0, beta=0.25)]
    inits = {"W": w(4, 8), "c4": w(8), "g": w(2), "bb": w(2), "mu": w(2),
             "var": w(2, low=0.5, high=1.5), "V": w(16, 4), "c13": w(4)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 2, 4), "y", opset=14),
                                  (1, 2, 4))
    assert supports(graph)


def test_verify_answers_on_a_rank3_matmul(tmp_path):
    """Input splitting (forward symbolic bounds) on a Linear with 2 rows:
    Y_0 = x0 + 2 x1 >= 0 on [0, 1]^4, so Y_0 <= -5 is unsat."""
    from verifier.verify import Options, verify

    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    inits = {"W": np.array([[1, -1, 0.5], [2, 0, -0.5]], np.float32)}
    model = save(graph_model(nodes, inits, (1, 2, 2), "y", opset=13), tmp_path / "m.onnx")
    lines = [f"(declare-const X_{i} Real)" for i in range(4)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(6)]
    lines += [f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))" for i in range(4)]
    prop = tmp_path / "p.vnnlib"
    prop.write_text("\n".join(lines + ["(assert (<= Y_0 -5.0))"]) + "\n")
    result = verify(model, prop, Options(timeout=20))
    assert result.verdict.value == "unsat"
    prop.write_text("\n".join(lines + ["(assert (<= Y_0 0.5))"]) + "\n")
    result = verify(model, prop, Options(timeout=20))
    assert result.verdict.value == "sat"


# ------------------------------------------ 5. MaxPool windows wholly in padding


def test_maxpool_window_wholly_in_padding():
    """crash-maxpool: a dilated, ceil-mode window that only covers padding.
    onnxruntime yields the lowest float32 there; IBP gave NaN, CROWN crashed."""
    nodes = [helper.make_node("AveragePool", ["x"], ["t1"], auto_pad="SAME_UPPER",
                              kernel_shape=[2], strides=[3]),
             helper.make_node("Sub", ["c", "t1"], ["t5"]),
             helper.make_node("MaxPool", ["t5"], ["t6"], ceil_mode=1, dilations=[2],
                              kernel_shape=[2], pads=[1, 0], strides=[2]),
             helper.make_node("Reshape", ["t6", "shape"], ["y"])]
    inits = {"c": np.ones(1, np.float32), "shape": np.array([1, -1], dtype=np.int64)}
    graph = assert_sound_lowering(graph_model(nodes, inits, (1, 3, 2), "y", opset=13),
                                  (1, 3, 2))
    assert np.all(evaluate(graph, np.zeros((1, 3, 2))) == np.finfo(np.float32).min)


def test_maxpool_2d_rows_wholly_in_padding():
    """Height 1 with one padding row on each side and dilation 2: every
    window reads rows -1 and 1, both padding; the output is the constant."""
    model = single_node_model("MaxPool", (1, 2, 1, 5), [X],
                              {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 1, 0]},
                              opset=13)
    graph = assert_sound_lowering(model, (1, 2, 1, 5))
    assert any(isinstance(n, ops.MaxPool) for n in graph.nodes)
    bounds = compute_bounds(graph, Box(-np.ones(10), np.ones(10)), method="crown")
    assert np.all(bounds.lower == np.finfo(np.float32).min)
    assert np.all(bounds.upper == np.finfo(np.float32).min)


# ----------------------------------------- 6. ConvTranspose with auto_pad, strides


CONV_TRANSPOSE = [
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (2, 3, 1, 1)),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (2, 3, 1, 1)),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 3]}, (2, 3, 3, 3)),
    ({"auto_pad": "SAME_LOWER", "strides": [3, 2], "dilations": [2, 1]}, (2, 3, 3, 2)),
    ({"auto_pad": "SAME_LOWER", "strides": [3, 3], "output_padding": [1, 2]}, (2, 3, 2, 2)),
    ({"auto_pad": "SAME_UPPER", "strides": [3, 3], "output_padding": [1, 1]}, (2, 3, 1, 2)),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2], "output_shape": [8, 7]}, (2, 3, 3, 3)),
    ({"strides": [2, 2], "output_shape": [7, 6]}, (2, 3, 2, 2)),
]


@pytest.mark.parametrize("attrs, kernel", CONV_TRANSPOSE,
                         ids=[str(i) for i in range(len(CONV_TRANSPOSE))])
def test_conv_transpose_padding_matches_onnxruntime(attrs, kernel):
    model = single_node_model("ConvTranspose", (1, 2, 3, 3), [X, w(*kernel), w(kernel[1])],
                              attrs, opset=13)
    assert_sound_lowering(model, (1, 2, 3, 3))


def test_conv_transpose_1d_same_lower():
    model = single_node_model("ConvTranspose", (1, 2, 4), [X, w(2, 1, 1)],
                              {"auto_pad": "SAME_LOWER", "strides": [3]}, opset=13)
    assert_sound_lowering(model, (1, 2, 4))


# ---------------------- 7. rejections that need not be: Dropout mask, batched MatMul,
#                          global pooling over 3 spatial axes


def test_dropout_with_an_unused_mask():
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Relu", ["d"], ["y"])]
    assert_sound_lowering(graph_model(nodes, {}, (1, 5), "y", opset=13), (1, 5))


def test_dropout_mask_used_as_a_constant():
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Cast", ["mask"], ["m"], to=1),
             helper.make_node("Mul", ["d", "m"], ["y"])]
    assert_sound_lowering(graph_model(nodes, {}, (1, 5), "y", opset=13), (1, 5))


def test_dropout_in_training_mode_is_rejected():
    model = single_node_model("Dropout", (1, 5), [X, np.float32(0.5), np.array(True)],
                              opset=13)
    with pytest.raises(UnsupportedModelError, match="training mode"):
        load_model(model)


BATCHED_MATMUL = [
    ((1, 2, 3, 4), [X, w(2, 4, 5)]),
    ((1, 3, 4), [X, w(2, 4, 2)]),
    ((3, 4), [X, w(2, 1, 4, 3)]),
    ((4,), [X, w(3, 4, 2)]),
    ((1, 2, 4, 3), [w(2, 5, 4), X]),
    ((1, 4, 3), [w(4), X]),
    ((4,), [w(3, 4), X]),
    ((4,), [X, w(4)]),
]


@pytest.mark.parametrize("shape, inputs", BATCHED_MATMUL,
                         ids=[str(i) for i in range(len(BATCHED_MATMUL))])
def test_matmul_with_constants_of_any_rank(shape, inputs):
    assert_sound_lowering(single_node_model("MatMul", shape, inputs, opset=13), shape)


@pytest.mark.parametrize("op_type", ["GlobalMaxPool", "GlobalAveragePool"])
def test_global_pooling_over_three_spatial_axes(op_type):
    graph = assert_sound_lowering(single_node_model(op_type, (1, 2, 3, 2, 2), opset=13),
                                  (1, 2, 3, 2, 2))
    assert graph.output_shape == (1, 2, 1, 1, 1)


@pytest.mark.parametrize("c_shape", [(3, 1), (3, 3), (1, 3), (3,), (1,), ()])
def test_gemm_c_broadcasts_along_rows_or_columns(c_shape):
    """A (M, 1) C adds one value per row; with M == N it was taken for a
    per-column bias."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Gemm", ["t", "B", "C"], ["y"], beta=0.5)]
    model = graph_model(nodes, {"B": w(2, 3), "C": w(*c_shape)}, (2, 3), "y")
    assert_sound_lowering(model, (2, 3))


# ------------- pooling geometry as onnxruntime computes it (SAME_*, dilation, ceil)


POOLS = [
    ("MaxPool", (1, 1, 5, 5), {"auto_pad": "SAME_LOWER", "ceil_mode": 1, "dilations": [2, 2],
                               "kernel_shape": [2, 2], "strides": [1, 1]}),
    ("MaxPool", (1, 2, 3, 4), {"auto_pad": "SAME_UPPER", "dilations": [2, 1],
                               "kernel_shape": [3, 1], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", (1, 1, 6), {"auto_pad": "SAME_LOWER", "dilations": [2], "kernel_shape": [2],
                            "strides": [1]}),
    ("MaxPool", (1, 1, 3), {"dilations": [3], "kernel_shape": [2], "strides": [2]}),
    ("AveragePool", (1, 2, 4, 5), {"auto_pad": "SAME_UPPER", "ceil_mode": 1,
                                   "count_include_pad": 1, "kernel_shape": [2, 3],
                                   "strides": [1, 2]}),
    ("AveragePool", (1, 1, 5), {"auto_pad": "SAME_LOWER", "kernel_shape": [3], "strides": [2],
                                "count_include_pad": 1}),
]


@pytest.mark.parametrize("op_type, shape, attrs", POOLS, ids=[str(i) for i in range(len(POOLS))])
def test_pooling_geometry_matches_onnxruntime(op_type, shape, attrs):
    assert_sound_lowering(single_node_model(op_type, shape, [X], attrs, opset=19), shape)


def test_pooling_with_negative_average_padding_is_rejected():
    model = single_node_model("AveragePool", (1, 1, 5), [X],
                              {"auto_pad": "SAME_UPPER", "kernel_shape": [1], "strides": [3]},
                              opset=19)
    with pytest.raises(UnsupportedModelError, match="does not fit"):
        load_model(model)
