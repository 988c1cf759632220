"""A sound bound of the gap between the IR's real-valued network and the
float32 network onnxruntime runs, over a region.

The bound engines bound the real-valued function ``f`` of the IR. The network
a user deploys (and the VNN-COMP checker replays) is ``f32``: onnxruntime
evaluating the ONNX graph in float32 on a float32 input. An ``unsat`` is only
a statement about ``f32`` if ``|f32(x) - f(x)|`` is bounded on the region and
the decision accounts for it (:mod:`verifier.bounds.margin`).

:func:`node_errors` propagates, beside the interval bounds already computed
for the region, an absolute error bound ``e`` per node entry:
``|value_f32 - value_real| <= e`` at every float32 input of the region (the
box widened to float32, :func:`float32_hull`, so the input error is 0).
With ``m`` the magnitude of the real value (``max(|lower|, |upper|)`` from
the region's bounds, so that sub-boxes and sub-problems of branch and bound
get smaller gaps than the root) and ``m + e`` the magnitude of the float
value, the rules are (``u = 2^-24``, ``gamma_n = n u / (1 - n u)``, Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., Lemma 3.1 and
§3.1: a sum of ``n`` products computed in any order, with or without FMA):

* affine (Linear, Conv, ConvTranspose, Scale) with ``n``-term sums:
  ``e_out = |W| e_in + gamma_k (|W| (m_in + e_in) + H)`` with
  ``k = n + 1 (bias) + AFFINE_EXTRA + folded steps`` and ``H`` the node's
  :class:`verifier.ir.ops.Folded` offset (``|bias|`` for a node standing for
  one ONNX op; for a chain folded into one node, the constants' magnitude at
  every intermediate step, since onnxruntime rounds after each original op);
* Add: ``e_a + e_b + u (|a| + |b|)``; Reshape, Gather, Concat move errors
  (a constant fill value is rounded to float32: ``u |fill|``);
* Relu, PRelu, MaxPool: Lipschitz (1, ``max(1, |slope|)``, 1 in the max
  norm), plus ``u |slope x|`` for PRelu's product; 0 where the whole float
  interval is negative for Relu;
* Sigmoid, Tanh, Softplus, Gelu: the largest slope over the float interval
  ``[lower - e, upper + e]`` times ``e_in``, plus the kernel's own error,
  ``APPROX_ULPS`` ulps of ``max(|y|, 1)`` (Gelu: of ``|y| + |x|``, which also
  covers the Erf chain exported by PyTorch);
* Sign: 0, or 2 where the float value can have another sign than the real;
* Softmax: ``2 max(e_in)`` along its axis plus
  ``gamma_(2 APPROX_ULPS + 2 n + 4) |y| + u`` (exp of non-positive
  arguments, a sum of ``n`` terms, a division).

Assumptions (what the bound is about):

* onnxruntime's CPU kernels compute every output of Gemm, MatMul, Conv,
  ConvTranspose and pooling as a sum of products in some order, in float32
  (round to nearest) or with FMA; no reduced precision (TF32, bfloat16,
  fast-math GEMM) and no Winograd/FFT convolution. The CUDA provider may use
  TF32 and is not covered; replays run on the CPU provider.
* Inputs are float32 (the model's input element type is float32), weights are
  the model's float32 constants; constant sub-graphs folded by onnx's
  reference evaluator give the same float32 constants onnxruntime computes.
* onnxruntime may fuse ops (Conv+BatchNorm, MatMul+Add, Conv+Mul) and
  recompute fused constants in float32: each fold the IR itself did counts
  ``Folded.PER_SCALE`` steps for that; ``AFFINE_EXTRA`` more per affine node
  cover Gemm's alpha and beta, a bias added as a separate op, a division
  where the IR multiplies by the reciprocal, and onnxruntime's own fusions of
  ops the IR keeps apart.
* Element-wise kernels (MLAS's exp, tanh, logistic, erf) are within
  ``APPROX_ULPS`` ulps as above; ``tests/bounds/test_roundoff.py`` sweeps
  them through onnxruntime to check the allowance (measured worst: about 5
  ulps for Tanh).
* Underflow is ignored except through the absolute ``u`` terms of the
  bounded-output kernels; values are far from the float32 range limits.
"""
from __future__ import annotations

import numpy as np

from verifier.bounds import affine
from verifier.bounds.prepare import prepare
from verifier.errors import VerifierError
from verifier.ir import functional as F
from verifier.ir import ops
from verifier.ir.evaluate import EVAL_RULES, sigmoid

#: unit roundoff of float32 (round to nearest)
U = 2.0 ** -24
#: allowance for onnxruntime's approximated transcendental kernels, in ulps
APPROX_ULPS = 16
#: extra rounding steps granted to every affine node (see the module docstring)
AFFINE_EXTRA = 4
#: sup |d gelu / dx| over the reals (exact form ~1.129, tanh form ~1.13)
GELU_SLOPE = 1.14


def gamma(n) -> float:
    """``n u / (1 - n u)``: the relative error bound of an ``n``-term float32 sum."""
    nu = n * U
    if nu >= 1.0:
        return np.inf
    return nu / (1.0 - nu)


def float32_hull(lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """The smallest box of float32 values containing ``[lower, upper]``
    (lower rounded down, upper rounded up), as float64 arrays: every float32
    input a counterexample of the box can use lies in it."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    low32, up32 = lower.astype(np.float32), upper.astype(np.float32)
    low32 = np.where(low32.astype(np.float64) > lower,
                     np.nextafter(low32, np.float32(-np.inf)), low32)
    up32 = np.where(up32.astype(np.float64) < upper,
                    np.nextafter(up32, np.float32(np.inf)), up32)
    return low32.astype(np.float64), up32.astype(np.float64)


def _magnitude(interval, batch, shape):
    lower = interval.lower.reshape((batch,) + tuple(shape))
    upper = interval.upper.reshape((batch,) + tuple(shape))
    return np.maximum(np.abs(lower), np.abs(upper)), lower, upper


def _sum_terms(node) -> int:
    """Products per output entry of an affine node (its n-term sums)."""
    if isinstance(node, ops.Linear):
        return node.weight.shape[1]
    if isinstance(node, ops.Conv):
        return int(np.prod(node.weight.shape[1:]))
    if isinstance(node, ops.ConvTranspose):
        return (node.weight.shape[0] // node.groups) * int(np.prod(node.weight.shape[2:]))
    return 1  # Scale: one product


def _affine(ctx, i, node, e):
    prep, m = ctx.prep, ctx.magnitude(node.inputs[0])
    folded = ops.folding_of(node)
    k = _sum_terms(node) + 1 + AFFINE_EXTRA + folded.steps
    propagated = affine.apply(prep, i, node, [e[0]], absolute=True)
    size = affine.apply(prep, i, node, [m + e[0]], absolute=True)
    offset = folded.offset
    if not isinstance(node, ops.Scale):  # bias-shaped: along the output channels
        offset = offset.reshape((-1,) + (1,) * (2 if isinstance(node, ops._Convolution) else 0))
    return propagated + gamma(k) * (size + offset)


def _add(ctx, i, node, e):
    a, b = (ctx.magnitude(j) for j in node.inputs)
    return e[0] + e[1] + U * (a + e[0] + b + e[1])


def _gather(ctx, i, node, e):
    flat = e[0].reshape(ctx.batch, -1)
    # index -1 reads the fill constant, which onnxruntime holds in float32
    flat = np.concatenate([flat, np.full((ctx.batch, 1), U * abs(node.fill))], axis=1)
    return flat[:, node.index.ravel()].reshape((ctx.batch,) + tuple(node.shape))


def _structural(ctx, i, node, e):
    return EVAL_RULES[type(node)](node, e)


def _relu(ctx, i, node, e):
    _, _, upper = ctx.bounds(node.inputs[0])
    return np.where(upper + e[0] <= 0.0, 0.0, e[0])


def _prelu(ctx, i, node, e):
    m, lower, upper = ctx.bounds(node.inputs[0])
    slope = np.abs(node.slope)
    negative = lower - e[0] < 0.0
    rounding = np.where(negative, U * slope * (m + e[0]), 0.0)
    lipschitz = np.where(negative, np.maximum(slope, np.where(upper + e[0] > 0, 1.0, 0.0)), 1.0)
    return lipschitz * e[0] + rounding


def _closest_to_zero(ctx, j, e):
    _, lower, upper = ctx.bounds(j)
    return np.clip(0.0, lower - e, upper + e), lower, upper


def _sigmoid(ctx, i, node, e):
    t, _, _ = _closest_to_zero(ctx, node.inputs[0], e[0])
    s = sigmoid(t)
    return s * (1.0 - s) * e[0] + APPROX_ULPS * U


def _tanh(ctx, i, node, e):
    t, _, _ = _closest_to_zero(ctx, node.inputs[0], e[0])
    return (1.0 - np.tanh(t) ** 2) * e[0] + APPROX_ULPS * U


def _softplus(ctx, i, node, e):
    _, _, upper = ctx.bounds(node.inputs[0])
    slope = sigmoid(upper + e[0])  # softplus' = sigmoid, increasing
    return slope * e[0] + APPROX_ULPS * U * np.maximum(ctx.magnitude(i), 1.0)


def _gelu(ctx, i, node, e):
    m_in = ctx.magnitude(node.inputs[0])
    return GELU_SLOPE * e[0] + APPROX_ULPS * U * (ctx.magnitude(i) + m_in + e[0])


def _sign(ctx, i, node, e):
    _, lower, upper = ctx.bounds(node.inputs[0])
    flip = (e[0] > 0) & (lower - e[0] <= 0.0) & (upper + e[0] >= 0.0)
    return np.where(flip, 2.0, 0.0)


def _max_pool(ctx, i, node, e):
    x, lead = F.as_nchw(e[0])
    y = F.max_pool2d(x, node.kernel, node.stride, node.padding, node.dilation)
    return np.maximum(y, 0.0).reshape(lead + y.shape[1:])  # all-padding windows: -inf


def _softmax(ctx, i, node, e):
    axis = node.axis + 1
    n = node.shape[node.axis]
    own = gamma(2 * APPROX_ULPS + 2 * n + 4) * ctx.magnitude(i) + U
    return 2.0 * e[0].max(axis=axis, keepdims=True) + own


def _input(ctx, i, node, e):
    raise AssertionError("the input's error is set by node_errors()")


#: core op -> rule(context, node index, node, [input errors (B, *shape)]) -> error
RULES = {
    ops.Input: _input,
    ops.Linear: _affine, ops.Conv: _affine, ops.ConvTranspose: _affine, ops.Scale: _affine,
    ops.Add: _add, ops.Reshape: _structural, ops.Gather: _gather, ops.Concat: _structural,
    ops.Relu: _relu, ops.PRelu: _prelu, ops.Sigmoid: _sigmoid, ops.Tanh: _tanh,
    ops.Softplus: _softplus, ops.Gelu: _gelu, ops.Sign: _sign, ops.MaxPool: _max_pool,
    ops.Softmax: _softmax,
}

_missing = [op.__name__ for op in ops.CORE_OPS if op not in RULES]
if _missing:  # pragma: no cover - a new core op without its rounding rule
    raise ImportError(f"float32 rounding bound has no rule for core ops: {_missing}")


class _Context:
    def __init__(self, graph, node_bounds, batch):
        self.graph = graph
        self.prep = prepare(graph)
        self.node_bounds = node_bounds
        self.batch = batch
        self._cache = {}

    def bounds(self, j):
        """(magnitude, lower, upper) of node j's real value, shaped (B, *shape)."""
        found = self._cache.get(j)
        if found is None:
            found = _magnitude(self.node_bounds[j], self.batch, self.graph.nodes[j].shape)
            self._cache[j] = found
        return found

    def magnitude(self, j):
        return self.bounds(j)[0]


def node_errors(graph, node_bounds) -> list[np.ndarray]:
    """Per node, ``(B, size)`` bounds of ``|float32 value - real value|``.

    ``node_bounds``: node index -> :class:`verifier.bounds.result.Interval`
    ``(B, size)`` of every node's real value over the region (e.g.
    ``BoundsResult.node_bounds``), computed on the float32 hull of the box.
    Raises :class:`VerifierError` for a node without a rule.
    """
    batch = node_bounds[0].lower.shape[0]
    ctx = _Context(graph, node_bounds, batch)
    errors: list = [None] * len(graph.nodes)
    errors[0] = np.zeros((batch,) + tuple(graph.input_shape))
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(1, len(graph.nodes)):
            node = graph.nodes[i]
            rule = RULES.get(type(node))
            if rule is None:
                raise VerifierError(f"no float32 rounding rule for core op "
                                    f"{type(node).__name__} (node {node.name!r})")
            value = rule(ctx, i, node, [errors[j] for j in node.inputs])
            value = np.broadcast_to(value, (batch,) + tuple(node.shape))
            errors[i] = np.where(np.isnan(value), np.inf, value)  # inf * 0 from huge bounds
    return [e.reshape(batch, -1) for e in errors]


def point_bounds(graph, x) -> dict:
    """Node bounds of a batch of points ``x`` (B, n_in): every node's value as
    a zero-width interval (the real network evaluated in float64)."""
    from verifier.bounds.result import Interval
    from verifier.ir.evaluate import evaluate

    x = np.asarray(x, dtype=np.float64)
    values = evaluate(graph, x.reshape((len(x),) + tuple(graph.input_shape)), all_values=True)
    flat = [v.reshape(len(x), -1) for v in values]
    return {i: Interval(v, v) for i, v in enumerate(flat)}


def output_error(graph, node_bounds) -> np.ndarray:
    """``(B, n_out)`` bounds of ``|onnxruntime float32 output - real output|``."""
    return node_errors(graph, node_bounds)[graph.output]
