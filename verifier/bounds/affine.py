"""Interval (IBP), backward (CROWN) and adjoint rules of the affine core ops.

Conventions shared by the engines:

* interval bounds are arrays of shape ``(B, *node.shape)``;
* a batch of linear functions of a node's value is a coefficient array ``A``
  of shape ``(Bα, R, node.size)`` (``Bα`` is ``B`` or 1 when the functions
  are the same for every batch element): the backward rule of a node maps the
  coefficients on its output to coefficients on its inputs plus a constant
  ``(Bα, R)`` (None when zero), so that ``A·y = Σ A_in·x_in + bias`` exactly;
* the adjoint of a backward rule is the op itself applied to an ``x``-like
  array of shape ``(B, R, size)`` (see :mod:`verifier.bounds.alpha`), which
  for affine ops is the evaluator's own rule.
"""
from __future__ import annotations

import numpy as np

from verifier.ir import functional as F
from verifier.ir import ops
from verifier.ir.evaluate import EVAL_RULES

# ------------------------------------------------------- forward application


def _spatial(node, x, weight, bias):
    """Conv/ConvTranspose on (M, *input shape) with the given weight (and bias)."""
    x4, lead = F.as_nchw(x)
    if isinstance(node, ops.Conv):
        y = F.conv2d(x4, weight, None, node.stride, node.padding, node.dilation, node.groups)
    else:
        y = F.conv_transpose2d(x4, weight, None, node.stride, node.padding, node.dilation,
                               node.groups, tuple(node.shape[-2:]))
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.reshape(lead + y.shape[1:])


def apply(prep, i, node, args, absolute=False):
    """The op on a batch ``args`` (each (M, *input shape)); with ``absolute``,
    the linear part with absolute weights and no bias (the radius map of IBP)."""
    if isinstance(node, (ops.Conv, ops.ConvTranspose)):
        if absolute:
            return _spatial(node, args[0], prep.abs_node(i).weight, None)
        return _spatial(node, args[0], node.weight, node.bias)
    if absolute:
        node = prep.abs_node(i)
    return EVAL_RULES[type(node)](node, args)


# --------------------------------------------------------------------- IBP


def _ibp_center_radius(prep, i, node, lowers, uppers):
    """Affine ops: y = f(center) ± |f|(radius), exact per entry for one op."""
    lower, upper = lowers[0], uppers[0]
    y_center = apply(prep, i, node, [0.5 * (lower + upper)])
    y_radius = apply(prep, i, node, [0.5 * (upper - lower)], absolute=True)
    return y_center - y_radius, y_center + y_radius


def _ibp_add(prep, i, node, lowers, uppers):
    return lowers[0] + lowers[1], uppers[0] + uppers[1]


def _ibp_copy(prep, i, node, lowers, uppers):
    """Structural ops copy entries (and constants): apply them to both bounds."""
    rule = EVAL_RULES[type(node)]
    return rule(node, lowers), rule(node, uppers)


IBP_RULES = {
    ops.Linear: _ibp_center_radius, ops.Conv: _ibp_center_radius,
    ops.ConvTranspose: _ibp_center_radius, ops.Scale: _ibp_center_radius,
    ops.Add: _ibp_add,
    ops.Reshape: _ibp_copy, ops.Gather: _ibp_copy, ops.Concat: _ibp_copy,
}

# ---------------------------------------------------------------- backward


def _back_linear(prep, i, node, A):
    b, r, _ = A.shape
    out = node.weight.shape[0]
    A_in = (A.reshape(-1, out) @ node.weight).reshape(b, r, -1)
    bias = None
    if node.bias is not None:
        grouped = A if A.shape[-1] == out else A.reshape(b, r, -1, out).sum(axis=2)
        bias = grouped @ node.bias
    return [A_in], bias


def _spatial_bias(node, A):
    if node.bias is None:
        return None
    b, r, _ = A.shape
    channels, h, w = node.shape[-3:]
    return A.reshape(b, r, -1, channels, h * w).sum(axis=(2, 4)) @ node.bias


def _back_conv(prep, i, node, A):
    """The adjoint of a convolution is the transposed convolution (same weight)."""
    b, r, _ = A.shape
    in_shape = prep.nodes[node.inputs[0]].shape
    y = A.reshape((-1,) + tuple(node.shape[-3:]))
    x = F.conv_transpose2d(y, node.weight, None, node.stride, node.padding, node.dilation,
                           node.groups, tuple(in_shape[-2:]))
    return [x.reshape(b, r, -1)], _spatial_bias(node, A)


def _fit_hw(x, hw):
    """Crop or zero-pad the last two axes of ``x`` to ``hw``."""
    h, w = hw
    x = x[..., :h, :w]
    if x.shape[-2:] != (h, w):
        pad = [(0, 0)] * (x.ndim - 2) + [(0, h - x.shape[-2]), (0, w - x.shape[-1])]
        x = np.pad(x, pad)
    return x


def _back_conv_transpose(prep, i, node, A):
    """The adjoint of a transposed convolution is the convolution (same weight)."""
    b, r, _ = A.shape
    in_shape = prep.nodes[node.inputs[0]].shape
    y = A.reshape((-1,) + tuple(node.shape[-3:]))
    x = F.conv2d(y, node.weight, None, node.stride, node.padding, node.dilation, node.groups)
    x = _fit_hw(x, tuple(in_shape[-2:]))
    return [x.reshape(b, r, -1)], _spatial_bias(node, A)


def _back_scale(prep, i, node, A):
    return [A * prep.flat(i, "scale")], A @ prep.flat(i, "shift")


def _back_add(prep, i, node, A):
    return [A, A], None


def _back_reshape(prep, i, node, A):
    return [A], None


def _back_gather(prep, i, node, A):
    plan = prep.gather_plan(i)
    b, r, _ = A.shape
    n_in = prep.sizes[node.inputs[0]]
    if plan.unique:
        A_in = np.zeros((b, r, n_in))
        A_in[:, :, plan.sources] = A[:, :, plan.positions]
    else:
        A_in = (plan.matrix @ A.reshape(-1, node.size).T).T.reshape(b, r, n_in)
    bias = None
    if plan.fill_positions.size and node.fill != 0.0:
        bias = A[:, :, plan.fill_positions].sum(axis=-1) * node.fill
    return [A_in], bias


def _back_concat(prep, i, node, A):
    b, r, _ = A.shape
    sizes = [prep.nodes[j].shape[node.axis] for j in node.inputs]
    parts = np.split(A.reshape((b, r) + tuple(node.shape)), np.cumsum(sizes)[:-1],
                     axis=node.axis + 2)
    return [p.reshape(b, r, -1) for p in parts], None


BACKWARD_RULES = {
    ops.Linear: _back_linear, ops.Conv: _back_conv, ops.ConvTranspose: _back_conv_transpose,
    ops.Scale: _back_scale, ops.Add: _back_add, ops.Reshape: _back_reshape,
    ops.Gather: _back_gather, ops.Concat: _back_concat,
}


def forward(prep, i, node, values):
    """The adjoint of a backward rule: the op applied to ``(B, R, size)`` arrays."""
    b, r = values[0].shape[:2]
    args = [v.reshape((b * r,) + tuple(prep.nodes[j].shape)) for v, j in zip(values, node.inputs)]
    return apply(prep, i, node, args).reshape(b, r, -1)
