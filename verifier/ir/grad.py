"""Reverse-mode gradients of the IR (vector-Jacobian products), batched.

Used by the attacks: ``grad_input(graph, values, g)`` pulls a cotangent ``g``
of the output back to the input. ``values`` are the node values from
``evaluate(graph, x, all_values=True)``. Almost-everywhere derivatives are
used at kinks (ReLU at 0: 0; max-pool ties: the first maximum; Sign: 0).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from verifier.ir import functional as F
from verifier.ir import ops
from verifier.ir.evaluate import sigmoid
from verifier.ir.graph import Graph

VjpRule = Callable[[ops.Node, list, np.ndarray, np.ndarray], list]

#: core op -> rule(node, input values, output value, cotangent) -> input cotangents
VJP_RULES: dict[type[ops.Node], VjpRule] = {}


def vjp(op_type):
    def register(func):
        VJP_RULES[op_type] = func
        return func
    return register


@vjp(ops.Linear)
def _linear(node, args, out, g):
    return [g @ node.weight]


def _nchw(func):
    def apply(node, args, out, g):
        x = args[0]
        g2, _ = F.as_nchw(g)
        x2, _ = F.as_nchw(x)
        result = func(node, x2, g2)
        return [result.reshape(x.shape)]
    return apply


@vjp(ops.Conv)
@_nchw
def _conv(node, x, g):
    return F.conv_transpose2d(g, node.weight, None, node.stride, node.padding, node.dilation,
                              node.groups, output_hw=x.shape[-2:])


@vjp(ops.ConvTranspose)
@_nchw
def _conv_transpose(node, x, g):
    top, left = node.padding[:2]
    # the adjoint of crop(scatter): pad back the cropped rows, then correlate
    kh, kw = node.weight.shape[2:]
    h, w = x.shape[-2:]
    full_h = (h - 1) * node.stride[0] + node.dilation[0] * (kh - 1) + 1
    full_w = (w - 1) * node.stride[1] + node.dilation[1] * (kw - 1) + 1
    bottom = max(full_h - top - g.shape[-2], 0)
    right = max(full_w - left - g.shape[-1], 0)
    padded = F.pad2d(g, (top, left, bottom, right))[..., :full_h, :full_w]
    return F.conv2d(padded, node.weight, None, node.stride, (0, 0, 0, 0), node.dilation,
                    node.groups)


@vjp(ops.MaxPool)
@_nchw
def _max_pool(node, x, g):
    padded = F.pad2d(x, node.padding, F.POOL_PAD)
    win = F.windows(padded, node.kernel, node.stride, node.dilation)
    n, c, ho, wo, kh, kw = win.shape
    arg = win.reshape(n, c, ho, wo, kh * kw).argmax(axis=-1)
    ki, kj = np.divmod(arg, kw)
    rows = np.arange(ho)[:, None] * node.stride[0] + ki * node.dilation[0]
    cols = np.arange(wo)[None, :] * node.stride[1] + kj * node.dilation[1]
    grad = np.zeros(padded.shape)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    np.add.at(grad, (nn[..., None, None], cc[..., None, None], rows, cols), g)
    top, left = node.padding[:2]
    return grad[:, :, top:top + x.shape[-2], left:left + x.shape[-1]]


@vjp(ops.Scale)
def _scale(node, args, out, g):
    return [g * node.scale]


@vjp(ops.Add)
def _add(node, args, out, g):
    return [g, g]


@vjp(ops.Reshape)
def _reshape(node, args, out, g):
    return [g.reshape(args[0].shape)]


@vjp(ops.Gather)
def _gather(node, args, out, g):
    x = args[0]
    batch = x.shape[0]
    index = node.index.ravel()
    flat = g.reshape(batch, -1)
    grad = np.zeros((batch, x[0].size + 1))
    np.add.at(grad.T, index, flat.T)  # index -1 lands in the extra column
    return [grad[:, :-1].reshape(x.shape)]


@vjp(ops.Concat)
def _concat(node, args, out, g):
    cuts = np.cumsum([a.shape[node.axis + 1] for a in args])[:-1]
    return np.split(g, cuts, axis=node.axis + 1)


@vjp(ops.Relu)
def _relu(node, args, out, g):
    return [g * (args[0] > 0)]


@vjp(ops.PRelu)
def _prelu(node, args, out, g):
    return [g * np.where(args[0] >= 0, 1.0, node.slope)]


@vjp(ops.Sigmoid)
def _sigmoid(node, args, out, g):
    return [g * out * (1.0 - out)]


@vjp(ops.Tanh)
def _tanh(node, args, out, g):
    return [g * (1.0 - out * out)]


@vjp(ops.Softplus)
def _softplus(node, args, out, g):
    return [g * sigmoid(args[0])]


@vjp(ops.Gelu)
def _gelu(node, args, out, g):
    x = args[0]
    if node.approximate == "tanh":
        k = np.sqrt(2.0 / np.pi)
        inner = k * (x + 0.044715 * x ** 3)
        t = np.tanh(inner)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
        return [g * d]
    from scipy.special import ndtr

    return [g * (ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi))]


@vjp(ops.Sign)
def _sign(node, args, out, g):
    return [np.zeros_like(args[0])]


@vjp(ops.Softmax)
def _softmax(node, args, out, g):
    axis = node.axis + 1
    return [out * (g - (g * out).sum(axis=axis, keepdims=True))]


def grad_input(graph: Graph, values: list, g: np.ndarray) -> np.ndarray:
    """d(sum(g * output)) / d input, for a batch (values from evaluate(all_values=True))."""
    cotangents: list = [None] * len(graph.nodes)
    cotangents[graph.output] = g.reshape(values[graph.output].shape)
    for i in range(graph.output, 0, -1):
        ct = cotangents[i]
        if ct is None:
            continue
        node = graph.nodes[i]
        args = [values[j] for j in node.inputs]
        for j, part in zip(node.inputs, VJP_RULES[type(node)](node, args, values[i], ct)):
            cotangents[j] = part if cotangents[j] is None else cotangents[j] + part
    return cotangents[0] if cotangents[0] is not None else np.zeros_like(values[0])
