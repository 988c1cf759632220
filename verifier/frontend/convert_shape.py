"""Converters for data-movement ops: all lower to Reshape, Gather or Concat."""
from __future__ import annotations

import numpy as np

from verifier.frontend.axes import axes_argument, normalize_axes, normalize_axis
from verifier.frontend.registry import Unsupported, converter, is_var
from verifier.ir import ops


# ---------------------------------------------------------------- helpers


def positions(shape) -> np.ndarray:
    """The flat C-order position of every entry of a tensor of ``shape``."""
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def gather(ctx, x, index, name, fill=0.0):
    """y.flat[k] = x.flat[index.flat[k]] (or ``fill`` where index is -1)."""
    index = np.asarray(index, dtype=np.int64)
    if index.size == x.size and (index.ravel() == np.arange(x.size)).all():
        return reshape(ctx, x, index.shape, name)
    return ctx.emit(ops.Gather, [x], index.shape, name, index=index, fill=float(fill))


def reshape(ctx, x, shape, name):
    shape = tuple(int(s) for s in shape)
    if shape == x.shape:
        return x
    return ctx.emit(ops.Reshape, [x], shape, name)


def broadcast(ctx, x, shape, name):
    """Broadcast a Var to ``shape`` (numpy rules)."""
    shape = tuple(int(s) for s in shape)
    if x.shape == shape:
        return x
    index = positions(x.shape).reshape((1,) * (len(shape) - len(x.shape)) + x.shape)
    return gather(ctx, x, np.broadcast_to(index, shape).copy(), name)


def scale(ctx, x, factor, shift, name):
    """y = x * factor + shift, broadcasting x up if the constants are larger."""
    factor = np.asarray(factor, dtype=np.float64)
    shift = np.asarray(shift, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, factor.shape, shift.shape)
    x = broadcast(ctx, x, shape, name + "/broadcast")
    rank = len(shape)
    factor = factor.reshape((1,) * (rank - factor.ndim) + factor.shape)
    shift = shift.reshape((1,) * (rank - shift.ndim) + shift.shape)
    if (factor == 1).all() and (shift == 0).all():
        return x
    return ctx.emit(ops.Scale, [x], shape, name, scale=factor, shift=shift)


def constant_input(args, i, what, node_name=""):
    """The constant value of input ``i`` (None when absent); Vars are rejected."""
    if i >= len(args) or args[i] is None:
        return None
    if is_var(args[i]):
        raise Unsupported(f"{what} must be a constant, but it depends on the model input")
    return np.asarray(args[i])


# ---------------------------------------------------------------- no-ops


@converter("Identity", "Cast", "CastLike")
def _identity(ctx, node, args, attrs):
    if node.op_type == "Cast":
        to = attrs.get("to")
        if to not in (1, 10, 11, 16):
            raise Unsupported(f"Cast of the model's data to a non-float type (to={to}) "
                              "is not supported")
    return [args[0]]


@converter("Dropout")
def _dropout(ctx, node, args, attrs):
    """Inference-mode Dropout: the identity, and its optional mask output is
    a constant of all true (as onnxruntime computes it)."""
    training = constant_input(args, 2, "the training_mode of Dropout")
    if training is not None and bool(training.reshape(-1)[0]):
        raise Unsupported("Dropout in training mode is random; export the model in "
                          "inference mode (model.eval())")
    x = args[0]
    return [x, np.ones(x.shape, dtype=bool)]


@converter("Constant")
def _constant(ctx, node, args, attrs):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            return [np.asarray(attrs[key])]
    raise Unsupported("Constant without a supported value attribute")


@converter("Shape")
def _shape(ctx, node, args, attrs):
    shape = np.asarray(args[0].shape if is_var(args[0]) else np.shape(args[0]), dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return [shape[start:end]]


# ---------------------------------------------------------------- reshapes


@converter("Flatten")
def _flatten(ctx, node, args, attrs):
    x = args[0]
    axis = normalize_axis(attrs.get("axis", 1), len(x.shape), split_point=True)
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [reshape(ctx, x, (outer, x.size // outer if outer else 0), node.output[0])]


@converter("Reshape")
def _reshape(ctx, node, args, attrs):
    x = args[0]
    target = [int(s) for s in constant_input(args, 1, "the target shape of Reshape")]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if s == 0 else s for i, s in enumerate(target)]
    if target.count(-1) > 1:
        raise Unsupported("Reshape with more than one -1 in the target shape")
    if -1 in target:
        known = int(np.prod([s for s in target if s != -1], dtype=np.int64))
        target[target.index(-1)] = x.size // known if known else 0
    if int(np.prod(target, dtype=np.int64)) != x.size:
        raise Unsupported(f"cannot reshape {list(x.shape)} to {target}")
    return [reshape(ctx, x, target, node.output[0])]


@converter("Squeeze")
def _squeeze(ctx, node, args, attrs):
    x = args[0]
    axes = axes_argument(node, args, attrs)
    if axes is None:
        shape = [s for s in x.shape if s != 1]
    else:
        axes = set(normalize_axes(axes, len(x.shape)))
        shape = [s for i, s in enumerate(x.shape) if i not in axes]
    return [reshape(ctx, x, shape, node.output[0])]


@converter("Unsqueeze")
def _unsqueeze(ctx, node, args, attrs):
    x = args[0]
    axes = axes_argument(node, args, attrs)
    if axes is None:
        raise Unsupported("Unsqueeze without axes")
    rank = len(x.shape) + len(axes)
    axes = sorted(normalize_axes(axes, rank))
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [reshape(ctx, x, shape, node.output[0])]


@converter("Transpose")
def _transpose(ctx, node, args, attrs):
    x = args[0]
    perm = attrs.get("perm") or list(range(len(x.shape)))[::-1]
    return [gather(ctx, x, positions(x.shape).transpose(perm), node.output[0])]


# ---------------------------------------------------------------- selections


@converter("Slice", since=10)
def _slice(ctx, node, args, attrs):
    x = args[0]
    starts = constant_input(args, 1, "the starts of Slice")
    ends = constant_input(args, 2, "the ends of Slice")
    axes = constant_input(args, 3, "the axes of Slice")
    steps = constant_input(args, 4, "the steps of Slice")
    return [_do_slice(ctx, node, x, starts, ends, axes, steps)]


@converter("Slice", since=1)
def _slice_v1(ctx, node, args, attrs):
    return [_do_slice(ctx, node, args[0], attrs["starts"], attrs["ends"],
                      attrs.get("axes"), None)]


def _do_slice(ctx, node, x, starts, ends, axes, steps):
    rank = len(x.shape)
    starts = [int(s) for s in np.reshape(starts, -1)]
    ends = [int(e) for e in np.reshape(ends, -1)]
    axes = list(range(len(starts))) if axes is None else [int(a) for a in np.reshape(axes, -1)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.reshape(steps, -1)]
    index = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, normalize_axes(axes, rank), steps):
        if step == 0:
            raise Unsupported("Slice with step 0")
        # Python's slice clamping and wrapping of negative indices is ONNX's
        index[axis] = slice(start, end, step)
    return gather(ctx, x, positions(x.shape)[tuple(index)], node.output[0])


@converter("Split")
def _split(ctx, node, args, attrs):
    x = args[0]
    axis = normalize_axis(attrs.get("axis", 0), len(x.shape))
    sizes = attrs.get("split")
    if sizes is None:
        value = constant_input(args, 1, "the split sizes")
        sizes = None if value is None else [int(s) for s in value]
    count = len(node.output)
    if sizes is None:
        parts = attrs.get("num_outputs") or count
        chunk = -(-x.shape[axis] // parts)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    bounds = np.cumsum([0] + list(sizes))
    pos = positions(x.shape)
    outputs = []
    for i, name in enumerate(node.output):
        part = np.take(pos, np.arange(bounds[i], bounds[i + 1]), axis=axis)
        outputs.append(gather(ctx, x, part, name))
    return outputs


@converter("Gather")
def _gather(ctx, node, args, attrs):
    x = args[0]
    indices = constant_input(args, 1, "the indices of Gather").astype(np.int64)
    axis = normalize_axis(attrs.get("axis", 0), len(x.shape))
    if ((indices < -x.shape[axis]) | (indices >= x.shape[axis])).any():
        raise Unsupported(f"Gather index out of range for axis {axis} of size {x.shape[axis]}")
    return [gather(ctx, x, np.take(positions(x.shape), indices, axis=axis), node.output[0])]


@converter("Concat")
def _concat(ctx, node, args, attrs):
    parts = [a for a in args if a is not None]
    rank = len(parts[0].shape) if is_var(parts[0]) else np.ndim(parts[0])
    axis = normalize_axis(attrs["axis"], rank)
    shapes = [p.shape if is_var(p) else np.shape(p) for p in parts]
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    if all(is_var(p) for p in parts):
        return [ctx.emit(ops.Concat, parts, out_shape, node.output[0], axis=axis)]
    # constants among the pieces: place each Var by a Gather into the full
    # shape (fill 0), add them up, and add the constants as a shift
    shift = np.zeros(out_shape)
    pieces, offset = [], 0
    for part, shape in zip(parts, shapes):
        region = [slice(None)] * rank
        region[axis] = slice(offset, offset + shape[axis])
        if is_var(part):
            index = np.full(out_shape, -1, dtype=np.int64)
            index[tuple(region)] = positions(shape)
            pieces.append(gather(ctx, part, index, f"{node.output[0]}/part{len(pieces)}"))
        else:
            shift[tuple(region)] = part
        offset += shape[axis]
    total = pieces[0]
    for k, piece in enumerate(pieces[1:]):
        total = ctx.emit(ops.Add, [total, piece], out_shape, f"{node.output[0]}/sum{k}")
    return [scale(ctx, total, 1.0, shift, node.output[0])]


@converter("Pad")
def _pad(ctx, node, args, attrs):
    x = args[0]
    rank = len(x.shape)
    if "pads" in attrs:  # opset < 11
        pads = [int(p) for p in attrs["pads"]]
        value = float(attrs.get("value", 0.0))
        axes = list(range(rank))
    else:
        pads = [int(p) for p in constant_input(args, 1, "the pads of Pad")]
        cval = constant_input(args, 2, "the constant value of Pad")
        value = 0.0 if cval is None or cval.size == 0 else float(cval.reshape(-1)[0])
        axes_value = constant_input(args, 3, "the axes of Pad")
        axes = list(range(rank)) if axes_value is None else \
            normalize_axes(axes_value.reshape(-1), rank)
    mode = attrs.get("mode", "constant")
    before, after = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        before[axis], after[axis] = pads[k], pads[k + len(axes)]
    index = positions(x.shape)
    # negative pads crop
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-a, 0))
                 for i, (b, a) in enumerate(zip(before, after)))
    index = index[crop]
    widths = [(max(b, 0), max(a, 0)) for b, a in zip(before, after)]
    if mode == "constant":
        index = np.pad(index, widths, constant_values=-1)
    elif mode in ("reflect", "edge", "wrap"):
        if mode == "reflect" and any(w > s - 1 for (wb, wa), s in zip(widths, index.shape)
                                     for w in (wb, wa)):
            raise Unsupported("reflect padding wider than the tensor")
        index = np.pad(index, widths, mode={"reflect": "reflect", "edge": "edge",
                                            "wrap": "wrap"}[mode])
    else:
        raise Unsupported(f"Pad mode {mode!r} is not supported")
    return [gather(ctx, x, index, node.output[0], fill=value)]


@converter("Expand")
def _expand(ctx, node, args, attrs):
    x = args[0]
    shape = [int(s) for s in constant_input(args, 1, "the shape of Expand")]
    return [broadcast(ctx, x, np.broadcast_shapes(x.shape, tuple(shape)), node.output[0])]
