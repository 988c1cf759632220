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


def _concretize(form, lower, upper):
    """Lower bound of ``form·[x; 1]`` (form (B, n, d+1)) over boxes (B, d)."""
    coef, const = form[..., :-1], form[..., -1]
    low = (np.maximum(coef, 0.0) @ lower[:, :, None])[..., 0]
    high = (np.minimum(coef, 0.0) @ upper[:, :, None])[..., 0]
    return low + high + const


def _affine(W, lo_form, up_form):
    """Forms of ``W·v`` on the last axis of ``v`` for ``v`` between lo_form
    and up_form; W (m, k). The forms are (B, n, d+1) over the flat entries of
    ``v``; when ``n`` is a multiple ``r·k`` (a Linear over a tensor with ``r``
    rows, e.g. MatMul on a (1, r, k) input), W applies to each row."""
    batch, n, width = lo_form.shape
    m, k = W.shape
    pos, neg = np.maximum(W, 0.0), np.minimum(W, 0.0)
    lo = lo_form.reshape(batch, n // k, k, width)
    up = up_form.reshape(batch, n // k, k, width)
    # (m, k) @ (B, r, k, d+1) broadcasts over B and r (BLAS; einsum is ~15x slower here)
    new_lo = pos @ lo + neg @ up
    new_up = pos @ up + neg @ lo
    return new_lo.reshape(batch, -1, width), new_up.reshape(batch, -1, width)


def forward_bounds(graph, lower, upper):
    """Pre-activation intervals of every Relu/PRelu and the output's forms.

    ``lower``/``upper``: (B, d) boxes. Returns (intervals: node index ->
    Interval of the node's input, (lo_form, up_form) of the output) or None
    if the graph has an unsupported op.
    """
    if not supports(graph):
        return None
    batch, d = lower.shape
    eye = np.zeros((1, d, d + 1))
    eye[0, np.arange(d), np.arange(d)] = 1.0
    forms = {0: (np.broadcast_to(eye, (batch, d, d + 1)),) * 2}
    intervals = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        lo, up = forms[node.inputs[0]]
        if isinstance(node, ops.Linear):
            lo, up = _affine(node.weight, lo, up)
            if node.bias is not None:
                lo = lo.copy()
                up = up.copy()
                bias = np.tile(node.bias, node.size // node.bias.size)
                lo[..., -1] += bias
                up[..., -1] += bias
        elif isinstance(node, ops.Scale):
            scale = np.broadcast_to(node.scale, node.shape).reshape(-1)[None, :, None]
            shift = np.broadcast_to(node.shift, node.shape).reshape(-1)
            lo, up = (np.where(scale >= 0, lo, up) * scale, np.where(scale >= 0, up, lo) * scale)
            lo[..., -1] += shift
            up[..., -1] += shift
        elif isinstance(node, ops.Add):
            lo2, up2 = forms[node.inputs[1]]
            lo, up = lo + lo2, up + up2
        elif isinstance(node, (ops.Relu, ops.PRelu)):
            l = _concretize(lo, lower, upper)
            u = -_concretize(-up, lower, upper)
            l = np.minimum(l, u)
            intervals[i] = Interval(l, u)
            slope = 0.0 if isinstance(node, ops.Relu) else \
                np.broadcast_to(node.slope, node.shape).reshape(-1)[None, :]
            lo, up = _relu_forms(lo, up, l, u, slope)
        # Reshape: the flat forms are unchanged
        forms[i] = (lo, up)
    return intervals, forms[graph.output]


def _relu_forms(lo, up, l, u, slope):
    """Forms of max(z, slope·z) (slope <= 1) for z between lo and up, z in [l, u]."""
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


def output_lower(graph, lower, upper, C, d):
    """Lower bounds of ``C·y - d`` (C (R, m), d (R,)) from the output forms."""
    result = forward_bounds(graph, lower, upper)
    if result is None:
        return None
    intervals, (lo, up) = result
    spec_lo, _ = _affine(C, lo, up)
    return _concretize(spec_lo, lower, upper) - d, intervals
