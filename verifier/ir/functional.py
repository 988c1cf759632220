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
    """Cross-correlation as in ONNX Conv; weight (O, C/groups, kh, kw).

    im2col: the windows are gathered once into a (N*Ho*Wo, C/g*kh*kw) matrix
    per group and multiplied with the weight by BLAS.
    """
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    win = windows(pad2d(x, padding), (kh, kw), stride, dilation)  # (N, C, Ho, Wo, kh, kw)
    ho, wo = win.shape[2:4]
    og = o // groups
    out = np.empty((n, ho, wo, o), dtype=np.result_type(x, weight))
    for g in range(groups):
        cols = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
        w = weight[g * og:(g + 1) * og].reshape(og, -1)
        out[..., g * og:(g + 1) * og] = (cols @ w.T).reshape(n, ho, wo, og)
    out = out.transpose(0, 3, 1, 2)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out)


def conv_transpose2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0),
                     dilation=(1, 1), groups=1, output_hw=None) -> np.ndarray:
    """Transposed convolution as in ONNX ConvTranspose; weight (C, O/groups, kh, kw).

    It is the adjoint of :func:`conv2d` with the same weight, stride, padding,
    dilation and groups. ``output_hw`` fixes the output size (the crop after
    removing ``padding`` from the top/left); missing rows are zero. Channels-last
    layout, one BLAS product per kernel tap scattered into the output: the
    bound engines push large batches of coefficient rows through it.
    """
    n, c, h, w = x.shape
    _, og, kh, kw = weight.shape
    cg = c // groups
    sh, sw = stride
    dh, dw = dilation
    top, left, bottom, right = padding
    if output_hw is None:
        output_hw = ((h - 1) * sh + dh * (kh - 1) + 1 - top - bottom,
                     (w - 1) * sw + dw * (kw - 1) + 1 - left - right)
    out_h, out_w = output_hw
    # the full output must cover [top, top + out_h) and [left, left + out_w)
    full_h = max(top + out_h, dh * (kh - 1) + sh * (h - 1) + 1)
    full_w = max(left + out_w, dw * (kw - 1) + sw * (w - 1) + 1)
    rows = np.ascontiguousarray(x.reshape(n, groups, cg, h, w).transpose(1, 0, 3, 4, 2))
    rows = rows.reshape(groups, n * h * w, cg)
    full = np.zeros((groups, n, full_h, full_w, og), dtype=np.result_type(x, weight))
    wg = weight.reshape(groups, cg, og, kh, kw)
    for i in range(kh):
        for j in range(kw):
            tap = np.matmul(rows, wg[:, :, :, i, j]).reshape(groups, n, h, w, og)
            full[:, :, i * dh:i * dh + sh * (h - 1) + 1:sh,
                 j * dw:j * dw + sw * (w - 1) + 1:sw] += tap
    out = full[:, :, top:top + out_h, left:left + out_w]
    out = np.ascontiguousarray(out.transpose(1, 0, 4, 2, 3)).reshape(n, groups * og, out_h, out_w)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


#: The value of MaxPool padding: onnxruntime pads with the lowest float32, so a
#: window wholly in the padding (dilation, ceil_mode) yields -3.4028235e38,
#: not -inf (and never a NaN further on); for float32 data it is never larger
#: than a real entry, so other windows are unaffected.
POOL_PAD = float(np.finfo(np.float32).min)


def max_pool2d(x, kernel, stride, padding=(0, 0, 0, 0), dilation=(1, 1)) -> np.ndarray:
    win = windows(pad2d(x, padding, POOL_PAD), kernel, stride, dilation)
    return win.max(axis=(-2, -1))


def as_nchw(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """View (B, ..., C, H, W) as (B*..., C, H, W); also return the leading shape."""
    lead = x.shape[:-3]
    return x.reshape((-1,) + x.shape[-3:]), lead
