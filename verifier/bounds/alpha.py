"""alpha-CROWN and beta-CROWN: optimise the relaxation by projected gradient ascent.

alpha-CROWN (Xu et al., "Fast and Complete: Enabling Complete Neural Network
Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR
2021) treats the free slopes of the relaxations (the lower slope of each
unstable ReLU, and here also both lines of smooth activations) as variables,
one per (batch element, row, neuron); every value in the allowed range gives
a sound bound, so the best iterate is a sound bound and is never worse than
CROWN's, which is the starting point. beta-CROWN (Wang et al., "Beta-CROWN",
NeurIPS 2021) adds, for every split ReLU, the term ``-split·beta·z`` with
``beta >= 0`` (non-positive on the sub-domain), which the backward pass
carries as extra coefficients on the pre-activation ``z``.

numpy has no automatic differentiation, so the gradient is written by hand:
for fixed slopes the backward pass is piecewise linear in the coefficient
arrays, and the derivative of the bound with respect to the coefficients on a
node is that node's value in the *linearised* network (every nonlinearity
replaced by the line the backward pass selected for it) evaluated at the input
point that minimises the bound (the box corner, or ``center - r·A/||A||`` for
an L2 ball). One forward sweep (:meth:`Run.adjoint`) gives them all. The bound
depends on a slope ``a`` of neuron ``i`` only through ``A_i·(a·z_i + b(a))``,
so its gradient is ``A_i·(g_i - x*_i)`` where ``g_i`` is the adjoint value of
the pre-activation and ``x*_i`` the touching point of the line (``b'(a) =
-x*``; 0 for ReLU); for beta it is ``-split·g_i``. The step is Adam's
(Kingma & Ba 2015) scaled by the width of the allowed slope range, with the
learning rate decayed geometrically, as in alpha-CROWN.

Warm starts (a branch and bound child starting from its parent's slopes):
a ReLU slope stays in its range, but a smooth activation's warm slope widens
its allowed range where it lies outside (any slope gives a sound line once
the intercept is computed on the child's own interval): clipping it to the
child's narrower range of ``f'`` loses the parent's bound, and on small
sigmoid MLPs sigmoid splitting then made no progress at all.
"""
from __future__ import annotations

import numpy as np

from verifier.bounds.activations import ElementwiseRelaxation, Leaky
from verifier.bounds.margin import refuted, run_margins

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


class _Variable:
    """One block of optimisation variables ``(B, R, n)`` with Adam state."""

    def __init__(self, node, side, value, low, high, mask, scale):
        self.node, self.side = node, side
        self.value = np.clip(value, low, high)
        self.low, self.high, self.mask, self.scale = low, high, mask, scale
        self.m = np.zeros_like(self.value)
        self.v = np.zeros_like(self.value)
        self.best = self.value.copy()

    def step(self, grad, lr, t):
        grad = np.where(self.mask, grad, 0.0)
        self.m = _BETA1 * self.m + (1 - _BETA1) * grad
        self.v = _BETA2 * self.v + (1 - _BETA2) * grad * grad
        m_hat = self.m / (1 - _BETA1 ** t)
        v_hat = self.v / (1 - _BETA2 ** t)
        self.value = np.clip(self.value + lr * self.scale * m_hat / (np.sqrt(v_hat) + _EPS),
                             self.low, self.high)


def _warm(table, node, side, shape):
    if not table or node not in table:
        return None
    value = table[node]
    if side is not None:
        value = value.get(side) if isinstance(value, dict) else None
    if value is None or np.shape(value) != shape:
        return None
    return np.array(value, dtype=np.float64)


def optimize(run, target, A, bias, start, upper, warm_alpha=None, warm_beta=None):
    """Optimised lower bounds ``(B, R)`` of ``A·v_target + bias``, never below ``start``.

    Returns the bounds, the best slopes (node -> side -> ``(B, R, n)``) and the
    best beta multipliers (node -> ``(B, R, n)``), or None where there are none.
    Stops early, with the best iterate so far, once ``run.options.deadline``
    has passed (before the first iterate: ``start`` and the starting slopes).
    """
    if run.past_deadline():
        return start, None, None
    options = run.options
    batch, rows = run.batch, A.shape[1]
    cone = set(run.prep.cone(target))
    slopes, betas = [], []
    for k in sorted(cone):
        relaxation = run.relax.get(k)
        if not isinstance(relaxation, ElementwiseRelaxation) or not relaxation.free:
            continue
        if not options.optimize_smooth and not isinstance(relaxation.kind, Leaky):
            continue
        for side, free in relaxation.free.items():
            shape = (batch, rows, free.mask.shape[-1])
            init = _warm(warm_alpha, k, side, shape)
            low, high = free.low, free.high
            if init is None:
                lines = relaxation.lines
                init = lines.lower_slope if side == "lower" else lines.upper_slope
                init = np.broadcast_to(init, shape).copy()
            elif not isinstance(relaxation.kind, Leaky):
                # a smooth line is sound with any slope: a warm start from a
                # wider interval (a parent's) is kept, not clipped to this one's
                low, high = np.minimum(low, init), np.maximum(high, init)
            slopes.append(_Variable(k, side, init, low, high, free.mask, high - low))
    for k, split in run.splits.items():
        if k not in cone:
            continue
        n = split.shape[1]
        shape = (batch, rows, n)
        init = _warm(warm_beta, k, None, shape)
        init = np.zeros(shape) if init is None else np.maximum(init, 0.0)
        variable = _Variable(k, "beta", init, 0.0, np.inf, (split != 0)[:, None, :], 1.0)
        variable.sign = -split[:, None, :].astype(np.float64)
        betas.append(variable)
    if not slopes and not betas:
        return start, None, None

    needed = {run.nodes[var.node].inputs[0] for var in slopes + betas}
    best = np.array(start, dtype=np.float64)
    stop = run_margins(run, target, A, bias) if options.early_stop and not upper else None
    lr_alpha, lr_beta = options.alpha_lr, options.beta_lr
    for t in range(options.alpha_iterations + 1):
        if run.past_deadline():
            break  # every iterate so far is sound; ``best`` holds the best one
        per_node: dict[int, dict] = {}
        for var in slopes:
            per_node.setdefault(var.node, {})[var.side] = var.value
        lines, touch = {}, {}
        for k, values in per_node.items():
            lines[k], touch[k] = run.relax[k].with_slopes(values)
        beta_terms = {var.node: np.where(var.mask, var.sign * var.value, 0.0) for var in betas}
        record = {}
        value = run.backward(target, A, bias, lines=lines, betas=beta_terms, record=record)
        improved = value > best
        best = np.where(improved, value, best)
        for var in slopes + betas:
            var.best = np.where(improved[:, :, None], var.value, var.best)
        if t == options.alpha_iterations or run.past_deadline():
            break
        if stop is not None and np.all(refuted(best, stop)):
            break
        adjoint = run.adjoint(target, record, lines, needed)
        for var in slopes:
            A_k = record[var.node]
            g_in = adjoint[run.nodes[var.node].inputs[0]]
            part = np.maximum(A_k, 0.0) if var.side == "lower" else np.minimum(A_k, 0.0)
            var.step(part * (g_in - touch[var.node][var.side]), lr_alpha, t + 1)
        for var in betas:
            g_in = adjoint[run.nodes[var.node].inputs[0]]
            var.step(var.sign * g_in, lr_beta, t + 1)
        lr_alpha *= options.lr_decay
        lr_beta *= options.lr_decay

    best_alpha = {}
    for var in slopes:
        best_alpha.setdefault(var.node, {})[var.side] = var.best
    best_beta = {var.node: var.best for var in betas}
    return best, best_alpha or None, best_beta or None
