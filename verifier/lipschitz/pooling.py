"""Max pooling in the local Jacobian bound.

Where the max of a window is attained, its gradient is the unit vector of
the maximal cell (a convex combination of them at ties, the Clarke
derivative). A cell can be maximal somewhere in the input set only if its
upper bound reaches the largest lower bound of its window (a *candidate*).
So each window cell's coefficient lies in [0, 1] if it is a candidate, is
exactly 1 if it is the window's only candidate, and 0 otherwise.
"""
from __future__ import annotations

import numpy as np

from verifier.ir import functional as F
from verifier.ir import ops


def window_coefficients(node: ops.MaxPool, in_shape, lower, upper):
    """``(low, high)``, ``(B, C, Ho, Wo, kh, kw)``: each window cell's
    derivative range, from the bounds ``(B, n)`` of the pooled input."""
    grid = (len(lower),) + tuple(in_shape[-3:])

    def windows(values):
        padded = F.pad2d(values.reshape(grid), node.padding, -np.inf)
        return F.windows(padded, node.kernel, node.stride, node.dilation)

    low_cells, high_cells = windows(lower), windows(upper)
    best_lower = low_cells.max(axis=(-2, -1), keepdims=True)
    candidate = high_cells >= best_lower
    single = candidate.sum(axis=(-2, -1), keepdims=True) == 1
    return np.where(candidate & single, 1.0, 0.0), np.where(candidate, 1.0, 0.0)


def scatter_windows(node: ops.MaxPool, in_shape, values):
    """Sum window-cell values ``(R, C, Ho, Wo, kh, kw)`` back onto the pooled
    input ``(R, C, H, W)`` (the transpose of taking the windows)."""
    top, left, bottom, right = node.padding
    rows, channels, out_h, out_w = values.shape[:4]
    height, width = in_shape[-2] + top + bottom, in_shape[-1] + left + right
    grid = np.zeros((rows, channels, height, width))
    (kh, kw), (sh, sw), (dh, dw) = node.kernel, node.stride, node.dilation
    for i in range(kh):
        for j in range(kw):
            grid[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                 j * dw:j * dw + sw * (out_w - 1) + 1:sw] += values[..., i, j]
    return grid[:, :, top:top + in_shape[-2], left:left + in_shape[-1]]
