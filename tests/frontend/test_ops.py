"""Each ONNX op lowered to the IR agrees with onnxruntime: one line per case."""
from __future__ import annotations

import numpy as np
import pytest

from tests.builders import X, run_onnxruntime, single_node_model
from verifier.frontend import load_model
from verifier.ir import evaluate

R = np.random.default_rng(1234)


def w(*shape, low=-1.0, high=1.0):
    return R.uniform(low, high, size=shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def f32(*values):
    return np.array(values, dtype=np.float32)


# (op_type, input shape, inputs, attributes, opset)
CASES = [
    ("Gemm", (1, 6), [X, w(4, 6), w(4)], {"transB": 1}, 17),
    ("Gemm", (1, 6), [X, w(6, 4), w(1, 4)], {"alpha": 0.5, "beta": 2.0}, 17),
    ("Gemm", (6, 1), [X, w(6, 4)], {"transA": 1}, 17),
    ("Gemm", (1, 6), [X, w(6, 4), w(1)], {}, 9),
    ("MatMul", (1, 6), [X, w(6, 3)], {}, 17),
    ("MatMul", (2, 3, 6), [X, w(6, 5)], {}, 17),
    ("MatMul", (1, 6), [X, w(6)], {}, 17),
    ("MatMul", (1, 4, 3), [w(5, 4), X], {}, 17),
    ("Add", (1, 5), [X, w(5)], {}, 17),
    ("Add", (1, 3, 4), [w(2, 1, 1, 4), X], {}, 17),
    ("Add", (1, 5), [X, X], {}, 17),
    ("Sub", (1, 5), [X, w(1, 5)], {}, 17),
    ("Sub", (1, 5), [w(5), X], {}, 17),
    ("Sub", (1, 5), [X, X], {}, 17),
    ("Mul", (1, 2, 3), [X, w(2, 1)], {}, 17),
    ("Mul", (1, 2, 3), [w(3), X], {}, 17),
    ("Div", (1, 2, 3), [X, w(3, low=0.5, high=2.0)], {}, 17),
    ("Neg", (1, 4), [X], {}, 17),
    ("Conv", (1, 3, 7, 6), [X, w(4, 3, 3, 3), w(4)], {}, 17),
    ("Conv", (1, 4, 8, 8), [X, w(6, 2, 3, 2)], {"group": 2, "strides": [2, 1],
                                                "pads": [1, 0, 2, 1], "dilations": [1, 2]}, 17),
    ("Conv", (1, 2, 7, 7), [X, w(3, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 17),
    ("Conv", (1, 2, 7, 7), [X, w(3, 2, 4, 4)], {"auto_pad": "SAME_LOWER"}, 17),
    ("Conv", (1, 3, 9), [X, w(2, 3, 3), w(2)], {"pads": [1, 2], "strides": [2]}, 17),
    ("ConvTranspose", (1, 3, 4, 5), [X, w(3, 2, 3, 3), w(2)], {}, 17),
    ("ConvTranspose", (1, 4, 3, 3), [X, w(4, 3, 3, 2)], {"strides": [2, 2], "pads": [1, 0, 1, 1],
                                                         "output_padding": [1, 1], "group": 2}, 17),
    ("ConvTranspose", (1, 2, 3, 3), [X, w(2, 2, 3, 3)], {"strides": [2, 2],
                                                         "output_shape": [6, 6]}, 17),
    ("ConvTranspose", (1, 2, 3, 3), [X, w(2, 2, 2, 2)], {"strides": [2, 2], "dilations": [2, 1],
                                                         "auto_pad": "SAME_UPPER"}, 17),
    ("BatchNormalization", (1, 3, 4, 4), [X, w(3), w(3), w(3), w(3, low=0.1, high=2.0)],
     {"epsilon": 1e-3}, 15),
    ("BatchNormalization", (1, 3), [X, w(3), w(3), w(3), w(3, low=0.1, high=2.0)], {}, 9),
    ("Relu", (1, 3, 4), [X], {}, 17),
    ("LeakyRelu", (1, 6), [X], {"alpha": 0.2}, 17),
    ("PRelu", (1, 3, 2, 2), [X, w(3, 1, 1)], {}, 17),
    ("Sigmoid", (1, 7), [X], {}, 17),
    ("Tanh", (1, 7), [X], {}, 17),
    ("Softplus", (1, 7), [X], {}, 17),
    ("Gelu", (1, 7), [X], {}, 20),
    ("Gelu", (1, 7), [X], {"approximate": "tanh"}, 20),
    ("Clip", (1, 8), [X, f32(-0.3), f32(0.4)], {}, 17),
    ("Clip", (1, 8), [X, f32(-0.3)], {}, 17),
    ("Clip", (1, 8), [X, None, f32(0.2)], {}, 17),
    ("Clip", (1, 8), [X], {"min": -0.1, "max": 0.5}, 6),
    ("Abs", (1, 8), [X], {}, 17),
    ("Sign", (1, 8), [X], {}, 17),
    ("MaxPool", (1, 2, 6, 6), [X], {"kernel_shape": [2, 2], "strides": [2, 2]}, 17),
    ("MaxPool", (1, 2, 7, 7), [X], {"kernel_shape": [3, 3], "strides": [2, 2],
                                    "pads": [1, 1, 1, 1]}, 17),
    ("MaxPool", (1, 2, 6, 7), [X], {"kernel_shape": [2, 3], "strides": [2, 2],
                                    "ceil_mode": 1}, 17),
    ("MaxPool", (1, 2, 8, 8), [X], {"kernel_shape": [2, 2], "dilations": [2, 2]}, 17),
    ("AveragePool", (1, 2, 6, 6), [X], {"kernel_shape": [2, 2], "strides": [2, 2]}, 17),
    ("AveragePool", (1, 2, 7, 7), [X], {"kernel_shape": [3, 3], "strides": [2, 2],
                                        "pads": [1, 1, 1, 1]}, 17),
    ("AveragePool", (1, 2, 7, 7), [X], {"kernel_shape": [3, 3], "strides": [2, 2],
                                        "pads": [1, 1, 1, 1], "count_include_pad": 1}, 17),
    ("AveragePool", (1, 2, 6, 7), [X], {"kernel_shape": [2, 3], "strides": [2, 2],
                                        "ceil_mode": 1}, 17),
    ("AveragePool", (1, 3, 10), [X], {"kernel_shape": [3], "strides": [2]}, 17),
    ("GlobalAveragePool", (1, 3, 5, 4), [X], {}, 17),
    ("GlobalMaxPool", (1, 3, 5, 4), [X], {}, 17),
    ("Pad", (1, 2, 3, 3), [X, i64(0, 0, 1, 2, 0, 0, 2, 1), f32(0.5)], {}, 17),
    ("Pad", (1, 2, 3, 3), [X, i64(0, 0, 1, 1, 0, 0, 1, 1)], {"mode": "reflect"}, 17),
    ("Pad", (1, 2, 3, 3), [X, i64(0, 0, 2, 1, 0, 0, 1, 2)], {"mode": "edge"}, 17),
    ("Pad", (1, 2, 4, 4), [X, i64(0, 0, -1, 1, 0, 0, 1, -2)], {}, 17),
    ("Pad", (1, 2, 3), [X], {"pads": [0, 1, 1, 0, 2, 0], "value": 2.0}, 9),
    ("Flatten", (1, 2, 3, 4), [X], {}, 17),
    ("Flatten", (1, 2, 3, 4), [X], {"axis": 2}, 17),
    ("Reshape", (1, 2, 3, 4), [X, i64(1, -1, 4)], {}, 17),
    ("Reshape", (1, 2, 3, 4), [X, i64(0, 0, -1)], {}, 17),
    ("Transpose", (1, 2, 3, 4), [X], {"perm": [0, 3, 1, 2]}, 17),
    ("Transpose", (2, 3), [X], {}, 17),
    ("Squeeze", (1, 3, 1, 4), [X, i64(2)], {}, 17),
    ("Squeeze", (1, 3, 1, 4), [X], {"axes": [0, 2]}, 11),
    ("Unsqueeze", (1, 3, 4), [X, i64(1, -1)], {}, 17),
    ("Unsqueeze", (1, 3, 4), [X], {"axes": [0]}, 11),
    ("Concat", (1, 2, 3), [X, X], {"axis": 1}, 17),
    ("Concat", (1, 2, 3), [w(1, 1, 3), X, w(1, 2, 3)], {"axis": -2}, 17),
    ("Slice", (1, 6, 5), [X, i64(1, 0), i64(5, 4), i64(1, 2), i64(2, 1)], {}, 17),
    ("Slice", (1, 6, 5), [X, i64(-1), i64(-100), i64(1), i64(-2)], {}, 17),
    ("Slice", (1, 6, 5), [X, i64(2, 1), i64(2**62, -1)], {}, 17),
    ("Slice", (1, 6, 5), [X], {"starts": [1], "ends": [3], "axes": [2]}, 9),
    ("Gather", (1, 5, 3), [X, i64(4, 0, -1)], {"axis": 1}, 17),
    ("Gather", (1, 5, 3), [X, np.array(2, dtype=np.int64)], {"axis": 2}, 17),
    ("Expand", (1, 3, 1), [X, i64(2, 1, 4)], {}, 17),
    ("Identity", (1, 4), [X], {}, 17),
    ("Dropout", (1, 4), [X], {}, 17),
    ("Cast", (1, 4), [X], {"to": 1}, 17),
    ("Softmax", (1, 6), [X], {}, 17),
    ("Softmax", (1, 3, 4), [X], {"axis": 1}, 17),
    ("Softmax", (1, 6), [X], {"axis": 1}, 9),
    ("ReduceMean", (1, 3, 4, 4), [X, i64(2, 3)], {}, 18),
    ("ReduceSum", (1, 3, 4), [X, i64(1)], {"keepdims": 0}, 13),
]


def _case_id(case):
    op, shape, _, attrs, opset = case
    extra = ",".join(f"{k}={v}" for k, v in attrs.items())
    return f"{op}{list(shape)}{'[' + extra + ']' if extra else ''}@{opset}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_op_matches_onnxruntime(case):
    op_type, shape, inputs, attrs, opset = case
    model = single_node_model(op_type, shape, inputs, attrs, opset=opset)
    graph = load_model(model)
    assert graph.input_shape == tuple(shape)
    x = np.random.default_rng(7).uniform(-2, 2, size=(5,) + tuple(shape)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = evaluate(graph, x.astype(np.float64))
    assert got.shape[1:] == graph.output_shape
    assert got.reshape(expected.shape).shape == expected.shape
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def test_symbolic_batch_dimension_is_fixed_to_one():
    model = single_node_model("Relu", (1, 3), batch_param=True)
    graph = load_model(model)
    assert graph.input_shape == (1, 3)
