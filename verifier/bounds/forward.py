"""Forward symbolic bounds for low-dimensional inputs.

Every node's value is enclosed between two linear functions of the input
(``lower·[x; 1] <= v <= upper·[x; 1]`` on the box), propagated forward layer
by layer: the symbolic-interval analysis of ReluVal / Neurify (Wang et al.,
USENIX Security 2018 and NeurIPS 2018) with DeepPoly's choice of ReLU lines
(Singh et al., POPL 2019). With ``d`` inputs a layer of width ``n`` costs
``O(n_in·n·d)`` per box, against CROWN's backward pass from every
intermediate neuron; with few inputs (acasxu: 5) that makes a bound per box
cheap enough for input splitting to go wide. The pre-activation bounds it
finds are sound and are handed to CROWN (``intermediate=``), whose final
backward pass then costs one sweep.

Supported ops: Input, Linear, Scale, Add, Reshape, Relu, PRelu. Other graphs
return None (callers fall back to CROWN).
"""
from __future__ import annotations

import numpy as np

from verifier.bounds.result import Interval
from verifier.ir import ops

SUPPORTED = (ops.Input, ops.Linear, ops.Scale, ops.Add, ops.Reshape, ops.Relu, ops.PRelu)


def supports(graph) -> bool:
    """Only the ops above, and PRelu slopes in [0, 1] (convex, monotone)."""
    return all(isinstance(node, SUPPORTED) and not (
        isinstance(node, ops.PRelu) and ((node.slope < 0).any() or (node.slope > 1).any()))
        for node in graph.nodes)


def _concretize(form, center, radius, upper=False):
    """Lower (or ``upper``) bound of ``form·[x; 1]`` (form (n, B, d+1)) over the
    boxes ``center ± radius`` (B, d); returns (n, B). The upper bound is
    ``-_concretize(-form)`` without negating the form."""
    coef, const = form[..., :-1], form[..., -1]
    mid = np.einsum("nbd,bd->nb", coef, center)
    spread = np.einsum("nbd,bd->nb", np.abs(coef), radius)
    return (mid + spread if upper else mid - spread) + const


def _affine(W, lo_form, up_form):
    """Forms of ``W·v`` on the last axis of ``v`` for ``v`` between lo_form
    and up_form; W (m, k), forms (n, B, d+1) over the flat entries of ``v``.
    When ``n`` is a multiple ``r·k`` (a Linear over a tensor with ``r`` rows,
    e.g. MatMul on a (1, r, k) input), W applies to each row. One matrix
    product per side and row over all boxes (BLAS)."""
    n, batch, cols = lo_form.shape
    m, k = W.shape
    lo = lo_form.reshape(n // k, k, batch * cols)
    up = up_form.reshape(n // k, k, batch * cols)
    # pos·lo + neg·up = W·mid - |W|·rad with mid, rad the forms' centre and
    # half-difference: two products instead of four
    mid = lo + up
    mid *= 0.5
    rad = up - lo
    rad *= 0.5
    mid = W @ mid
    rad = np.abs(W) @ rad
    shape = (n // k * m, batch, cols)
    return (mid - rad).reshape(shape), (mid + rad).reshape(shape)


def forward_bounds(graph, lower, upper, given=None):
    """Pre-activation intervals of every Relu/PRelu and the output's forms.

    ``lower``/``upper``: (B, d) boxes. ``given``: optional node index ->
    Interval (B, n) of sound bounds of that Relu/PRelu's input found another
    way (e.g. by CROWN); they are intersected with the forward ones, so the
    relaxations and forms usually get tighter (not always: DeepPoly's lower
    slope can flip, so callers keep the best of the bounds they have). Returns (intervals: node index ->
    Interval (B, n) of the node's input, (lo_form, up_form) of the output,
    each (m, B, d+1): ``lo_form[j, b]·[x; 1] <= y_j <= up_form[j, b]·[x; 1]``
    for x in box b) or None if the graph has an unsupported op.
    """
    if not supports(graph):
        return None
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    batch, d = lower.shape
    center, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
    eye = np.zeros((d, batch, d + 1))
    eye[np.arange(d), :, np.arange(d)] = 1.0
    forms = {0: (eye, eye)}
    intervals = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        lo, up = forms[node.inputs[0]]
        if isinstance(node, ops.Linear):
            lo, up = _affine(node.weight, lo, up)
            if node.bias is not None:
                bias = np.tile(node.bias, node.size // node.bias.size)[:, None]
                lo[..., -1] += bias
                up[..., -1] += bias
        elif isinstance(node, ops.Scale):
            scale = np.broadcast_to(node.scale, node.shape).reshape(-1)[:, None, None]
            shift = np.broadcast_to(node.shift, node.shape).reshape(-1)[:, None]
            lo, up = (np.where(scale >= 0, lo, up) * scale, np.where(scale >= 0, up, lo) * scale)
            lo[..., -1] += shift
            up[..., -1] += shift
        elif isinstance(node, ops.Add):
            lo2, up2 = forms[node.inputs[1]]
            lo, up = lo + lo2, up + up2
        elif isinstance(node, (ops.Relu, ops.PRelu)):
            l = _concretize(lo, center, radius)
            u = _concretize(up, center, radius, upper=True)
            if given is not None and i in given:
                l = np.maximum(l, given[i].lower.T)
                u = np.minimum(u, given[i].upper.T)
            l = np.minimum(l, u)
            intervals[i] = Interval(np.ascontiguousarray(l.T), np.ascontiguousarray(u.T))
            slope = 0.0 if isinstance(node, ops.Relu) else \
                np.broadcast_to(node.slope, node.shape).reshape(-1)[:, None]
            lo, up = _relu_forms(lo, up, l, u, slope)
        # Reshape: the flat forms are unchanged
        forms[i] = (lo, up)
    return intervals, forms[graph.output]


def _relu_forms(lo, up, l, u, slope):
    """Forms of max(z, slope·z) (slope <= 1) for z between lo and up, z in [l, u] (n, B)."""
    slope = np.broadcast_to(slope, l.shape)
    active = l >= 0
    inactive = u <= 0
    unstable = ~(active | inactive)
    width = np.where(unstable, u - l, 1.0)
    # upper chord through (l, slope·l) and (u, u): k·z + c, k in [slope, 1]
    k = np.where(unstable, (u - slope * l) / width, 1.0)
    c = np.where(unstable, (slope - 1.0) * u * l / width, 0.0)
    # lower line: z or slope·z, whichever loses less area (DeepPoly)
    a = np.where(u >= -l, 1.0, slope)
    low_slope = np.where(active, 1.0, np.where(inactive, slope, a))
    up_slope = np.where(active, 1.0, np.where(inactive, slope, k))
    # a non-negative slope keeps the direction of the input forms
    new_lo = lo * low_slope[..., None]
    new_up = up * up_slope[..., None]
    new_up[..., -1] += c
    return new_lo, new_up


def spec_lower(graph, lower, upper, C, d, given=None):
    """Lower bounds (B, R) of ``C·y - d`` (C (R, m), d (R,)) on boxes (B, n_in),
    the input coefficients (B, R, n_in) of the linear lower bound each comes
    from (``bound >= coef·x + const`` on the box), and the intervals of
    :func:`forward_bounds`; None for unsupported graphs."""
    result = forward_bounds(graph, lower, upper, given)
    if result is None:
        return None
    intervals, (lo, up) = result
    spec_lo, _ = _affine(np.asarray(C, dtype=np.float64), lo, up)
    center, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
    bound = _concretize(spec_lo, center, radius).T - d
    return bound, spec_lo[..., :-1].transpose(1, 0, 2), intervals


def output_lower(graph, lower, upper, C, d):
    """Lower bounds of ``C·y - d`` (C (R, m), d (R,)) from the output forms."""
    result = spec_lower(graph, lower, upper, C, d)
    if result is None:
        return None
    bound, _, intervals = result
    return bound, intervals
