"""Relaxations of the non-element-wise nonlinearities: MaxPool and Softmax.

MaxPool (DeepPoly-style, Singh et al., "An Abstract Domain for Certifying
Neural Networks", POPL 2019): in each window let ``j`` be the entry with the
largest lower bound. Lower line ``y >= x_j`` (the max is at least any of its
entries). Upper line: ``y = x_j`` when ``j`` dominates the window
(``l_j >= u_i`` for every other ``i``: then the max *is* ``x_j``), else the
constant ``y <= max_i u_i``. Padding entries hold the constant
``POOL_PAD`` (the lowest float32, as in onnxruntime): they are the extra
entry ``n_in`` of the extended input ``[x; POOL_PAD]``, so a window wholly in
the padding gets the exact constant ``y = POOL_PAD``.

Softmax: constant bounds from interval arithmetic,
``softmax_i >= 1 / (1 + sum_{j != i} exp(u_j - l_i))`` and
``softmax_i <= 1 / (1 + sum_{j != i} exp(l_j - u_i))``, which are exact for
each entry on a box (it is increasing in ``x_i`` and decreasing in the others).
"""
from __future__ import annotations

import numpy as np

from verifier.ir import functional as F


def max_pool_ibp(prep, i, lower, upper):
    node = prep.nodes[i]

    def pool(x):
        x4, lead = F.as_nchw(x.reshape((x.shape[0],) + tuple(prep.nodes[node.inputs[0]].shape)))
        y = F.max_pool2d(x4, node.kernel, node.stride, node.padding, node.dilation)
        return y.reshape((x.shape[0],) + tuple(node.shape))

    return pool(lower), pool(upper)


def _window_values(values, table):
    """``values`` (B, n_in) gathered into windows (B, n_out, K); padding POOL_PAD."""
    return _with_pad(values, axis=1)[:, table]


def _with_pad(values, axis):
    """``values`` with one more entry, ``POOL_PAD``, at the end of ``axis``."""
    shape = list(values.shape)
    shape[axis] = 1
    return np.concatenate([values, np.full(shape, F.POOL_PAD)], axis=axis)


class MaxPoolRelaxation:
    """The relaxation of one MaxPool node for one run."""

    def __init__(self, prep, i, lower, upper):
        table = prep.pool_windows(i)
        self.n_in = lower.shape[1]
        low_w = _window_values(lower, table)
        up_w = _window_values(upper, table)
        best = np.argmax(low_w, axis=-1)
        n_out = table.shape[0]
        chosen = table[np.arange(n_out)[None, :], best]
        # (B, n_out) indices into [x; POOL_PAD]: a chosen padding entry is n_in
        self.index = np.where(chosen < 0, self.n_in, chosen)
        self.out_lower = np.take_along_axis(low_w, best[..., None], -1)[..., 0]
        self.out_upper = up_w.max(axis=-1)
        np.put_along_axis(up_w, best[..., None], -np.inf, axis=-1)
        self.exact = self.out_lower >= up_w.max(axis=-1)             # x_j dominates

    def backward(self, A):
        batch, n_out = self.index.shape
        A = np.broadcast_to(A, (batch,) + A.shape[1:])
        rows = A.shape[1]
        pos = np.maximum(A, 0.0)
        neg = np.minimum(A, 0.0)
        exact = self.exact[:, None, :]
        weight = pos + np.where(exact, neg, 0.0)
        bias = (np.where(exact, 0.0, neg) * self.out_upper[:, None, :]).sum(axis=-1)
        width = self.n_in + 1
        offset = (np.arange(batch * rows, dtype=np.int64) * width).reshape(batch, rows, 1)
        flat = offset + self.index[:, None, :]
        A_in = np.bincount(flat.ravel(), weights=weight.ravel(),
                           minlength=batch * rows * width).reshape(batch, rows, width)
        bias = bias + A_in[:, :, -1] * F.POOL_PAD
        return A_in[:, :, :-1], bias

    def forward(self, g, A):
        batch, n_out = self.index.shape
        rows = max(g.shape[1], A.shape[1])
        g = _with_pad(np.broadcast_to(g, (batch, rows, g.shape[2])), axis=2)
        index = np.broadcast_to(self.index[:, None, :], (batch, rows, n_out))
        chosen = np.take_along_axis(g, index, axis=2)
        keep = (A > 0) | self.exact[:, None, :]
        return np.where(keep, chosen, self.out_upper[:, None, :])


def softmax_ibp(prep, i, lower, upper):
    node = prep.nodes[i]
    axis = node.axis + 1
    low = np.moveaxis(lower, axis, -1)
    up = np.moveaxis(upper, axis, -1)
    k = low.shape[-1]
    if k == 1:
        ones = np.ones_like(lower)
        return ones, ones
    off_diagonal = ~np.eye(k, dtype=bool)

    from scipy.special import expit, logsumexp  # on first use (a slow import)

    def bound(numerator, others):
        # 1 / (1 + sum_{j != i} exp(others_j - numerator_i)), via a log-sum-exp
        D = others[..., None, :] - numerator[..., :, None]
        D = np.where(off_diagonal, D, -np.inf)
        return expit(-logsumexp(D, axis=-1))

    return (np.moveaxis(bound(low, up), -1, axis), np.moveaxis(bound(up, low), -1, axis))


class ConstantRelaxation:
    """Constant lines ``out_lower <= y <= out_upper`` (the input is dropped)."""

    def __init__(self, n_in, out_lower, out_upper):
        self.n_in = n_in
        self.out_lower = out_lower   # (B, n_out)
        self.out_upper = out_upper

    def backward(self, A):
        pos = np.maximum(A, 0.0)
        neg = np.minimum(A, 0.0)
        bias = (pos * self.out_lower[:, None, :] + neg * self.out_upper[:, None, :]).sum(-1)
        batch = max(A.shape[0], self.out_lower.shape[0])
        return np.zeros((batch, A.shape[1], self.n_in)), bias

    def forward(self, g, A):
        return np.where(A > 0, self.out_lower[:, None, :], self.out_upper[:, None, :])
