"""Convolution primitives tuned for the bound engines' large batches.

The same maps as :func:`verifier.ir.functional.conv2d` and
:func:`~verifier.ir.functional.conv_transpose2d` (without bias), arranged for
BLAS: the forward convolution as one matrix product per group over the
im2col windows; the transposed convolution as one matrix product per kernel
position in channels-last layout, scattered into the output. On the batches
of coefficient rows that CROWN and alpha-CROWN push through conv layers they
are about twice as fast as the evaluator's versions, and the tests check that
they agree with them to rounding.
"""
from __future__ import annotations

import numpy as np

from verifier.ir import functional as F


def conv2d(x, weight, stride, padding, dilation, groups):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C/groups, kh, kw)."""
    n = x.shape[0]
    o, cg, kh, kw = weight.shape
    win = F.windows(F.pad2d(x, padding), (kh, kw), stride, dilation)   # (n, c, ho, wo, kh, kw)
    ho, wo = win.shape[2:4]
    og = o // groups
    out = np.empty((n, groups, og, ho, wo))
    wg = weight.reshape(groups, og, cg * kh * kw)
    for g in range(groups):
        cols = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5)
        cols = cols.reshape(n * ho * wo, cg * kh * kw)
        out[:, g] = (cols @ wg[g].T).reshape(n, ho, wo, og).transpose(0, 3, 1, 2)
    return out.reshape(n, o, ho, wo)


def conv_transpose2d(y, weight, stride, padding, dilation, groups, output_hw):
    """The adjoint of :func:`conv2d` with the same weight: ``y`` (N, O, Ho, Wo)
    -> (N, C, H, W) with ``(H, W) = output_hw`` (ONNX ConvTranspose with
    weight (C, O/groups, kh, kw) is the same map with the roles renamed)."""
    n, o, ho, wo = y.shape
    _, cg, kh, kw = weight.shape
    og = o // groups
    sh, sw = stride
    dh, dw = dilation
    top, left = padding[0], padding[1]
    h, w = output_hw
    hp = max(top + h, dh * (kh - 1) + sh * (ho - 1) + 1)
    wp = max(left + w, dw * (kw - 1) + sw * (wo - 1) + 1)
    y_last = np.ascontiguousarray(y.reshape(n, groups, og, ho, wo).transpose(1, 0, 3, 4, 2))
    y_last = y_last.reshape(groups, n * ho * wo, og)
    full = np.zeros((groups, n, hp, wp, cg))
    wg = weight.reshape(groups, og, cg, kh, kw)
    for i in range(kh):
        for j in range(kw):
            part = np.matmul(y_last, wg[:, :, :, i, j]).reshape(groups, n, ho, wo, cg)
            full[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                 j * dw:j * dw + sw * (wo - 1) + 1:sw] += part
    out = full[:, :, top:top + h, left:left + w]
    return np.ascontiguousarray(out.transpose(1, 0, 4, 2, 3)).reshape(n, groups * cg, h, w)
