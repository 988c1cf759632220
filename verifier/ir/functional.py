"""Array primitives shared by the evaluator and the bound engines.

All functions take and return float arrays of layout (N, C, H, W).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pad2d(x: np.ndarray, padding, value: float = 0.0) -> np.ndarray:
    top, left, bottom, right = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                  constant_values=value)


def windows(x: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """Sliding windows of a padded (N, C, H, W) array: (N, C, Ho, Wo, kh, kw)."""
    kh, kw = kernel
    dh, dw = dilation
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::stride[0], ::stride[1], ::dh, ::dw]


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0),
           dilation=(1, 1), groups=1) -> np.ndarray:
    """Cross-correlation as in ONNX Conv; weight (O, C/groups, kh, kw)."""
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    win = windows(pad2d(x, padding), (kh, kw), stride, dilation)
    ho, wo = win.shape[2:4]
    win = win.reshape(n, groups, cg, ho, wo, kh, kw)
    w = weight.reshape(groups, o // groups, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w, optimize=True)
    out = out.reshape(n, o, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def conv_transpose2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0),
                     dilation=(1, 1), groups=1, output_hw=None) -> np.ndarray:
    """Transposed convolution as in ONNX ConvTranspose; weight (C, O/groups, kh, kw).

    It is the adjoint of :func:`conv2d` with the same weight, stride, padding,
    dilation and groups. ``output_hw`` fixes the output size (the crop after
    removing ``padding`` from the top/left); missing rows are zero.
    """
    n, c, h, w = x.shape
    _, og, kh, kw = weight.shape
    sh, sw = stride
    dh, dw = dilation
    full_h = (h - 1) * sh + dh * (kh - 1) + 1
    full_w = (w - 1) * sw + dw * (kw - 1) + 1
    top, left, bottom, right = padding
    if output_hw is None:
        output_hw = (full_h - top - bottom, full_w - left - right)
    out_h, out_w = output_hw
    # the full output must cover [top, top + out_h) and [left, left + out_w)
    full_h = max(full_h, top + out_h)
    full_w = max(full_w, left + out_w)
    full = np.zeros((n, groups, og, full_h, full_w), dtype=np.result_type(x, weight))
    xg = x.reshape(n, groups, c // groups, h, w)
    wg = weight.reshape(groups, c // groups, og, kh, kw)
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j])
            r0, c0 = i * dh, j * dw
            full[:, :, :, r0:r0 + sh * (h - 1) + 1:sh, c0:c0 + sw * (w - 1) + 1:sw] += contrib
    out = full[:, :, :, top:top + out_h, left:left + out_w].reshape(n, groups * og, out_h, out_w)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def max_pool2d(x, kernel, stride, padding=(0, 0, 0, 0), dilation=(1, 1)) -> np.ndarray:
    win = windows(pad2d(x, padding, -np.inf), kernel, stride, dilation)
    return win.max(axis=(-2, -1))


def as_nchw(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """View (B, ..., C, H, W) as (B*..., C, H, W); also return the leading shape."""
    lead = x.shape[:-3]
    return x.reshape((-1,) + x.shape[-3:]), lead
