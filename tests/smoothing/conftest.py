"""Small ONNX classifiers with known smoothing behaviour, built with onnx.helper."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # onnxruntime 1.31 reads IR <= 13; onnx 1.23 writes 14
SHAPE = (1, 4, 4)  # per-sample input shape of the test models (16 values)


def _typed(value):
    value = np.asarray(value)
    return value if value.dtype == np.int64 else value.astype(np.float32)


def _model(nodes, weights, shape, fixed_batch, output, opset=17):
    batch = 1 if fixed_batch else "batch"
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, None])],
        initializer=[numpy_helper.from_array(_typed(v), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def linear_pair(w, shape=SHAPE, fixed_batch=False, reshape=None, columns=2):
    """logits = [w.x, -w.x]: class 0 iff w.x > 0, so P(class 0 at x + eps) = Phi(w.x / (sigma |w|)).

    ``reshape``: flatten with a Reshape to this constant shape instead of Flatten.
    ``columns=1`` keeps only the first logit (a model that is no classifier).
    """
    w = np.asarray(w, np.float32).reshape(-1)
    weights = {"W": np.stack([w, -w], axis=1)[:, :columns], "C": np.zeros(columns)}
    if reshape is None:
        first = helper.make_node("Flatten", ["x"], ["flat"], axis=1, name="flatten")
    else:
        weights["S"] = np.asarray(reshape, np.int64)
        first = helper.make_node("Reshape", ["x", "S"], ["flat"], name="reshape")
    nodes = [first,
             helper.make_node("Gemm", ["flat", "W", "C"], ["z"], name="gemm"),
             helper.make_node("Identity", ["z"], ["y"], name="identity")]
    return _model(nodes, weights, shape, fixed_batch, "y")


def constant(label, classes=10, shape=SHAPE, hidden=8):
    """Flatten -> Gemm(W = 0) -> Relu -> Gemm: always predicts ``label``."""
    d = int(np.prod(shape))
    bias = np.zeros(classes)
    bias[label] = 1.0
    weights = {"W1": np.zeros((hidden, d)), "B1": np.zeros(hidden),
               "W2": np.zeros((classes, hidden)), "B2": bias}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "W1", "B1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], transB=1)]
    return _model(nodes, weights, shape, False, "y")


def mlp(seed=0, shape=SHAPE, hidden=8, classes=3, fixed_batch=False, matmul=False):
    """A random Flatten -> Gemm (or MatMul + Add) -> Relu -> Gemm classifier."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    weights = {"W1": rng.normal(size=(hidden, d)), "B1": rng.normal(size=hidden) * 0.1,
               "W2": rng.normal(size=(classes, hidden)), "B2": rng.normal(size=classes) * 0.1}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], axis=1)]
    if matmul:
        weights["W1"] = weights["W1"].T.copy()
        nodes += [helper.make_node("MatMul", ["flat", "W1"], ["m"]),
                  helper.make_node("Add", ["m", "B1"], ["h"])]
    else:
        nodes.append(helper.make_node("Gemm", ["flat", "W1", "B1"], ["h"], transB=1,
                                      alpha=0.5, beta=2.0))
    nodes += [helper.make_node("Relu", ["h"], ["r"]),
              helper.make_node("Gemm", ["r", "W2", "B2"], ["y"], transB=1)]
    return _model(nodes, weights, shape, fixed_batch, "y")


def conv(seed=0, shape=SHAPE, classes=3):
    """Conv -> Relu -> Flatten -> Gemm (no affine reduction: the first op is a Conv)."""
    rng = np.random.default_rng(seed)
    channels = 2
    d = channels * shape[1] * shape[2]
    weights = {"K": rng.normal(size=(channels, shape[0], 3, 3)), "KB": np.zeros(channels),
               "W": rng.normal(size=(classes, d)), "B": np.zeros(classes)}
    nodes = [helper.make_node("Conv", ["x", "K", "KB"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)]
    return _model(nodes, weights, shape, False, "y")


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def build():
    """The model builders of this folder, as a namespace."""
    return SimpleNamespace(linear_pair=linear_pair, constant=constant, mlp=mlp, conv=conv,
                           save=save, SHAPE=SHAPE, IR_VERSION=IR_VERSION)
