"""Certified upper bounds of operator norms.

Every function returns a number that is >= the true norm (up to the
relative :data:`SLACK` added for floating-point rounding), never an
estimate from below: power iteration alone only gives lower estimates.

* ``linf``: the induced inf->inf norm, the largest row 1-norm (exact for a
  matrix; for a chain too large to materialise, the largest entry of
  ``|A_k| ... |A_1| 1``, which is >= every row 1-norm of ``A``).
* ``l2``: the spectral norm, from the smallest of:
  - an exact SVD of the materialised matrix (small operators), or Gram
    iteration (Delattre, Barthelemy, Araujo, Allauzen, ICML 2023:
    ``||W||_2 <= ||G_t||_F^(1/2^t)`` with ``G_0 = W``,
    ``G_{t+1} = G_t^T G_t``) for large dense matrices;
  - the Schur test ``||A||_2 <= sqrt(||A||_1 ||A||_inf)``;
  - per node, the product of the nodes' norms, a convolution bounded by the
    circulant operator that contains it (its zero-padded input embedded in
    a torus: the norm of a circular convolution is the largest singular value
    of the kernel's Fourier transform over the frequencies; cropping and
    stride sub-sampling only lower the norm).
"""
from __future__ import annotations

import numpy as np

from verifier.ir import ops
from verifier.lipschitz.operators import Chain

#: Relative slack on every norm computed in floating point: the worst-case
#: relative rounding error of a float64 sum or dot product of n terms is about
#: n * 1.1e-16 (Higham, gamma_n), below 1e-10 for n up to 1e5 terms, and the
#: singular values of LAPACK's SVD have errors of the same order.
SLACK = 1e-10
#: Largest operator (entries) materialised for an exact norm.
DENSE_LIMIT = 1 << 22
#: Largest smaller side of a matrix given to an SVD (else Gram iteration).
SVD_LIMIT = 2048
#: Gram iteration steps.
GRAM_STEPS = 10


def _up(value: float) -> float:
    return float(value) * (1.0 + SLACK)


def spectral_norm(matrix: np.ndarray) -> float:
    """Certified upper bound of the largest singular value of a dense matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size == 0:
        return 0.0
    if min(matrix.shape) <= SVD_LIMIT:
        return _up(np.linalg.norm(matrix, 2))
    return gram_iteration(matrix)


def gram_iteration(matrix: np.ndarray, steps: int = GRAM_STEPS) -> float:
    """``min_t ||G_t||_F^(1/2^t)`` (Delattre et al. 2023), rescaled to avoid overflow."""
    g = matrix if matrix.shape[0] >= matrix.shape[1] else matrix.T
    frobenius = np.linalg.norm(g)
    if frobenius == 0:
        return 0.0
    g = g / frobenius
    log_scale = np.log(frobenius)
    best = log_scale
    for t in range(1, steps + 1):
        g = g.T @ g
        size = np.linalg.norm(g)
        if size == 0:
            return 0.0
        g = g / size
        log_scale = 2.0 * log_scale + np.log(size)
        best = min(best, log_scale / 2.0 ** t)
    return _up(np.exp(best))


def _dilated(weight, dilation):
    o, c, kh, kw = weight.shape
    dh, dw = dilation
    kernel = np.zeros((o, c, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    kernel[:, :, ::dh, ::dw] = weight
    return kernel


def circulant_bound(weight, dilation, groups, size, chunk: int = 4096) -> float:
    """Spectral norm of the circular convolution with ``weight`` (O, C/g, kh, kw)
    on a torus of at least ``size`` (a bound of every zero-padded, strided or
    cropped version of it on inputs that fit in ``size``)."""
    kernel = _dilated(np.asarray(weight, dtype=np.float64), dilation)
    torus = (max(size[0], kernel.shape[2]), max(size[1], kernel.shape[3]))
    spectrum = np.fft.rfft2(kernel, s=torus)  # conjugate frequencies: same norms
    out, per_group = kernel.shape[0] // groups, kernel.shape[1]
    best = 0.0
    for g in range(groups):
        block = spectrum[g * out:(g + 1) * out].reshape(out, per_group, -1).transpose(2, 0, 1)
        for start in range(0, block.shape[0], chunk):
            values = np.linalg.svd(block[start:start + chunk], compute_uv=False)
            best = max(best, float(values.max(initial=0.0)))
    return _up(best)


def _node_l2(node: ops.Node, in_shape) -> float:
    """Spectral-norm bound of one node's linear part on inputs of ``in_shape``."""
    if isinstance(node, ops.Linear):
        return spectral_norm(node.weight)
    if isinstance(node, ops.Scale):
        return float(np.max(np.abs(node.scale), initial=0.0))
    if isinstance(node, ops.Reshape):
        return 1.0
    if isinstance(node, ops.Gather):
        index = node.index[node.index >= 0]
        return float(np.sqrt(np.bincount(index).max())) if index.size else 0.0
    if isinstance(node, ops.Conv):
        top, left, bottom, right = node.padding
        size = (in_shape[-2] + top + bottom, in_shape[-1] + left + right)
        return circulant_bound(node.weight, node.dilation, node.groups, size)
    if isinstance(node, ops.ConvTranspose):
        # the adjoint of a (strided) correlation on the uncropped output
        kh, kw = node.weight.shape[2:]
        size = ((in_shape[-2] - 1) * node.stride[0] + node.dilation[0] * (kh - 1) + 1,
                (in_shape[-1] - 1) * node.stride[1] + node.dilation[1] * (kw - 1) + 1)
        return circulant_bound(node.weight, node.dilation, node.groups, size)
    raise TypeError(f"no norm rule for {type(node).__name__}")  # pragma: no cover


def _small(chain: Chain) -> bool:
    return chain.in_size * chain.out_size <= DENSE_LIMIT


def linf_norm(chain: Chain) -> float:
    """Certified bound of ``max_i sum_j |A_ij|`` (exact up to SLACK when small)."""
    if _small(chain):
        return _up(np.abs(chain.dense()).sum(axis=1).max(initial=0.0))
    return _up(chain.absolute().matvec(np.ones((1, chain.in_size))).max(initial=0.0))


def l1_norm(chain: Chain) -> float:
    """Certified bound of ``max_j sum_i |A_ij|`` (the 1->1 norm)."""
    return _up(chain.absolute().rmatvec(np.ones((1, chain.out_size))).max(initial=0.0))


def l2_norm(chain: Chain) -> float:
    """Certified bound of the spectral norm of the chain's linear part."""
    if _small(chain):
        return spectral_norm(chain.dense())
    schur = np.sqrt(l1_norm(chain) * linf_norm(chain))
    product, shape = 1.0, chain.in_shape
    for node in chain.nodes:
        product *= _node_l2(node, shape)
        shape = node.shape
    return float(min(schur, product))


def dual_norms(rows: np.ndarray, norm: str) -> np.ndarray:
    """Per row: the norm dual to ``norm`` (l2: 2-norm; linf: 1-norm), rounded up."""
    rows = np.asarray(rows, dtype=np.float64)
    if norm == "l2":
        value = np.sqrt(np.einsum("...i,...i->...", rows, rows))
    else:
        value = np.abs(rows).sum(axis=-1)
    return value * (1.0 + SLACK)


def max_pool_overlap(node: ops.MaxPool, in_shape) -> int:
    """The largest number of pooling windows that contain one input cell.

    ``|max_W a - max_W b| <= max_W |a - b|``, so the squared L2 change of the
    output is at most the sum over windows of the squared window changes,
    i.e. at most this count times the squared L2 change of the input.
    """
    top, left, bottom, right = node.padding
    height, width = in_shape[-2] + top + bottom, in_shape[-1] + left + right
    out_h, out_w = node.shape[-2:]
    counts = np.zeros((height, width), dtype=np.int64)
    (kh, kw), (sh, sw), (dh, dw) = node.kernel, node.stride, node.dilation
    for i in range(kh):
        for j in range(kw):
            counts[i * dh:i * dh + sh * (out_h - 1) + 1:sh,
                   j * dw:j * dw + sw * (out_w - 1) + 1:sw] += 1
    inner = counts[top:top + in_shape[-2], left:left + in_shape[-1]]
    return int(inner.max(initial=0))
