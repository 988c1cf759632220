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
* element-wise ops (Relu, PRelu, Sigmoid, Tanh, Softplus, Gelu): the
  largest |slope| over the float interval ``[lower - e, upper + e]`` times
  ``e_in``, plus the op's own error: ``u |slope x|`` for PRelu's product,
  the kernel's ``APPROX_ULPS`` ulps of ``max(|y|, 1)`` for the approximated
  ones (Gelu: of ``|y| + |x|``, which also covers the Erf chain exported by
  PyTorch); MaxPool: the largest error in the window;
* Sign: 0, or 2 where the float value can have another sign than the real
  (its own error; being discontinuous, it carries nothing backward);
* Softmax: ``2 max(e_in)`` along its axis plus
  ``gamma_(2 APPROX_ULPS + 2 n + 4) |y| + u`` (exp of non-positive
  arguments, a sum of ``n`` terms, a division).

Every rule splits its bound into the input errors it carries and its own
rounding. :func:`row_gaps` uses the own roundings a second way, backward
from a row ``c`` with the signs of ``c``, the weights and the slope
intervals kept (a Fast-Lip-style interval Jacobian), and keeps the smaller
of the two bounds per row.

:func:`direct_lower` uses them a third way: it bounds a row ``c·y32 - d`` of
the float32 network itself by CROWN, with relaxations valid for the float
values and each own rounding paid at its signed backward coefficient
(``sum_k |A_k| own_k``); on deep networks that is orders of magnitude
tighter than either gap bound (:mod:`verifier.bounds.margin` uses it to
prove rows outright).

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
* No overflow: where a node's value (with its error), or an affine node's
  partial sums (bounded by ``|W| (m + e) + H``), may reach
  :data:`OVERFLOW_LIMIT`, float32 may give ``inf`` and the bound there is
  ``inf`` (no proof rests on it). Underflow (at most 2^-149 per operation) is
  left to the absolute floor of :mod:`verifier.bounds.margin`.
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
#: an interval holding d gelu / dx over the reals (exact form [-0.130, 1.129],
#: tanh form about the same)
GELU_SLOPES = (-0.14, 1.14)


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


#: Half the largest float32: values or partial sums that may reach it may overflow.
OVERFLOW_LIMIT = float(np.finfo(np.float32).max) / 2


def _overflowing(own, size):
    """``own`` with ``inf`` where the magnitudes ``size`` may overflow float32."""
    return np.where(size >= OVERFLOW_LIMIT, np.inf, own)


def _sum_terms(node) -> int:
    """Products per output entry of an affine node (its n-term sums)."""
    if isinstance(node, ops.Linear):
        return node.weight.shape[1]
    if isinstance(node, ops.Conv):
        return int(np.prod(node.weight.shape[1:]))
    if isinstance(node, ops.ConvTranspose):
        return (node.weight.shape[0] // node.groups) * int(np.prod(node.weight.shape[2:]))
    return 1  # Scale: one product


# Every rule returns (carried, own): the input errors carried through the op
# (its Lipschitz bound) and the op's own rounding; the node's error is their sum.


def _affine(ctx, i, node, e):
    prep, m = ctx.prep, ctx.magnitude(node.inputs[0])
    folded = ops.folding_of(node)
    k = _sum_terms(node) + 1 + AFFINE_EXTRA + folded.steps
    carried = affine.apply(prep, i, node, [e[0]], absolute=True)
    size = affine.apply(prep, i, node, [m + e[0]], absolute=True)
    offset = folded.offset
    if not isinstance(node, ops.Scale):  # bias-shaped: along the output channels
        offset = offset.reshape((-1,) + (1,) * (2 if isinstance(node, ops._Convolution) else 0))
    return carried, _overflowing(gamma(k) * (size + offset), size + offset)


def _add(ctx, i, node, e):
    a, b = (ctx.magnitude(j) for j in node.inputs)
    return e[0] + e[1], U * (a + e[0] + b + e[1])


def _gathered(ctx, node, x, fill):
    flat = np.concatenate([x.reshape(ctx.batch, -1), np.full((ctx.batch, 1), fill)], axis=1)
    return flat[:, node.index.ravel()].reshape((ctx.batch,) + tuple(node.shape))


def _gather(ctx, i, node, e):
    # index -1 reads the fill constant, which onnxruntime holds in float32
    own = _gathered(ctx, node, np.zeros_like(e[0]), U * abs(node.fill))
    return _gathered(ctx, node, e[0], 0.0), own


def _structural(ctx, i, node, e):
    return EVAL_RULES[type(node)](node, e), 0.0


def _widened(ctx, j, e):
    """The interval of node j's float value: [lower - e, upper + e]."""
    _, lower, upper = ctx.bounds(j)
    return lower - e, upper + e


# Element-wise ops: the interval of their derivative over the float interval
# of the input (which the segment between the real and the float value stays
# in), and their own rounding.


def _relu_slopes(ctx, i, node, e):
    low, high = _widened(ctx, node.inputs[0], e)
    return np.where(low > 0, 1.0, 0.0), np.where(high > 0, 1.0, 0.0)


def _prelu_slopes(ctx, i, node, e):
    low, high = _widened(ctx, node.inputs[0], e)
    k = node.slope
    upper = np.where(high > 0, np.where(low >= 0, 1.0, np.maximum(k, 1.0)), k)
    lower = np.where(high > 0, np.where(low >= 0, 1.0, np.minimum(k, 1.0)), k)
    return lower, upper


def _prelu_own(ctx, i, node, e):
    low, _ = _widened(ctx, node.inputs[0], e)
    m = ctx.magnitude(node.inputs[0])
    return np.where(low < 0, U * np.abs(node.slope) * (m + e), 0.0)


def _bell_slopes(derivative):
    """Slopes of sigmoid and tanh: the derivative is even and falls with |x|."""
    def slopes(ctx, i, node, e):
        low, high = _widened(ctx, node.inputs[0], e)
        closest = np.clip(0.0, low, high)
        return np.minimum(derivative(low), derivative(high)), derivative(closest)
    return slopes


def _sigmoid_derivative(x):
    s = sigmoid(x)
    return s * (1.0 - s)


def _tanh_derivative(x):
    return 1.0 - np.tanh(x) ** 2


def _softplus_slopes(ctx, i, node, e):
    low, high = _widened(ctx, node.inputs[0], e)
    return sigmoid(low), sigmoid(high)  # softplus' = sigmoid, increasing


def _gelu_slopes(ctx, i, node, e):
    return np.full_like(e, GELU_SLOPES[0]), np.full_like(e, GELU_SLOPES[1])


def _sign_slopes(ctx, i, node, e):
    return np.zeros_like(e), np.zeros_like(e)


def _sign_own(ctx, i, node, e):
    """A flip of sign (up to 2) where the float value can have another sign."""
    low, high = _widened(ctx, node.inputs[0], e)
    return np.where((e > 0) & (low <= 0.0) & (high >= 0.0), 2.0, 0.0)


def _kernel_own(ctx, i, node, e):
    """Approximated kernels (sigmoid, tanh, softplus): APPROX_ULPS ulps of max(|y|, 1)."""
    return APPROX_ULPS * U * np.maximum(ctx.magnitude(i), 1.0)


def _gelu_own(ctx, i, node, e):
    return APPROX_ULPS * U * (ctx.magnitude(i) + ctx.magnitude(node.inputs[0]) + e)


#: element-wise op -> (slopes(ctx, i, node, e_in) -> (lower, upper), own(...) -> error)
ELEMENTWISE = {
    ops.Relu: (_relu_slopes, None), ops.PRelu: (_prelu_slopes, _prelu_own),
    ops.Sigmoid: (_bell_slopes(_sigmoid_derivative), _kernel_own),
    ops.Tanh: (_bell_slopes(_tanh_derivative), _kernel_own),
    ops.Softplus: (_softplus_slopes, _kernel_own), ops.Gelu: (_gelu_slopes, _gelu_own),
    ops.Sign: (_sign_slopes, _sign_own),
}


def _elementwise(ctx, i, node, e):
    slopes, own = ELEMENTWISE[type(node)]
    lower, upper = slopes(ctx, i, node, e[0])
    carried = np.maximum(np.abs(lower), np.abs(upper)) * e[0]
    return carried, 0.0 if own is None else own(ctx, i, node, e[0])


def _max_pool(ctx, i, node, e):
    x, lead = F.as_nchw(e[0])
    y = F.max_pool2d(x, node.kernel, node.stride, node.padding, node.dilation)
    return np.maximum(y, 0.0).reshape(lead + y.shape[1:]), 0.0  # all-padding windows: -inf


def _softmax(ctx, i, node, e):
    axis = node.axis + 1
    n = node.shape[node.axis]
    own = gamma(2 * APPROX_ULPS + 2 * n + 4) * ctx.magnitude(i) + U
    return 2.0 * e[0].max(axis=axis, keepdims=True), own


def _input(ctx, i, node, e):
    raise AssertionError("the input's error is set by node_errors()")


#: core op -> rule(context, node index, node, [input errors (B, *shape)]) -> (carried, own)
RULES = {
    ops.Input: _input,
    ops.Linear: _affine, ops.Conv: _affine, ops.ConvTranspose: _affine, ops.Scale: _affine,
    ops.Add: _add, ops.Reshape: _structural, ops.Gather: _gather, ops.Concat: _structural,
    ops.MaxPool: _max_pool, ops.Softmax: _softmax,
}
RULES.update({op: _elementwise for op in ELEMENTWISE})

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


def _sweep(graph, node_bounds):
    """The context, every node's error and every node's own rounding, (B, *shape)."""
    batch = node_bounds[0].lower.shape[0]
    ctx = _Context(graph, node_bounds, batch)
    errors: list = [None] * len(graph.nodes)
    own: list = [None] * len(graph.nodes)
    errors[0] = own[0] = np.zeros((batch,) + tuple(graph.input_shape))
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(1, len(graph.nodes)):
            node = graph.nodes[i]
            rule = RULES.get(type(node))
            if rule is None:
                raise VerifierError(f"no float32 rounding rule for core op "
                                    f"{type(node).__name__} (node {node.name!r})")
            carried, mine = rule(ctx, i, node, [errors[j] for j in node.inputs])
            shape = (batch,) + tuple(node.shape)
            own[i] = _no_nan(np.broadcast_to(mine, shape))
            errors[i] = _no_nan(np.broadcast_to(carried, shape) + own[i])
            errors[i] = _overflowing(errors[i], ctx.magnitude(i) + errors[i])
    return ctx, errors, own


def _no_nan(value):
    return np.where(np.isnan(value), np.inf, value)  # inf * 0 from unbounded magnitudes


def node_errors(graph, node_bounds) -> list[np.ndarray]:
    """Per node, ``(B, size)`` bounds of ``|float32 value - real value|``.

    ``node_bounds``: node index -> :class:`verifier.bounds.result.Interval`
    ``(B, size)`` of every node's real value over the region (e.g.
    ``BoundsResult.node_bounds``), computed on the float32 hull of the box.
    Raises :class:`VerifierError` for a node without a rule.
    """
    _, errors, _ = _sweep(graph, node_bounds)
    return [e.reshape(len(e), -1) for e in errors]


def row_gaps(graph, node_bounds, C) -> np.ndarray:
    """``(B, R)`` bounds of ``|c·(float32 output - real output)|`` for the rows of
    ``C`` (``(B or 1, R, n_out)``): the smaller of ``|c|·e_out`` (the forward
    bound) and a backward bound that keeps the signs of ``c`` and the weights.

    The backward bound: the float32 network is the real one with each node's
    own rounding ``delta_k`` (``|delta_k| <= own_k``) added to its value, so
    ``c·(y32 - y) = sum_k g_k·delta_k`` with ``g_k`` the gradient of ``c·y``
    with respect to node k at some point of the segment from the real to the
    float values (mean value theorem, Clarke's form for piecewise-linear ops).
    Intervals of the ``g_k`` are propagated backward from ``c`` with each
    element-wise op's derivative interval over ``[lower - e, upper + e]``
    (the segment stays there); the gap is ``sum_k |g_k|max·own_k``. This is
    the interval-Jacobian propagation of Fast-Lip (Weng et al., "Towards Fast
    Computation of Certified Robustness for ReLU Networks", ICML 2018),
    applied to rounding perturbations. Graphs with MaxPool or Softmax use the
    forward bound only.
    """
    ctx, errors, own = _sweep(graph, node_bounds)
    C = np.asarray(C, dtype=np.float64)
    C = np.broadcast_to(C if C.ndim == 3 else C[None], (ctx.batch,) + C.shape[-2:])
    error = errors[graph.output].reshape(ctx.batch, -1)
    used = C != 0  # an unbounded error on an output a row ignores does not count
    with np.errstate(invalid="ignore"):  # inf * 0 where a row ignores an output
        forward = np.where(used, np.abs(C) * error[:, None, :], 0.0).sum(axis=2)
    if any(isinstance(node, (ops.MaxPool, ops.Softmax)) for node in graph.nodes):
        return forward
    with np.errstate(invalid="ignore", over="ignore"):
        backward = _no_nan(_backward(ctx, errors, own, C))
    return np.minimum(forward, backward)


def _backward(ctx, errors, own, C):
    prep, nodes, batch = ctx.prep, ctx.graph.nodes, ctx.batch
    rows = C.shape[1]
    pending = {ctx.graph.output: (np.array(C), np.zeros_like(C))}
    gap = np.zeros((batch, rows))
    for k in prep.cone(ctx.graph.output):
        if k == 0 or k not in pending:
            continue
        centre, radius = pending.pop(k)
        mine = own[k].reshape(batch, 1, -1)
        weight = np.abs(centre) + radius
        gap += np.where((mine > 0) & (weight > 0), weight * mine, 0.0).sum(axis=2)
        node = nodes[k]
        if type(node) in ELEMENTWISE:
            lower, upper = ELEMENTWISE[type(node)][0](ctx, k, node, errors[node.inputs[0]])
            lower = np.broadcast_to(lower, errors[k].shape).reshape(batch, 1, -1)
            upper = np.broadcast_to(upper, errors[k].shape).reshape(batch, 1, -1)
            ends = [(centre - radius) * lower, (centre - radius) * upper,
                    (centre + radius) * lower, (centre + radius) * upper]
            low, high = np.minimum.reduce(ends), np.maximum.reduce(ends)
            parts = [((low + high) / 2, (high - low) / 2)]
        elif isinstance(node, ops.Scale):
            parts = [(centre * prep.flat(k, "scale"), radius * np.abs(prep.flat(k, "scale")))]
        elif isinstance(node, (ops.Linear, ops.Conv, ops.ConvTranspose)):
            rule = affine.BACKWARD_RULES[type(node)]
            parts = [(rule(prep, k, node, centre)[0][0],
                      rule(prep, k, prep.abs_node(k), radius)[0][0])]
        else:  # Add, Reshape, Gather, Concat: 0/1 coefficients
            rule = affine.BACKWARD_RULES[type(node)]
            parts = list(zip(rule(prep, k, node, centre)[0], rule(prep, k, node, radius)[0]))
        for j, (c, r) in zip(node.inputs, parts):
            if j == 0:
                continue  # the input is exact: nothing to carry further
            if j in pending:
                c0, r0 = pending[j]
                c, r = c0 + c, r0 + r
            pending[j] = (c, r)
    return gap


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



#: relative inflation of the rounding cost of :func:`direct_lower` for the
#: float64 arithmetic computing it
DIRECT_SLACK = 2.0 ** -20


def paid(A, own) -> np.ndarray:
    """``(B, R)``: ``sum_n |A[b, r, n]|·own[b, n]``, the most that perturbations
    ``|delta| <= own`` (``(B, n)``) can move ``A·v``; ``inf`` only where a
    coefficient meets an infinite ``own`` (possible overflow)."""
    own = own.reshape(own.shape[0], -1)
    bad = ~np.isfinite(own)
    magnitude = np.abs(A)
    cost = (magnitude @ np.where(bad, 0.0, own)[:, :, None])[..., 0]
    if bad.any():
        hit = (magnitude @ bad[:, :, None].astype(np.float64))[..., 0] > 0
        cost = np.where(hit, np.inf, cost)
    return cost


def _rounding_cost(coefficients, own, batch):
    """``sum_k |A_k|·own_k`` over the coefficients of one backward pass."""
    cost = 0.0
    for k, A_k in coefficients.items():
        cost = cost + paid(A_k, own[k].reshape(batch, -1))
    return cost * (1.0 + DIRECT_SLACK)


class FloatRounding:
    """The own rounding of every node of a bound engine run over the float32
    network (``BoundOptions.float32``), computed from the run's bounds on the
    float values: node i's float value is ``op_i(float inputs) + delta_i``
    with ``|delta_i| <= own_i``. ``table``: the run's bounds (indexable by
    node); :meth:`own` is called once per node, in topological order, with
    ``table[i]`` holding the exact op's bounds on the float inputs."""

    def __init__(self, graph, table, batch):
        self.ctx = _Context(graph, table, batch)
        self.graph = graph

    def own(self, i) -> np.ndarray:
        """``(B, size)`` bound of node i's own rounding (``inf`` where it may
        overflow float32)."""
        ctx, node = self.ctx, self.graph.nodes[i]
        ctx._cache.pop(i, None)
        zeros = [np.zeros((ctx.batch,) + tuple(self.graph.nodes[j].shape))
                 for j in node.inputs]
        with np.errstate(invalid="ignore", over="ignore"):
            _, mine = RULES[type(node)](ctx, i, node, zeros)
            mine = _no_nan(np.broadcast_to(mine, (ctx.batch,) + tuple(node.shape)))
            mine = _overflowing(mine, ctx.magnitude(i) + mine)
        ctx._cache.pop(i, None)
        return mine.reshape(ctx.batch, -1)


#: alpha-CROWN iterations of the final pass of :func:`direct_lower` (0: CROWN
#: only), for rows its CROWN pass leaves unproved: rows that only alpha-CROWN
#: proves in real arithmetic (sigmoid networks) need optimised slopes here too.
DIRECT_ALPHA_ITERATIONS = 20


def _alpha_direct(run, target, A, bias, start, own):
    """The final pass of :func:`direct_lower` with alpha-optimised slopes: any
    slopes give a sound bound of the float network (the relaxations hold for
    the float values), and the rounding cost is paid at the coefficients of
    the pass that uses the best slopes."""
    from verifier.bounds.alpha import optimize

    _, best, _ = optimize(run, target, A, bias, start, False)
    if best is None:
        return np.full(start.shape, -np.inf)
    lines = {k: run.relax[k].with_slopes(values)[0] for k, values in best.items()}
    coefficients = {}
    found = run.backward(target, A, bias, lines=lines, coefficients=coefficients)
    return found - _rounding_cost(coefficients, own, len(found))


def _float_run(graph, node_bounds, errors):
    """A bound engine run whose bounds and relaxations hold for the *float32*
    values of every node, and every node's own rounding bound ``(B, *shape)``
    computed from those float bounds (see :func:`direct_lower`)."""
    from verifier.bounds.engine import IBP_RULES, Run
    from verifier.bounds.inputs import Box
    from verifier.bounds.prepare import SIGN_DRIVEN
    from verifier.bounds.result import BoundOptions, Interval

    nodes, batch = graph.nodes, node_bounds[0].lower.shape[0]
    floats: dict = {0: node_bounds[0]}
    ctx = _Context(graph, floats, batch)
    run = Run(graph, Box(node_bounds[0].lower, node_bounds[0].upper), "crown", {}, {},
              BoundOptions(alpha_iterations=DIRECT_ALPHA_ITERATIONS, early_stop=False))
    run.bounds[0] = node_bounds[0]
    own: list = [None] * len(nodes)
    own[0] = np.zeros((batch,) + tuple(graph.input_shape))
    prep = run.prep
    for i in range(1, len(nodes)):
        node = nodes[i]
        if prep.nonlinear[i]:
            run.relax[i] = run._relaxation(i)
        shape = (batch,) + tuple(node.shape)
        lows = [floats[j].lower.reshape((batch,) + nodes[j].shape) for j in node.inputs]
        highs = [floats[j].upper.reshape((batch,) + nodes[j].shape) for j in node.inputs]
        low, high = IBP_RULES[type(node)](prep, i, node, lows, highs)  # exact op, float inputs
        floats[i] = Interval(low.reshape(batch, -1), high.reshape(batch, -1))
        ctx._cache.pop(i, None)
        zeros = [np.zeros((batch,) + tuple(nodes[j].shape)) for j in node.inputs]
        _, mine = RULES[type(node)](ctx, i, node, zeros)
        own[i] = _no_nan(np.broadcast_to(mine, shape))
        mine = own[i].reshape(batch, -1)
        e = errors[i].reshape(batch, -1)
        low = np.maximum(floats[i].lower - mine, node_bounds[i].lower - e)
        high = np.minimum(floats[i].upper + mine, node_bounds[i].upper + e)
        if i in prep.feeds:  # CROWN on the float values, each rounding at its weight
            sign_only = all(isinstance(nodes[k], SIGN_DRIVEN) for k in prep.feeds[i])
            needed = (low < 0) & (high > 0) if sign_only else high > low
            rows = np.flatnonzero(needed.any(axis=0))
            if rows.size:
                def bound(A, _, i=i):
                    coefficients = {}
                    value = run.backward(i, A, np.zeros((1, A.shape[1])),
                                         coefficients=coefficients)
                    return value - _rounding_cost(coefficients, own, batch)

                total = sum(prep.sizes[j] for j in prep.cone(i))  # coefficients kept
                with np.errstate(invalid="ignore", over="ignore"):
                    crown_low, crown_high = run._entry_bounds(i, rows, total, bound)
                low, high = low.copy(), high.copy()
                low[:, rows] = np.maximum(low[:, rows], np.nan_to_num(crown_low, nan=-np.inf))
                high[:, rows] = np.minimum(high[:, rows], np.nan_to_num(crown_high, nan=np.inf))
        # crossing bounds: the region is empty (or rounding); keep both inside
        low, high = np.minimum(low, high), np.maximum(low, high)
        floats[i] = Interval(low, high)
        ctx._cache.pop(i, None)
        run.bounds[i] = floats[i]
    return run, own


def direct_lower(graph, node_bounds, C, d=None) -> np.ndarray:
    """``(B, R)`` lower bounds of ``c·y32 - d``, the rows evaluated on the
    float32 network itself, over the region (``-inf`` where none is found).

    The float32 network is the real one with each node's own rounding
    ``delta_k`` (``|delta_k| <= own_k``) added to its value:
    ``v32_k = op_k(v32 of its inputs) + delta_k``. A CROWN sweep over that
    perturbed network (:func:`_float_run`) bounds the float value of every
    node: IBP of the exact op on the inputs' float bounds widened by the
    node's own rounding (computed from those float magnitudes), intersected
    with ``[lower - e, upper + e]`` (the forward error bound), and, for the
    inputs of nonlinearities, a CROWN backward pass whose relaxations are
    built on the float bounds, minus ``sum_k |A_k|·own_k`` with ``A_k`` the
    pass's signed coefficient on node k. The final rows get one more such
    pass:

        c·y32 - d >= CROWN(c·y - d; float-valid relaxations) - sum_k |A_k|·own_k.

    Signed coefficients cancel where the interval Jacobian of
    :func:`row_gaps` cannot, which makes this far tighter on deep networks
    (the forward error grows by ``|W|`` per layer; this pays each layer's own
    rounding once). Stable inactive ReLUs carry nothing. Graphs with Softmax
    get ``-inf`` (no bound).
    """
    batch = node_bounds[0].lower.shape[0]
    C = np.asarray(C, dtype=np.float64)
    C = np.broadcast_to(C if C.ndim == 3 else C[None], (batch,) + C.shape[-2:])
    rows = C.shape[1]
    d = np.zeros((1, rows)) if d is None else np.asarray(d, dtype=np.float64)
    d = np.broadcast_to(d if d.ndim == 2 else d[None], (batch, rows))
    if any(isinstance(node, ops.Softmax) for node in graph.nodes):
        return np.full((batch, rows), -np.inf)
    from verifier.bounds.result import BoundOptions, Interval

    total = sum(prepare(graph).sizes)
    step = max(1, BoundOptions().chunk_elements // max(1, rows * total))
    value = np.empty((batch, rows))
    with np.errstate(invalid="ignore", over="ignore"):
        _, errors, _ = _sweep(graph, node_bounds)
        for start in range(0, batch, step):
            s = slice(start, min(batch, start + step))
            part = {i: Interval(node_bounds[i].lower[s], node_bounds[i].upper[s])
                    for i in range(len(graph.nodes))}
            run, own = _float_run(graph, part, [e[s] for e in errors])
            coefficients = {}
            found = run.backward(graph.output, C[s], -d[s], coefficients=coefficients)
            value[s] = found - _rounding_cost(coefficients, own, len(found))
            if DIRECT_ALPHA_ITERATIONS and (value[s] <= 0).any():
                value[s] = np.maximum(value[s], _alpha_direct(run, graph.output, C[s], -d[s],
                                                              found, own))
    return np.where(np.isnan(value), -np.inf, value)
