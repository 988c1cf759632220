"""Small random ONNX models for the Lipschitz tests, lowered by the front end,
and helpers to measure the margins' changes and gradients with the evaluator."""
from __future__ import annotations

import numpy as np

from tests.bounds.onnx_models import OnnxBuilder
from verifier.frontend import load_model
from verifier.ir.evaluate import evaluate
from verifier.ir.grad import grad_input


def relu_mlp(rng):
    """Flatten, Gemm, Relu, Gemm, LeakyRelu, Gemm (3 classes)."""
    b = OnnxBuilder([1, 2, 3], rng)
    x = b.op("Flatten", ["x"])
    x = b.op("Relu", [b.gemm(x, 6, 12)])
    x = b.op("LeakyRelu", [b.gemm(x, 12, 12)], alpha=0.2)
    return b.model(b.gemm(x, 12, 3))


def conv_net(rng):
    """Conv (pads), BatchNormalization, Relu, overlapping MaxPool, AveragePool
    (count_include_pad=0), ConvTranspose (stride 2, groups), PRelu, dilated
    grouped strided Conv, Flatten, Gemm."""
    b = OnnxBuilder([1, 2, 6, 6], rng)
    x = b.conv("x", 2, 4, 3, pads=[1, 1, 1, 1])
    x = b.op("BatchNormalization", [x, b.const(b.normal(4)), b.const(b.normal(4)),
                                    b.const(b.normal(4)), b.const(np.abs(b.normal(4)) + 0.5)])
    x = b.op("Relu", [x])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 0, 0])
    w = b.normal(4, 2, 2, 2, scale=0.5)
    x = b.op("ConvTranspose", [x, b.const(w), b.const(b.normal(4, scale=0.3))],
             strides=[2, 2], group=2)
    x = b.op("PRelu", [x, b.const(np.array([0.3, -0.5, 0.1, 2.0]).reshape(4, 1, 1))])
    x = b.conv(x, 4, 4, 2, strides=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2], group=2)
    x = b.op("Flatten", [x])
    return b.model(b.gemm(x, 4 * 3 * 3, 4))


def relu_conv_net(rng):
    """Conv, Relu, strided Conv, Relu, AveragePool, Flatten, Gemm (no MaxPool)."""
    b = OnnxBuilder([1, 1, 6, 6], rng)
    x = b.op("Relu", [b.conv("x", 1, 3, 3, pads=[1, 1, 1, 1])])
    x = b.op("Relu", [b.conv(x, 3, 4, 3, strides=[2, 2], pads=[1, 1, 1, 1])])
    x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[1, 1])
    x = b.op("Flatten", [x])
    return b.model(b.gemm(x, 16, 3))


def smooth_net(rng, approximate="none"):
    """MatMul + Add, Tanh, Slice, Concat, Softplus, Reshape, Transpose, Sigmoid,
    Pad, residual Add, Gelu (opset 20), Gemm (3 classes)."""
    b = OnnxBuilder([1, 4], rng, opset=20)
    h = b.op("Add", [b.op("MatMul", ["x", b.const(b.normal(4, 6, scale=1.5))]),
                     b.const(b.normal(6))])
    t = b.op("Tanh", [h])
    s = b.op("Slice", [t, b.int_const([1]), b.int_const([5]), b.int_const([1])])
    c = b.op("Softplus", [b.op("Concat", [s, "x"], axis=1)])
    r = b.op("Reshape", [c, b.int_const([1, 2, 4])])
    r = b.op("Sigmoid", [b.op("Transpose", [r], perm=[0, 2, 1])])
    r = b.op("Pad", [b.op("Flatten", [r]), b.int_const([0, 1, 0, 1])], mode="constant")
    r = b.op("Add", [r, b.gemm(c, 8, 10)])
    g = b.op("Gelu", [r], approximate=approximate)
    return b.model(b.gemm(g, 10, 3))


#: Every test model, by name; the soundness tests run on each.
MODELS = {"relu_mlp": relu_mlp, "conv_net": conv_net, "relu_conv_net": relu_conv_net,
          "smooth_net": smooth_net,
          "smooth_net_tanh_gelu": lambda rng: smooth_net(rng, approximate="tanh")}
#: Relative tolerance of the soundness checks (float64 rounding only).
TOLERANCE = 1e-9


def lowered(model):
    return load_model(model)


def margin_values(graph, points, label, other):
    """``f_label - f_other`` at each point ``(N, n)``."""
    logits = evaluate(graph, points.reshape((len(points),) + graph.input_shape))
    logits = logits.reshape(len(points), -1)
    return logits[:, label] - logits[:, other]


def margin_gradients(graph, points, label, other):
    """Gradients ``(N, n)`` of ``f_label - f_other`` at each point (a.e. derivatives)."""
    values = evaluate(graph, points.reshape((len(points),) + graph.input_shape),
                      all_values=True)
    k = graph.output_size
    row = np.zeros(k)
    row[label] += 1.0
    row[other] -= 1.0
    g = np.broadcast_to(row, (len(points), k)).reshape(values[graph.output].shape)
    return grad_input(graph, values, g).reshape(len(points), -1)


def norm_of(vectors, norm):
    return np.linalg.norm(vectors, axis=-1) if norm == "l2" else np.abs(vectors).max(axis=-1)


def dual_of(vectors, norm):
    return np.linalg.norm(vectors, axis=-1) if norm == "l2" else np.abs(vectors).sum(axis=-1)


def steepest(gradient, norm):
    """The unit direction (in ``norm``) along which the gradient grows fastest."""
    if norm == "l2":
        return gradient / np.maximum(np.linalg.norm(gradient, axis=-1, keepdims=True), 1e-300)
    return np.sign(gradient)


def ball_points(rng, center, eps, norm, count):
    """Points in the ball of radius ``eps`` around ``center`` (half on its surface)."""
    n = center.size
    if norm == "linf":
        points = rng.uniform(-eps, eps, size=(count, n))
        points[: count // 2] = eps * rng.choice([-1.0, 1.0], size=(count // 2, n))
    else:
        direction = rng.normal(size=(count, n))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        scale = np.ones(count)
        scale[count // 2:] = rng.uniform(size=count - count // 2) ** (1.0 / n)
        points = eps * scale[:, None] * direction
    return center[None, :] + points
