"""Intermediate bounds of small ReLU MLPs refined by linear programming (HiGHS).

For a chain ``Input -> Reshape* -> (Linear -> Relu)* -> Linear``, the
pre-activation ``z_j`` of a neuron of hidden layer ``L`` is bounded by the LP
over the input box and the triangle relaxation of every earlier ReLU layer,
with the (already refined) bounds of those layers (the "LP-all"/"bab-refine"
idea of Salman et al. 2019 and alpha,beta-CROWN, here with scipy's HiGHS).

Soundness does not rest on the LP solver. The LP is written with the ``z`` of
earlier layers substituted, as ``min g.v`` s.t. ``A v <= c``, ``lb <= v <= ub``;
for any multipliers ``lam >= 0`` (weak duality),

    g.v >= g.v + lam.(A v - c) >= min_{lb <= v <= ub} (g + A^T lam).v - lam.c,

so HiGHS's marginals, clipped to ``lam >= 0``, give a valid bound whatever
their accuracy; it is evaluated in float64 and widened by a bound on the
summation's rounding error (:func:`_dual_bound`). Only neurons still unstable
are refined, best split score first, layer by layer, until a deadline.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from verifier.bounds.result import Interval
from verifier.ir import ops


def mlp_layers(graph):
    """``(linears, relus)`` node indices if ``graph`` is a plain ReLU MLP chain
    (Input, Reshapes, alternating Linear and Relu, a Linear output), else None."""
    nodes = graph.nodes
    if not nodes or not isinstance(nodes[0], ops.Input):
        return None
    linears, relus = [], []
    for i, node in enumerate(nodes[1:], 1):
        if tuple(node.inputs) != (i - 1,):
            return None
        if isinstance(node, ops.Reshape) and not linears:
            continue
        if isinstance(node, ops.Linear) and len(linears) == len(relus):
            if nodes[i - 1].size != node.weight.shape[1]:
                return None  # Linear on the last axis of a larger tensor
            linears.append(i)
        elif isinstance(node, ops.Relu) and len(linears) == len(relus) + 1:
            relus.append(i)
        else:
            return None
    if len(linears) != len(relus) + 1 or graph.output != linears[-1] or not relus:
        return None
    return linears, relus


def linear_weights(node):
    W = np.asarray(node.weight, np.float64)
    b = np.zeros(W.shape[0]) if node.bias is None else np.asarray(node.bias, np.float64)
    return W, b


def relaxation(graph, linears, relus, layer, lower0, upper0, bounds, binary=0):
    """LP data of hidden layer ``layer``'s inputs: variables x, a_1..a_{layer}
    (post-activations of the ReLU layers before it) with their box, and the
    triangle relaxation rows ``A v <= c``. With ``binary`` > 0, the
    ``binary`` widest unstable neurons of each earlier layer are also encoded
    exactly (big-M with a 0/1 variable ``d``: ``a <= z - l (1 - d)``,
    ``a <= u d``), their ``d`` appended after the other variables. Returns
    (A, c, lb, ub, offset of the last block, integrality)."""
    sizes = [lower0.size] + [graph.nodes[r].size for r in relus[:layer]]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    lb, ub = [lower0], [upper0]
    blocks, rhs, exact = [], [], []
    n_vars = int(offsets[-1])
    for k in range(layer):
        W, b = linear_weights(graph.nodes[linears[k]])
        lo, hi = bounds[relus[k]]
        lb.append(np.maximum(lo, 0.0))
        ub.append(np.maximum(hi, 0.0))
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        active = np.flatnonzero(lo >= 0)
        prev, here = slice(offsets[k], offsets[k + 1]), offsets[k + 1]

        def rows(index, a_coef, w_coef, const):
            if not len(index):
                return
            block = sp.lil_matrix((len(index), n_vars))
            block[:, prev] = w_coef[:, None] * W[index]
            block[np.arange(len(index)), here + index] = a_coef
            blocks.append(block.tocsr())
            rhs.append(const)

        # a >= z  <=>  -a + W a_prev <= -b  (unstable and active neurons)
        both = np.concatenate([unstable, active])
        rows(both, -1.0, np.ones(len(both)), -b[both])
        # active: a <= z  <=>  a - W a_prev <= b
        rows(active, 1.0, -np.ones(len(active)), b[active])
        # unstable: a <= s (z - l)  <=>  a - s W a_prev <= s (b - l)
        s = hi[unstable] / (hi[unstable] - lo[unstable])
        rows(unstable, 1.0, -s, s * (b[unstable] - lo[unstable]))
        if binary:
            pick = unstable[np.argsort(lo[unstable] * hi[unstable])[:binary]]
            exact.append((prev, here, W, b, lo, hi, pick))
    A = sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, n_vars))
    c = np.concatenate(rhs) if rhs else np.zeros(0)
    lb, ub = np.concatenate(lb), np.concatenate(ub)
    integrality = np.zeros(n_vars)
    if exact:
        count = sum(len(e[-1]) for e in exact)
        extra, extra_c, start = [], [], n_vars
        for prev, here, W, b, lo, hi, pick in exact:
            m = len(pick)
            d_cols = start + np.arange(m)
            # a - W a_prev - l d <= b - l
            block = sp.lil_matrix((m, n_vars + count))
            block[:, prev] = -W[pick]
            block[np.arange(m), here + pick] = 1.0
            block[np.arange(m), d_cols] = -lo[pick]
            extra.append(block.tocsr())
            extra_c.append(b[pick] - lo[pick])
            # a - u d <= 0
            block = sp.lil_matrix((m, n_vars + count))
            block[np.arange(m), here + pick] = 1.0
            block[np.arange(m), d_cols] = -hi[pick]
            extra.append(block.tocsr())
            extra_c.append(np.zeros(m))
            start += m
        A = sp.vstack([sp.hstack([A, sp.csr_matrix((A.shape[0], count))])] + extra).tocsr()
        c = np.concatenate([c] + extra_c)
        lb = np.concatenate([lb, np.zeros(count)])
        ub = np.concatenate([ub, np.ones(count)])
        integrality = np.concatenate([integrality, np.ones(count)])
    return A, c, lb, ub, int(offsets[layer]), integrality


def _dual_bound(g, A, c, lb, ub, lam):
    """A valid lower bound of ``min g.v`` over ``A v <= c, lb <= v <= ub`` from
    any ``lam`` (clipped to >= 0), minus a bound on float64 summation error."""
    lam = np.maximum(np.nan_to_num(lam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    r = g + A.T @ lam
    terms = np.concatenate([np.minimum(r * lb, r * ub), -lam * c])
    total = float(terms.sum())
    slack = 4.0 * np.finfo(np.float64).eps * (len(terms) + A.nnz + 2) \
        * float(np.abs(terms).sum() + (np.abs(A.T) @ np.abs(lam) * np.maximum(
            np.abs(lb), np.abs(ub))).sum())
    return total - slack


def _solve(g, A, c, lb, ub):
    """Lower bound of ``min g.v`` (valid whatever HiGHS returns), or None."""
    try:
        res = linprog(g, A_ub=A, b_ub=c, bounds=np.column_stack([lb, ub]), method="highs")
    except ValueError:
        return None
    if res.status != 0 or res.ineqlin is None:
        return None
    return _dual_bound(g, A, c, lb, ub, -res.ineqlin.marginals)


#: how far a MILP bound of HiGHS is widened (see :func:`_solve_milp`)
MILP_TOLERANCE = 1e-5


def _solve_milp(g, A, c, lb, ub, integrality, time_limit):
    """Lower bound of ``min g.v`` with the integrality constraints, or None.

    HiGHS's MILP dual bound has no certificate we can check: it is widened by
    ``MILP_TOLERANCE * (1 + sum |g_i| max(|lb_i|, |ub_i|))``, a multiple of
    what HiGHS's feasibility (1e-7) and integrality (1e-6) tolerances can move
    the objective of this problem; it is never looser than the LP's sound bound.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    lp = _solve(g, A, c, lb, ub)
    try:
        res = milp(g, constraints=LinearConstraint(A, -np.inf, c), bounds=Bounds(lb, ub),
                   integrality=integrality,
                   options={"time_limit": max(time_limit, 0.01), "disp": False})
    except ValueError:
        return lp
    bound = getattr(res, "mip_dual_bound", None)
    if bound is None or not np.isfinite(bound):
        return lp
    scale = 1.0 + float(np.abs(g) @ np.maximum(np.abs(lb), np.abs(ub)))
    bound = float(bound) - MILP_TOLERANCE * scale
    return bound if lp is None else max(bound, lp)


def refine(graph, lower0, upper0, intermediate, scores=None, deadline=None,
           max_neurons=None, binary=0, milp_seconds=1.0):
    """Tighter bounds of the hidden pre-activations of a ReLU MLP by LP.

    Args:
        lower0, upper0: (n_in,) the input box.
        intermediate: Relu node index -> :class:`Interval` ``(1, n)`` of sound
            bounds (CROWN/alpha-CROWN's) of that node's input.
        scores: Relu node index -> (n,) priorities (e.g. BaBSR split scores);
            higher first. None: widest interval first.
        deadline: ``time.monotonic()`` value after which no LP is started.
        max_neurons: at most this many neurons per layer.

    Returns ``(table, stats)``: the table has the same keys, every interval the
    intersection of the given one and the LP bounds (so never looser); stats
    counts the LPs solved and the neurons made stable. None if the graph is not
    a ReLU MLP chain.
    """
    layers = mlp_layers(graph)
    if layers is None:
        return None
    linears, relus = layers
    bounds = {k: (np.asarray(v.lower, np.float64)[0].copy(),
                  np.asarray(v.upper, np.float64)[0].copy())
              for k, v in intermediate.items()}
    lower0 = np.asarray(lower0, np.float64).reshape(-1)
    upper0 = np.asarray(upper0, np.float64).reshape(-1)
    stats = {"lps": 0, "stabilised": 0, "refined": 0}
    for layer in range(1, len(relus)):  # the first layer's bounds are exact already
        if deadline is not None and time.monotonic() >= deadline:
            break
        node = relus[layer]
        lo, hi = bounds[node]
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        if not len(unstable):
            continue
        A, c, lb, ub, offset, integrality = relaxation(graph, linears, relus, layer,
                                                        lower0, upper0, bounds, binary)
        W, b = linear_weights(graph.nodes[linears[layer]])
        priority = (scores[node][unstable] if scores is not None and node in scores
                    else hi[unstable] - lo[unstable])
        order = unstable[np.argsort(-priority, kind="stable")]
        if max_neurons is not None:
            order = order[:max_neurons]
        for j in order:
            g = np.zeros(A.shape[1])
            g[offset:offset + W.shape[1]] = W[j]
            for sign in (1.0, -1.0):  # lower first: most unstable neurons are cut there
                if deadline is not None and time.monotonic() >= deadline:
                    break
                limit = milp_seconds if deadline is None else \
                    min(milp_seconds, deadline - time.monotonic())
                value = (_solve_milp(sign * g, A, c, lb, ub, integrality, limit)
                         if integrality.any() else _solve(sign * g, A, c, lb, ub))
                stats["lps"] += 1
                if value is None:
                    continue
                if sign > 0:
                    new = value + b[j]
                    if new > lo[j]:
                        lo[j] = new
                        stats["refined"] += 1
                else:
                    new = -value + b[j]
                    if new < hi[j]:
                        hi[j] = new
                        stats["refined"] += 1
                if lo[j] >= 0 or hi[j] <= 0:
                    stats["stabilised"] += 1
                    break
    table = dict(intermediate)
    for k, (lo, hi) in bounds.items():
        table[k] = Interval(lo[None], hi[None])
    return table, stats
