"""Local Lipschitz bounds of the margins over a ball around each input.

On a convex set ``S`` (an L2 ball or an L-inf box around ``x``), the margin
``m = f_y - f_j`` satisfies ``|m(a) - m(b)| <= sup_{z in S} ||grad m(z)||_* ||a - b||``
(mean value theorem along the segment, with Clarke derivatives at the kinks).
The gradient is ``c^T J_L D_{L-1} ... D_1 J_1``: affine Jacobians ``J`` and
diagonal activation derivatives ``D``. The bound engine
(:func:`verifier.bounds.compute_bounds`, CROWN by default) bounds every
pre-activation on ``S``; each activation derivative then lies in an interval
(:func:`verifier.lipschitz.slopes.slope_interval`: a stable ReLU gives
exactly 0 or 1, an unstable one [0, 1]). The gradient rows are propagated
backward as intervals in midpoint-radius form: through an affine node,
centre ``A^T c`` and radius ``|A|^T r``; through a derivative interval, the
exact product of the two intervals (Shi et al., NeurIPS 2022, bound the Jacobian by
propagation on its graph; this is its interval form). The last affine chain
acts on exact rows, so it is folded in for free.

At the input the bound is the dual norm of ``|c| + r``. Intervals widen with
depth, so every *cut* node ``v`` (one all paths go through) also gives a
bound: ``grad m(z) = J_v(z)^T g(z)`` with ``g(z)`` in the interval at ``v``,
so ``||grad m(z)||_* <= ||(|c| + r)||_* L(v)`` with ``L(v)`` the global
Lipschitz bound of node ``v`` (both norms as in
:func:`verifier.lipschitz.global_bound.row_bounds`). The least over the cuts
is returned, and never above the global bound of the margin.
"""
from __future__ import annotations

import numpy as np

from verifier.bounds import Box, L2Ball, compute_bounds
from verifier.errors import MismatchError
from verifier.ir import ops
from verifier.ir.graph import Graph
from verifier.lipschitz.errors import LipschitzError
from verifier.lipschitz.global_bound import (GlobalLipschitz, check_norm, check_rules,
                                             global_lipschitz, row_bounds)
from verifier.lipschitz.operators import CHAIN_OPS, linear_part, pull_back
from verifier.lipschitz.pooling import scatter_windows, window_coefficients
from verifier.lipschitz.slopes import SLACK, SLOPED, slope_interval

#: Float64 entries of one backward interval pass (images are chunked to fit).
CHUNK_ELEMENTS = 1 << 22


def _has_local_rule(node) -> bool:
    return isinstance(node, SLOPED + CHAIN_OPS + (ops.Add, ops.Concat, ops.MaxPool))


def input_set(x: np.ndarray, eps: float, norm: str):
    """The ball of radius ``eps`` around each row of ``x`` in ``norm``."""
    if norm == "l2":
        return L2Ball(x, np.full(len(x), eps))
    return Box(x - eps, x + eps)


def _interval_product(center, radius, low, high):
    """Centre and radius of the exact interval product ``[c - r, c + r] * [low, high]``."""
    a, b = center - radius, center + radius
    products = (a * low, a * high, b * low, b * high)
    smallest = np.minimum.reduce(products)
    largest = np.maximum.reduce(products)
    return 0.5 * (smallest + largest), 0.5 * (largest - smallest)


def _pool_backward(node, in_shape, center, radius, low, high):
    """Centre and radius on a MaxPool's input, window coefficients in [low, high]."""
    c, r = _interval_product(center[..., None, None], radius[..., None, None], low, high)
    return scatter_windows(node, in_shape, c), scatter_windows(node, in_shape, r)


def _backward(graph, rows, slopes, cut_bound):
    """The least ``cut_bound(k, centre, radius)`` over the cut nodes ``k`` of
    the backward sweep of the Jacobian rows ``rows`` (``(R, K)`` on the
    output): the nodes every path from the input to the output goes through
    (the input included), with the interval of the rows' gradient there.
    ``slopes``: node -> (low, high), ``(R, n)`` for an activation,
    ``(R, C, Ho, Wo, kh, kw)`` for a MaxPool."""
    pending = {graph.output: (rows, np.zeros_like(rows))}
    best = np.full(len(rows), np.inf)
    for k in range(graph.output, -1, -1):
        entry = pending.pop(k, None)
        if entry is None:
            continue
        if not pending:  # all of the gradient flows through node k
            best = np.minimum(best, cut_bound(k, *entry))
        if k == 0:
            break
        node = graph.nodes[k]
        center, radius = (a.reshape((len(rows),) + node.shape) for a in entry)
        in_shapes = [graph.nodes[j].shape for j in node.inputs]
        if isinstance(node, ops.MaxPool):
            grid = (len(rows),) + node.shape[-3:]
            parts = [_pool_backward(node, in_shapes[0], center.reshape(grid),
                                    radius.reshape(grid), *slopes[k])]
        elif k in slopes:
            low, high = (s.reshape(center.shape) for s in slopes[k])
            parts = [_interval_product(center, radius, low, high)]
        else:
            centers = pull_back(linear_part(node), center, in_shapes)
            radii = pull_back(linear_part(node, absolute=True), radius, in_shapes)
            parts = list(zip(centers, radii))
        for j, (c, r) in zip(node.inputs, parts):
            c, r = c.reshape(len(rows), -1), r.reshape(len(rows), -1)
            if j in pending:
                c, r = pending[j][0] + c, pending[j][1] + r
            pending[j] = (c, r)
    return np.where(np.isfinite(best), best, 0.0)  # no path to the input: constant


def batch_inputs(graph: Graph, x, labels, who: str):
    """``x`` as ``(B, input_size)`` float64 and ``labels`` as ``(B,)`` int64, or a
    MismatchError naming ``who``."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim == 0 or x.size != len(x) * graph.input_size or labels.shape != (len(x),):
        raise MismatchError(f"{who} needs x of shape (B, {graph.input_size}) and B labels, "
                            f"got {x.shape} and {labels.shape}")
    classes = max(2, graph.output_size)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise MismatchError(f"{who}: labels must be classes of the model (0..{classes - 1}), "
                            f"got {int(labels.min())}..{int(labels.max())}")
    return x.reshape(len(x), graph.input_size), labels


def local_lipschitz(graph: Graph, x, labels, eps: float, norm: str = "l2", *,
                    method: str = "crown", global_bound: GlobalLipschitz | None = None
                    ) -> np.ndarray:
    """Bounds ``(B, K)`` of the Lipschitz constant of ``f_y - f_j`` on the ball
    of radius ``eps`` (in ``norm``) around each ``x[b]``, ``y = labels[b]``.

    Entry ``[b, labels[b]]`` is 0. Every entry is at most the global bound.
    A model with one output gets ``(B, 1)``: the constant of ``f`` (and ``-f``).
    """
    check_norm(norm)
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise LipschitzError(f"the local radius must be finite and >= 0, got {eps}")
    check_rules(graph, _has_local_rule, "a local Lipschitz bound")
    x, labels = batch_inputs(graph, x, labels, "local_lipschitz")
    k = graph.output_size
    if global_bound is None or global_bound.norm != norm:
        global_bound = global_lipschitz(graph, norm)
    result = compute_bounds(graph, input_set(x, eps, norm), method=method,
                            C=np.zeros((1, k)), upper=False)
    widest = max(node.size for node in graph.nodes)
    step = max(1, CHUNK_ELEMENTS // (k * widest))
    bounds = np.empty((len(x), k))
    for start in range(0, len(x), step):
        part = slice(start, min(len(x), start + step))
        count = part.stop - part.start
        slopes = {}
        for node_index, interval in result.pre_activation.items():
            node = graph.nodes[node_index]
            lower, upper = interval.lower[part], interval.upper[part]
            if isinstance(node, ops.MaxPool):
                in_shape = graph.nodes[node.inputs[0]].shape
                low, high = window_coefficients(node, in_shape, lower, upper)
            else:
                low, high = slope_interval(node, lower, upper)
            slopes[node_index] = (np.repeat(low, k, axis=0), np.repeat(high, k, axis=0))
        if k == 1:  # a binary model: the rows +-e_0 have the same constant
            rows = np.ones((count, 1))
        else:
            rows = np.repeat(np.eye(k)[labels[part]], k, axis=0) - np.tile(np.eye(k), (count, 1))

        def cut_bound(node_index, center, radius):
            return row_bounds(norm, np.abs(center) + radius, global_bound.node_l2[node_index],
                              global_bound.node_linf[node_index], graph.input_size)

        bound = _backward(graph, rows, slopes, cut_bound) * (1.0 + SLACK)
        bounds[part] = bound.reshape(count, k)
    if k == 1:
        return np.minimum(bounds, global_bound.logit)
    bounds = np.minimum(bounds, global_bound.margin[labels])
    bounds[np.arange(len(x)), labels] = 0.0
    return bounds
