"""Converters for affine ops: Gemm, MatMul, arithmetic with constants,
Conv, ConvTranspose, BatchNormalization and average pooling."""
from __future__ import annotations

import numpy as np

from verifier.frontend.axes import axes_argument, normalize_axes
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
    """a @ b (numpy/ONNX MatMul semantics) with exactly one of a, b a Var and
    the other a constant; constants of rank > 2 are stacks of matrices."""
    if is_var(a) and is_var(b):
        raise Unsupported("the product of two tensors that both depend on the input "
                          "is not affine")
    if not is_var(a):
        return _constant_matmul(ctx, np.asarray(a, dtype=np.float64), b, name)
    b = np.asarray(b, dtype=np.float64)
    if b.ndim == 0 or len(a.shape) == 0:
        raise Unsupported("MatMul with a scalar operand")
    row = len(a.shape) == 1  # a 1-D input is a row, whose axis is dropped again
    x = reshape(ctx, a, (1,) + a.shape, name + "/row") if row else a
    inner = name if b.ndim == 2 and not row else name + "/mm"
    if b.ndim == 1:  # matrix @ vector: the last axis goes
        y = linear(ctx, x, b[None, :], None, inner)
        shape = y.shape[:-1]
    else:
        y = linear(ctx, x, b.T, None, inner) if b.ndim == 2 else \
            _batched_matmul(ctx, x, b, inner)
        shape = y.shape
    if row:
        shape = shape[:-2] + shape[-1:] if b.ndim > 1 else shape[:-1]
    return reshape(ctx, y, shape, name)


def _constant_matmul(ctx, c, x, name):
    """Constant c @ Var x: (x^T @ c^T)^T on the last two axes; a 1-D x is a
    column (c @ x = Linear with weight c), a 1-D c a row."""
    if c.ndim == 0:
        raise Unsupported("MatMul with a scalar operand")
    if len(x.shape) == 1:
        if c.ndim != 2:
            raise Unsupported("MatMul of a stack of constant matrices by a 1-D input")
        return linear(ctx, x, c, None, name)
    row = c.ndim == 1
    c = c[None, :] if row else c
    y = matmul(ctx, _transpose_last(ctx, x, name + "/T_in"), np.swapaxes(c, -1, -2),
               name + "/mm")
    y = _transpose_last(ctx, y, name + "/T_out" if row else name)
    return reshape(ctx, y, y.shape[:-2] + y.shape[-1:], name) if row else y


def _batched_matmul(ctx, x, b, name):
    """Var x (..., n, k) @ constant b (..., k, m) with a stack of weights
    (rank > 2, broadcast as in numpy): one Linear per matrix of the stack on
    the matching slice of x, stacked back with a Concat."""
    batch = np.broadcast_shapes(x.shape[:-2], b.shape[:-2])
    n, k, m = x.shape[-2], x.shape[-1], b.shape[-1]
    if b.shape[-2] != k:
        raise Unsupported(f"MatMul shapes {list(x.shape)} and {list(b.shape)} do not agree")
    index = np.broadcast_to(positions(x.shape).reshape(
        (1,) * (len(batch) + 2 - len(x.shape)) + x.shape), batch + (n, k)).reshape(-1, n, k)
    weights = np.broadcast_to(b, batch + (k, m)).reshape(-1, k, m)
    parts = [linear(ctx, gather(ctx, x, index[p][None], f"{name}/slice{p}"), weights[p].T,
                    None, f"{name}/part{p}") for p in range(index.shape[0])]
    y = parts[0] if len(parts) == 1 else ctx.emit(ops.Concat, parts, (len(parts), n, m),
                                                  name + "/stack", axis=0)
    return reshape(ctx, y, batch + (n, m), name)


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
        # C is a Linear bias only when it varies along the columns alone;
        # a (M, 1) C adds per row and goes through the broadcasting Scale
        if shift is not None and all(s == 1 for s in shift.shape[:-1]) \
                and shift.size in (1, weight.shape[0]):
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


def _transpose_padding(attrs, rank, in_hw, stride, full):
    """(top, left, bottom, right) cropped from the full output, and the output size.

    As onnxruntime computes them (checked against it in the tests): the target
    size is ``output_shape`` or, for ``auto_pad`` SAME_*, ``input * stride``
    but never more than the full output (the total padding is clamped at 0,
    where the ONNX text would pad negatively); SAME_UPPER crops
    ``total // 2`` at the start, SAME_LOWER and explicit ``output_shape``
    crop the larger half at the start. A target larger than the full output
    (``output_shape`` only) is filled with zeros at the end.
    """
    auto = attrs.get("auto_pad", "NOTSET")
    if attrs.get("output_shape"):
        target = [1] * (2 - rank) + [int(v) for v in attrs["output_shape"]][-rank:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [min(f, i * s) for f, i, s in zip(full, in_hw, stride)]
    else:
        if auto == "VALID":
            pads = (0, 0, 0, 0)
        else:
            pads = _pads_2d([int(p) for p in attrs.get("pads") or [0] * (2 * rank)], rank)
        return pads, tuple(f - pads[i] - pads[i + 2] for i, f in enumerate(full))
    total = [max(f - t, 0) for f, t in zip(full, target)]
    begins = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    return (begins[0], begins[1], total[0] - begins[0], total[1] - begins[1]), tuple(target)


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
    pads, out_hw = _transpose_padding(attrs, rank, in_hw, stride, full)
    if x.shape[-3] != weight.shape[0]:
        raise Unsupported(f"ConvTranspose weight {list(weight.shape)} does not fit input "
                          f"channels {x.shape[-3]}")
    y = ctx.emit(ops.ConvTranspose, [x], x.shape[:-3] + (weight.shape[1] * groups,) + out_hw,
                 name + "/convT", weight=weight, bias=bias, stride=stride, padding=pads, dilation=dilation, groups=groups)
    return [_spatial_output(ctx, y, rank, name)]


# ---------------------------------------------------------------- average pooling


def _trunc_div(a: int, b: int) -> int:
    """Integer division rounding toward zero (C++'s, which onnxruntime uses)."""
    return a // b if a >= 0 else -(-a // b)


def _pool_pads(attrs, rank, in_hw, kernel, stride, dilation):
    """Declared (top, left, bottom, right) of a pooling op, as onnxruntime
    computes them: for ``auto_pad`` SAME_* from the *undilated* kernel,
    ``(ceil(n / s) - 1) * s + k - n`` in total, the odd one at the end
    (SAME_UPPER) or the start (SAME_LOWER)."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return padding_2d(attrs, rank, in_hw, kernel, stride, dilation)
    begins, ends = [], []
    for size, k, s in zip(in_hw, kernel, stride):
        total = (-(-size // s) - 1) * s + k - size
        begin = _trunc_div(total + 1 if auto == "SAME_LOWER" else total, 2)
        begins.append(begin)
        ends.append(total - begin)
    return tuple(begins) + tuple(ends)


def pool_geometry(attrs, x, rank, negative_end=False):
    """kernel, stride, padding (with the end padding the last windows reach),
    dilation, output size and the declared pads (for count_include_pad).

    The output size is onnxruntime's: ``(n + pads - span) / s + 1`` with the
    division rounded toward zero (so a dilated window longer than the padded
    input still gives one output) or, with ``ceil_mode``, up, less one when
    the last window would start past the input and the begin padding.
    Windows that reach past the declared end padding read padding. SAME_*
    with a kernel shorter than the stride can ask for negative padding:
    onnxruntime's MaxPool ignores a negative end (``negative_end``), its
    AveragePool crops the input there and a negative start shifts the
    windows; those are rejected.
    """
    kernel = _to_2d(attrs, "kernel_shape", 1, rank)
    stride = _to_2d(attrs, "strides", 1, rank)
    dilation = _to_2d(attrs, "dilations", 1, rank)
    in_hw = x.shape[-2:]
    pads = _pool_pads(attrs, rank, in_hw, kernel, stride, dilation)
    out_hw, ends = [], []
    for i in range(2):
        span = dilation[i] * (kernel[i] - 1) + 1
        begin, end = pads[i], pads[i + 2]
        extent = in_hw[i] + begin + end - span
        if attrs.get("ceil_mode", 0):
            out = -(-extent // stride[i]) + 1
            # the last window must start inside the input or the begin padding
            if (out - 1) * stride[i] >= in_hw[i] + begin:
                out -= 1
        else:
            out = _trunc_div(extent, stride[i]) + 1
        # end padding: the declared one, or more where the last windows reach past it
        end = max(end, (out - 1) * stride[i] + span - in_hw[i] - begin, 0)
        windows = (in_hw[i] + begin + end - span) // stride[i] + 1
        negative = min(pads[:2]) < 0 or (min(pads[2:]) < 0 and not negative_end)
        if out < 1 or negative or windows != out:
            raise Unsupported(f"pooling window {list(kernel)} (dilation {list(dilation)}, "
                              f"stride {list(stride)}, pads {list(pads)}) does not fit an "
                              f"input of {list(in_hw)}")
        out_hw.append(out)
        ends.append(end)
    padding = (pads[0], pads[1], ends[0], ends[1])
    declared = tuple(max(p, 0) for p in pads)
    return kernel, stride, padding, dilation, tuple(out_hw), declared


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


def flat_spatial(ctx, x, name):
    """(N, C, *spatial) Var as (N, C, 1, S) for a global pooling over all S
    spatial entries (any number of spatial axes), and the output shape."""
    if len(x.shape) < 3:
        raise Unsupported(f"global pooling needs an (N, C, ...) input, got {list(x.shape)}")
    lead = x.shape[:2]
    size = int(np.prod(x.shape[2:], dtype=np.int64))
    return reshape(ctx, x, lead + (1, size), name + "/flat"), lead + (1,) * (len(x.shape) - 2)


@converter("GlobalAveragePool")
def _global_average_pool(ctx, node, args, attrs):
    name = node.output[0]
    x, out_shape = flat_spatial(ctx, args[0], name)
    channels, size = x.shape[1], x.shape[-1]
    weight = np.full((channels, 1, 1, size), 1.0 / size)
    y = ctx.emit(ops.Conv, [x], x.shape[:2] + (1, 1), name + "/gap",
                 weight=weight, bias=None, groups=channels)
    return [reshape(ctx, y, out_shape, name)]


@converter("ReduceMean", "ReduceSum")
def _reduce(ctx, node, args, attrs):
    x, name = args[0], node.output[0]
    axes = axes_argument(node, args, attrs)
    rank = len(x.shape)
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    axes = sorted(normalize_axes(axes, rank))
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
