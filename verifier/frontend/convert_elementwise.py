"""Converters for nonlinear element-wise ops, max pooling and softmax."""
from __future__ import annotations

import numpy as np

from verifier.frontend.axes import normalize_axis
from verifier.frontend.convert_linear import (
    _spatial_input, _spatial_output, flat_spatial, pool_geometry,
)
from verifier.frontend.convert_shape import constant_input, reshape, scale
from verifier.frontend.registry import Unsupported, converter
from verifier.ir import ops

_SIMPLE = {"Relu": ops.Relu, "Sigmoid": ops.Sigmoid, "Tanh": ops.Tanh,
           "Softplus": ops.Softplus, "Sign": ops.Sign}


@converter(*_SIMPLE)
def _simple(ctx, node, args, attrs):
    x = args[0]
    return [ctx.emit(_SIMPLE[node.op_type], [x], x.shape, node.output[0])]


@converter("LeakyRelu")
def _leaky_relu(ctx, node, args, attrs):
    x = args[0]
    return [ctx.emit(ops.PRelu, [x], x.shape, node.output[0],
                     slope=np.full((1,) * len(x.shape), float(attrs.get("alpha", 0.01))))]


@converter("PRelu")
def _prelu(ctx, node, args, attrs):
    x = args[0]
    slope = constant_input(args, 1, "the slope of PRelu").astype(np.float64)
    if np.broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise Unsupported(f"PRelu slope {list(slope.shape)} does not broadcast to "
                          f"{list(x.shape)}")
    slope = slope.reshape((1,) * (len(x.shape) - slope.ndim) + slope.shape)
    return [ctx.emit(ops.PRelu, [x], x.shape, node.output[0], slope=slope)]


@converter("Gelu")
def _gelu(ctx, node, args, attrs):
    x = args[0]
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise Unsupported(f"Gelu approximate={approximate!r}")
    return [ctx.emit(ops.Gelu, [x], x.shape, node.output[0], approximate=approximate)]


def relu_of(ctx, x, factor, shift, name):
    """relu(x * factor + shift) as a Var."""
    inner = scale(ctx, x, factor, shift, name + "/pre")
    return ctx.emit(ops.Relu, [inner], inner.shape, name + "/relu")


@converter("Clip")
def _clip(ctx, node, args, attrs):
    """clip(x, a, b) = a + relu(x - a) - relu(x - b), exact, lowered to ReLUs."""
    x, name = args[0], node.output[0]
    if "min" in attrs or "max" in attrs:  # opset < 11: attributes
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low = constant_input(args, 1, "the min of Clip")
        high = constant_input(args, 2, "the max of Clip")
    low = None if low is None else float(np.asarray(low).reshape(-1)[0])
    high = None if high is None else float(np.asarray(high).reshape(-1)[0])
    if low is not None and high is not None and low > high:
        # ONNX sets every output to max when min > max
        low = high
    if low is None and high is None:
        return [x]
    if high is None:  # a + relu(x - a)
        return [scale(ctx, relu_of(ctx, x, 1.0, -low, name + "/lo"), 1.0, low, name)]
    if low is None:  # b - relu(b - x)
        return [scale(ctx, relu_of(ctx, x, -1.0, high, name + "/hi"), -1.0, high, name)]
    lower_part = relu_of(ctx, x, 1.0, -low, name + "/lo")
    upper_part = relu_of(ctx, x, 1.0, -high, name + "/hi")
    negated = scale(ctx, upper_part, -1.0, 0.0, name + "/hi_neg")
    total = ctx.emit(ops.Add, [lower_part, negated], x.shape, name + "/sum")
    return [scale(ctx, total, 1.0, low, name)]


@converter("Relu6")
def _relu6(ctx, node, args, attrs):
    return _clip(ctx, node, [args[0], np.float64(0.0), np.float64(6.0)], {})


@converter("Abs")
def _abs(ctx, node, args, attrs):
    """|x| = relu(x) + relu(-x) (exact; CROWN's chord of |x| is the sum of the two)."""
    x, name = args[0], node.output[0]
    pos = ctx.emit(ops.Relu, [x], x.shape, name + "/pos")
    neg = relu_of(ctx, x, -1.0, 0.0, name + "/neg")
    return [ctx.emit(ops.Add, [pos, neg], x.shape, name)]


@converter("MaxPool")
def _max_pool(ctx, node, args, attrs):
    if len([o for o in node.output if o]) > 1:
        raise Unsupported("the Indices output of MaxPool is not supported")
    x, name = args[0], node.output[0]
    x, rank = _spatial_input(ctx, x, name)
    kernel, stride, padding, dilation, out_hw, _ = pool_geometry(attrs, x, rank,
                                                                 negative_end=True)
    y = ctx.emit(ops.MaxPool, [x], x.shape[:-1 - 1] + out_hw, name + "/pool", kernel=kernel,
                 stride=stride, padding=padding, dilation=dilation)
    return [_spatial_output(ctx, y, rank, name)]


@converter("GlobalMaxPool")
def _global_max_pool(ctx, node, args, attrs):
    name = node.output[0]
    x, out_shape = flat_spatial(ctx, args[0], name)
    y = ctx.emit(ops.MaxPool, [x], x.shape[:2] + (1, 1), name + "/gmp", kernel=x.shape[-2:],
                 stride=x.shape[-2:])
    return [reshape(ctx, y, out_shape, name)]


@converter("Softmax", since=13)
def _softmax(ctx, node, args, attrs):
    x = args[0]
    axis = normalize_axis(attrs.get("axis", -1), len(x.shape))
    return [ctx.emit(ops.Softmax, [x], x.shape, node.output[0], axis=axis)]


@converter("Softmax", since=1)
def _softmax_v1(ctx, node, args, attrs):
    """Before opset 13 Softmax flattens the axes from ``axis`` on."""
    x = args[0]
    axis = normalize_axis(attrs.get("axis", 1), len(x.shape))
    trailing = [s for s in x.shape[axis + 1:] if s != 1]
    if trailing:
        raise Unsupported(f"Softmax (opset < 13) over several axes {list(x.shape[axis:])}")
    return [ctx.emit(ops.Softmax, [x], x.shape, node.output[0], axis=axis)]
