"""Exact float64 evaluation of the IR, batched over a leading axis.

This is the project's concrete semantics of the core ops; the op tests check
it against onnxruntime, and the bound engines are tested against it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from verifier.errors import MismatchError
from verifier.ir import functional as F
from verifier.ir import ops
from verifier.ir.graph import Graph

EvalRule = Callable[[ops.Node, list], np.ndarray]

#: core op type -> rule(node, [input arrays with leading batch axis]) -> array
EVAL_RULES: dict[type[ops.Node], EvalRule] = {}


def rule(op_type):
    def register(func):
        EVAL_RULES[op_type] = func
        return func
    return register


def _batch(node: ops.Node, x: np.ndarray) -> np.ndarray:
    return x.reshape((x.shape[0],) + tuple(node.shape))


@rule(ops.Input)
def _input(node, args):
    raise AssertionError("the Input node is bound by evaluate()")


@rule(ops.Linear)
def _linear(node, args):
    y = args[0] @ node.weight.T
    return y + node.bias if node.bias is not None else y


def _spatial(func):
    def apply(node, args):
        x, lead = F.as_nchw(args[0])
        y = func(node, x)
        return y.reshape(lead + y.shape[1:])
    return apply


@rule(ops.Conv)
@_spatial
def _conv(node, x):
    return F.conv2d(x, node.weight, node.bias, node.stride, node.padding,
                    node.dilation, node.groups)


@rule(ops.ConvTranspose)
@_spatial
def _conv_transpose(node, x):
    return F.conv_transpose2d(x, node.weight, node.bias, node.stride, node.padding,
                              node.dilation, node.groups, output_hw=node.shape[-2:])


@rule(ops.MaxPool)
@_spatial
def _max_pool(node, x):
    return F.max_pool2d(x, node.kernel, node.stride, node.padding, node.dilation)


@rule(ops.Scale)
def _scale(node, args):
    return args[0] * node.scale + node.shift


@rule(ops.Add)
def _add(node, args):
    return args[0] + args[1]


@rule(ops.Reshape)
def _reshape(node, args):
    return _batch(node, args[0])


@rule(ops.Gather)
def gather_flat(node, args):
    x = args[0]
    flat = x.reshape(x.shape[0], -1)
    if (node.index < 0).any():
        fill = np.full((x.shape[0], 1), node.fill, dtype=flat.dtype)
        flat = np.concatenate([flat, fill], axis=1)  # index -1 reads the fill
    return _batch(node, flat[:, node.index.ravel()])


@rule(ops.Concat)
def _concat(node, args):
    return np.concatenate(args, axis=node.axis + 1)


@rule(ops.Relu)
def _relu(node, args):
    return np.maximum(args[0], 0.0)


@rule(ops.PRelu)
def _prelu(node, args):
    x = args[0]
    return np.where(x >= 0, x, x * node.slope)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@rule(ops.Sigmoid)
def _sigmoid(node, args):
    return sigmoid(args[0])


@rule(ops.Tanh)
def _tanh(node, args):
    return np.tanh(args[0])


@rule(ops.Softplus)
def _softplus(node, args):
    return np.logaddexp(0.0, args[0])


def gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@rule(ops.Gelu)
def _gelu(node, args):
    return gelu(args[0], node.approximate)


@rule(ops.Sign)
def _sign(node, args):
    return np.sign(args[0])


@rule(ops.Softmax)
def _softmax(node, args):
    x = args[0]
    axis = node.axis + 1
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def evaluate(graph: Graph, x: np.ndarray, *, all_values: bool = False):
    """Evaluate the graph on a batch ``x`` of shape (B, *input_shape).

    An unbatched ``x`` of exactly the input shape is accepted too (and the
    result is then unbatched). Any other shape raises
    :class:`verifier.errors.MismatchError` (nothing is reshaped or broadcast
    silently). Returns the output array, or the list of every node's value
    when ``all_values`` is set.
    """
    x = np.asarray(x, dtype=np.float64)
    shape = tuple(graph.input_shape)
    unbatched = x.shape == shape
    if unbatched:
        x = x[None]
    if x.shape[1:] != shape:
        raise MismatchError(
            f"evaluate: the input has shape {x.shape} but the model's input "
            f"{graph.input_name!r} has shape {list(shape)}: pass an array of shape "
            f"{shape} or (batch, {', '.join(map(str, shape))})")
    values: list = [None] * len(graph.nodes)
    values[0] = x
    for i in range(1, len(graph.nodes)):
        node = graph.nodes[i]
        values[i] = EVAL_RULES[type(node)](node, [values[j] for j in node.inputs])
    if all_values:
        return values
    out = values[graph.output]
    return out[0] if unbatched else out
