"""Converters for affine ops: Gemm, MatMul, arithmetic with constants,
Conv, ConvTranspose, BatchNormalization and average pooling."""
from __future__ import annotations

import numpy as np

from verifier.frontend.convert_shape import (
    broadcast, constant_input, gather, positions, reshape, scale,
)
from verifier.frontend.registry import Unsupported, converter, is_var
from verifier.ir import ops
from verifier.ir import functional as F

# ---------------------------------------------------------------- matrix products


def _transpose_last(ctx, x, name):
    perm = list(range(len(x.shape) - 2)) + [len(x.shape) - 1, len(x.shape) - 2]
    return gather(ctx, x, positions(x.shape).transpose(perm), name)


def linear(ctx, x, weight, bias, name):
    """y = x @ weight.T + bias on the last axis of Var x; weight (out, in)."""
    weight = np.asarray(weight, dtype=np.float64)
    if bias is not None:
        bias = np.broadcast_to(np.asarray(bias, dtype=np.float64), (weight.shape[0],))
    shape = x.shape[:-1] + (weight.shape[0],)
    return ctx.emit(ops.Linear, [x], shape, name, weight=weight, bias=bias)


def matmul(ctx, a, b, name):
    """a @ b with exactly one of a, b a Var and the other a constant."""
    if is_var(a) and is_var(b):
        raise Unsupported("the product of two tensors that both depend on the input "
                          "is not affine")
    if is_var(a):
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 1:
            x = a if len(a.shape) > 1 else reshape(ctx, a, (1,) + a.shape, name + "/row")
            y = linear(ctx, x, b[None, :], None, name + "/vec")
            return reshape(ctx, y, y.shape[:-1], name)
        if b.ndim != 2:
            raise Unsupported("MatMul with a constant of rank > 2 (batched weights)")
        if len(a.shape) == 1:
            y = linear(ctx, reshape(ctx, a, (1,) + a.shape, name + "/row"), b.T, None, name + "/mm")
            return reshape(ctx, y, (b.shape[1],), name)
        return linear(ctx, a, b.T, None, name)
    # constant @ var: (C @ X) = (X^T @ C^T)^T on the last two axes
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(b.shape) < 2:
        raise Unsupported("MatMul of a constant by the input needs a 2-D constant "
                          "and an input of rank >= 2")
    xt = _transpose_last(ctx, b, name + "/T_in")
    y = linear(ctx, xt, a, None, name + "/mm")
    return _transpose_last(ctx, y, name)


@converter("MatMul")
def _matmul(ctx, node, args, attrs):
    return [matmul(ctx, args[0], args[1], node.output[0])]


@converter("Gemm")
def _gemm(ctx, node, args, attrs):
    a, b = args[0], args[1]
    c = constant_input(args, 2, "the C input of Gemm")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    name = node.output[0]
    if attrs.get("transA", 0):
        a = _transpose_last(ctx, a, name + "/A_T") if is_var(a) else np.asarray(a).T
    if attrs.get("transB", 0):
        b = _transpose_last(ctx, b, name + "/B_T") if is_var(b) else np.asarray(b).T
    shift = None if c is None else beta * np.asarray(c, dtype=np.float64)
    if is_var(a) and not is_var(b):
        weight = alpha * np.asarray(b, dtype=np.float64).T
        if shift is not None and shift.size in (1, weight.shape[0]):
            return [linear(ctx, a, weight, shift.reshape(-1), name)]
        y = linear(ctx, a, weight, None, name + "/mm")
    else:
        y = matmul(ctx, a, b if is_var(b) else np.asarray(b), name + "/mm")
        if alpha != 1.0:
            y = scale(ctx, y, alpha, 0.0, name + "/alpha")
    return [y if shift is None else scale(ctx, y, 1.0, shift, name)]


# ---------------------------------------------------------------- arithmetic


@converter("Add", "Sub")
def _add_sub(ctx, node, args, attrs):
    a, b = args
    name = node.output[0]
    sign = -1.0 if node.op_type == "Sub" else 1.0
    if is_var(a) and is_var(b):
        shape = np.broadcast_shapes(a.shape, b.shape)
        a = broadcast(ctx, a, shape, name + "/bcast_a")
        b = broadcast(ctx, b, shape, name + "/bcast_b")
        if sign < 0:
            b = ctx.emit(ops.Scale, [b], shape, name + "/neg",
                         scale=-np.ones((1,) * len(shape)), shift=np.zeros((1,) * len(shape)))
        return [ctx.emit(ops.Add, [a, b], shape, name)]
    if is_var(a):
        return [scale(ctx, a, 1.0, sign * np.asarray(b, dtype=np.float64), name)]
    return [scale(ctx, b, sign, np.asarray(a, dtype=np.float64), name)]


@converter("Mul")
def _mul(ctx, node, args, attrs):
    a, b = args
    if is_var(a) and is_var(b):
        raise Unsupported("the product of two tensors that both depend on the input "
                          "is not affine")
    x, c = (a, b) if is_var(a) else (b, a)
    return [scale(ctx, x, np.asarray(c, dtype=np.float64), 0.0, node.output[0])]


@converter("Div")
def _div(ctx, node, args, attrs):
    a, b = args
    if is_var(b):
        raise Unsupported("division by a tensor that depends on the input is not affine")
    b = np.asarray(b, dtype=np.float64)
    if (b == 0).any():
        raise Unsupported("division by a constant that contains zeros")
    return [scale(ctx, a, 1.0 / b, 0.0, node.output[0])]


@converter("Neg")
def _neg(ctx, node, args, attrs):
    return [scale(ctx, args[0], -1.0, 0.0, node.output[0])]


# ---------------------------------------------------------------- batch norm


@converter("BatchNormalization")
def _batch_norm(ctx, node, args, attrs):
    if len([o for o in node.output if o]) > 1 or attrs.get("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode (several outputs)")
    x = args[0]
    gamma, beta, mean, var = (constant_input(args, i, "BatchNormalization parameters")
                              .astype(np.float64) for i in range(1, 5))
    factor = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    bshape = (1, -1) + (1,) * (len(x.shape) - 2)
    # (x - mean) * factor, then + beta: simplify folds the two into one Scale
    # and records |mean * factor| + |beta|, which onnxruntime's float32 kernel
    # (new_bias = beta - mean * new_scale) rounds at (verifier.bounds.roundoff)
    centred = scale(ctx, x, factor.reshape(bshape), (-mean * factor).reshape(bshape),
                    node.output[0] + "/centred")
    return [scale(ctx, centred, 1.0, beta.reshape(bshape), node.output[0])]


# ---------------------------------------------------------------- convolution


def spatial_padding(attrs, in_hw, kernel, stride, dilation):
    """(top, left, bottom, right) from ``pads`` or ``auto_pad``."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "", None):
        pads = attrs.get("pads") or [0] * (2 * len(in_hw))
        n = len(in_hw)
        return tuple(int(p) for p in pads[:n]) + tuple(int(p) for p in pads[n:])
    if auto == "VALID":
        return (0,) * (2 * len(in_hw))
    begins, ends = [], []
    for size, k, s, d in zip(in_hw, kernel, stride, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if auto == "SAME_UPPER" else total - small)
        ends.append(total - small if auto == "SAME_UPPER" else small)
    return tuple(begins) + tuple(ends)


def padding_2d(attrs, rank, in_hw, kernel, stride, dilation):
    """(top, left, bottom, right) of a 1-D (as 2-D with unit height) or 2-D op."""
    if rank == 1:
        return _pads_2d(spatial_padding(attrs, in_hw[1:], kernel[1:], stride[1:],
                                        dilation[1:]), 1)
    return spatial_padding(attrs, in_hw, kernel, stride, dilation)


def _to_2d(attrs, key, default, rank):
    value = attrs.get(key) or [default] * rank
    value = [int(v) for v in value]
    return tuple([default] * (2 - rank) + value) if rank < 2 else tuple(value)


def _pads_2d(pads, rank):
    if rank == 2:
        return (pads[0], pads[1], pads[2], pads[3])
    return (0, pads[0], 0, pads[1])  # 1-D: (left, right) on the width axis


def _spatial_input(ctx, x, name):
    """Give a rank-3 (N, C, L) Var a unit height axis; returns (var, rank)."""
    spatial = len(x.shape) - 2
    if spatial == 2:
        return x, 2
    if spatial == 1:
        return reshape(ctx, x, x.shape[:2] + (1,) + x.shape[2:], name + "/as2d"), 1
    raise Unsupported(f"only 1-D and 2-D spatial ops are supported, got {spatial}-D")


def _spatial_output(ctx, y, rank, name):
    if rank == 1:
        return reshape(ctx, y, y.shape[:2] + y.shape[3:], name)
    return y


def conv_output_hw(in_hw, kernel, stride, padding, dilation):
    top, left, bottom, right = padding
    return tuple((size + lo + hi - (d * (k - 1) + 1)) // s + 1
                 for size, k, s, d, lo, hi in zip(in_hw, kernel, stride, dilation,
                                                  (top, left), (bottom, right)))


def _conv_inputs(ctx, node, args, attrs, what):
    """Var (made 2-D), weight (2-D kernel), bias, rank, stride and dilation."""
    weight = constant_input(args, 1, f"the {what} weight").astype(np.float64)
    bias = constant_input(args, 2, f"the {what} bias")
    x, rank = _spatial_input(ctx, args[0], node.output[0])
    if rank == 1:
        weight = weight[:, :, None, :]
    bias = None if bias is None else bias.astype(np.float64)
    return (x, weight, bias, rank, _to_2d(attrs, "strides", 1, rank),
            _to_2d(attrs, "dilations", 1, rank))


@converter("Conv")
def _conv(ctx, node, args, attrs):
    name = node.output[0]
    x, weight, bias, rank, stride, dilation = _conv_inputs(ctx, node, args, attrs, "Conv")
    kernel = weight.shape[2:]
    in_hw = x.shape[-2:]
    pads = padding_2d(attrs, rank, in_hw, kernel, stride, dilation)
    groups = int(attrs.get("group", 1))
    if x.shape[-3] != weight.shape[1] * groups:
        raise Unsupported(f"Conv weight {list(weight.shape)} does not fit input "
                          f"channels {x.shape[-3]} with group={groups}")
    out_hw = conv_output_hw(in_hw, kernel, stride, pads, dilation)
    y = ctx.emit(ops.Conv, [x], x.shape[:-3] + (weight.shape[0],) + out_hw, name + "/conv",
                 weight=weight, bias=bias, stride=stride, padding=pads, dilation=dilation,
                 groups=groups)
    return [_spatial_output(ctx, y, rank, name)]


@converter("ConvTranspose")
def _conv_transpose(ctx, node, args, attrs):
    name = node.output[0]
    x, weight, bias, rank, stride, dilation = _conv_inputs(ctx, node, args, attrs,
                                                           "ConvTranspose")
    kernel = weight.shape[2:]
    out_pad = _to_2d(attrs, "output_padding", 0, rank)
    groups = int(attrs.get("group", 1))
    in_hw = x.shape[-2:]
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, s, op, k, d in zip(in_hw, stride, out_pad, kernel, dilation)]
    auto = attrs.get("auto_pad", "NOTSET")
    if attrs.get("output_shape"):
        target = [int(v) for v in attrs["output_shape"]][-rank:]
        target = [1] * (2 - rank) + target
        total = [f - t for f, t in zip(full, target)]
        if auto == "SAME_UPPER":
            begins = [t // 2 for t in total]
        else:
            begins = [t - t // 2 for t in total]
        pads = (begins[0], begins[1], total[0] - begins[0], total[1] - begins[1])
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_hw, stride)]
        total = [f - t for f, t in zip(full, target)]
        begins = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        pads = (begins[0], begins[1], total[0] - begins[0], total[1] - begins[1])
    else:
        pads = (0, 0, 0, 0) if auto == "VALID" else None
        if pads is None:
            raw = attrs.get("pads") or [0] * (2 * rank)
            pads = _pads_2d([int(p) for p in raw], rank)
    out_hw = tuple(f - pads[i] - pads[i + 2] for i, f in enumerate(full))
    if x.shape[-3] != weight.shape[0]:
        raise Unsupported(f"ConvTranspose weight {list(weight.shape)} does not fit input "
                          f"channels {x.shape[-3]}")
    y = ctx.emit(ops.ConvTranspose, [x], x.shape[:-3] + (weight.shape[1] * groups,) + out_hw,
                 name + "/convT", weight=weight, bias=bias, stride=stride, padding=pads, dilation=dilation, groups=groups)
    return [_spatial_output(ctx, y, rank, name)]


# ---------------------------------------------------------------- average pooling


def pool_geometry(attrs, x, rank):
    """kernel, stride, padding (with ceil-mode extra), dilation and output size."""
    kernel = _to_2d(attrs, "kernel_shape", 1, rank)
    stride = _to_2d(attrs, "strides", 1, rank)
    dilation = _to_2d(attrs, "dilations", 1, rank)
    in_hw = x.shape[-2:]
    pads = padding_2d(attrs, rank, in_hw, kernel, stride, dilation)
    out_hw = list(conv_output_hw(in_hw, kernel, stride, pads, dilation))
    extra = [0, 0]
    if attrs.get("ceil_mode", 0):
        for i in range(2):
            span = in_hw[i] + pads[i] + pads[i + 2] - (dilation[i] * (kernel[i] - 1) + 1)
            ceil_out = -(-span // stride[i]) + 1
            # the last window must start inside the input or the begin padding
            if (ceil_out - 1) * stride[i] >= in_hw[i] + pads[i]:
                ceil_out -= 1
            extra[i] = max((ceil_out - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
                           - (in_hw[i] + pads[i] + pads[i + 2]), 0)
            out_hw[i] = ceil_out
    padding = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    return kernel, stride, padding, dilation, tuple(out_hw), pads


@converter("AveragePool")
def _average_pool(ctx, node, args, attrs):
    x, name = args[0], node.output[0]
    x, rank = _spatial_input(ctx, x, name)
    kernel, stride, padding, dilation, out_hw, pads = pool_geometry(attrs, x, rank)
    channels = x.shape[-3]
    weight = np.ones((channels, 1) + kernel)
    y = ctx.emit(ops.Conv, [x], x.shape[:-3] + (channels,) + out_hw, name + "/sum",
                 weight=weight, bias=None, stride=stride, padding=padding,
                 dilation=dilation, groups=channels)
    # divisor per output position: the window's cells inside the input, plus
    # the explicit pads when count_include_pad (never the ceil-mode extra)
    in_hw = x.shape[-2:]
    ones = np.ones((1, 1) + in_hw)
    if attrs.get("count_include_pad", 0):
        ones = F.pad2d(ones, pads, 1.0)
        inner = (0, 0, padding[2] - pads[2], padding[3] - pads[3])
    else:
        inner = padding
    count = F.conv2d(ones, np.ones((1, 1) + kernel), None, stride, inner, dilation)[0, 0]
    y = scale(ctx, y, (1.0 / count)[(None,) * (len(y.shape) - 2)], 0.0, name + "/avg")
    return [_spatial_output(ctx, y, rank, name)]


@converter("GlobalAveragePool")
def _global_average_pool(ctx, node, args, attrs):
    x, name = args[0], node.output[0]
    x, rank = _spatial_input(ctx, x, name)
    channels, hw = x.shape[-3], x.shape[-2:]
    weight = np.full((channels, 1) + hw, 1.0 / (hw[0] * hw[1]))
    y = ctx.emit(ops.Conv, [x], x.shape[:-3] + (channels, 1, 1), name + "/gap",
                 weight=weight, bias=None, groups=channels)
    return [_spatial_output(ctx, y, rank, name)]


@converter("ReduceMean", "ReduceSum")
def _reduce(ctx, node, args, attrs):
    x, name = args[0], node.output[0]
    axes = attrs.get("axes")
    if axes is None:
        value = constant_input(args, 1, f"the axes of {node.op_type}")
        axes = None if value is None else [int(a) for a in value.reshape(-1)]
    rank = len(x.shape)
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    keep = [i for i in range(rank) if i not in axes]
    # move reduced axes last, flatten them, and reduce with a Linear
    perm = keep + axes
    moved = gather(ctx, x, positions(x.shape).transpose(perm), name + "/move")
    width = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    flat = reshape(ctx, moved, tuple(x.shape[i] for i in keep) + (width,), name + "/flat")
    factor = 1.0 / width if node.op_type == "ReduceMean" else 1.0
    y = linear(ctx, flat, np.full((1, width), factor), None, name + "/reduce")
    if attrs.get("keepdims", 1):
        out_shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    else:
        out_shape = tuple(x.shape[i] for i in keep)
    return [reshape(ctx, y, out_shape, name)]
