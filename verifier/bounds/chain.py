"""Per-box bounds for Linear/ReLU chains (acasxu, rl_benchmarks-style
control policies), with each box's own float32 decision margins.

Input splitting bounds thousands of small boxes at once. The generic CROWN
engine tightens an intermediate layer on every neuron unstable *somewhere*
in the batch (with 4096 boxes: nearly all of them) for every box; here each
box back-substitutes only its *own* unstable neurons (boxes sorted by that
count and padded per chunk), a few per layer on acasxu. The bounds a box is
given (its parent's, see :func:`chain_bounds`) are intersected first, so a
neuron stable in the parent costs nothing.

Every box's float32 decision margins come from the same passes. The float32
network onnxruntime runs is the real one with each Linear node's own
rounding ``delta_k`` (``|delta_k| <= own_k``, from the sweep of
:mod:`verifier.bounds.roundoff`) added to its output. The tightening keeps
two intervals per pre-activation: the real one and one holding the float32
value (first ``[l - e, u + e]`` with ``e`` the forward error bound, then
IBP of the float intervals widened by ``own``, then CROWN). Its ReLU lines
are built on the float intervals (which hold the real ones), so one
back-substitution gives ``L``, a bound of the real value, and
``L - sum_k |A_k|·own_k``, a bound of the float32 value (the construction
of :func:`verifier.bounds.roundoff.direct_lower`, restricted to the
neurons each box needs). The final pass bounds the property's rows the same
way; a row whose float32 lower bound exceeds the floor
``COMPARISON·(|c|·|y| + |d|) + MARGIN_FLOOR`` gets that floor as its
margin, the others the floor plus the forward gap bound ``|c|·e_out``
inflated by ``FLOAT64_SLACK`` (both are margins
:func:`verifier.bounds.margin.decision_margins` itself may return), and
every refutation goes through :func:`verifier.bounds.margin.refuted`.

Nothing here depends on the other boxes of the batch, so worker processes
may split a queue freely.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.forward import spec_lower
from verifier.bounds.margin import FLOAT64_SLACK, comparison_floor
from verifier.bounds.result import Interval
from verifier.bounds.roundoff import DIRECT_SLACK, _no_nan, _sweep, paid
from verifier.ir import ops

#: elements of a coefficient block (boxes x rows x width) per chunk
CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class Chain:
    """A graph ``Input (Reshape)* Linear Relu Linear ... Linear``: the
    Linear nodes (weights (n_k, n_k-1), biases) and the Relu node after each
    hidden one."""

    linears: tuple
    relus: tuple
    weights: tuple
    biases: tuple

    @classmethod
    def of(cls, graph) -> "Chain | None":
        """The chain of ``graph``, or None when it is not one."""
        linears, relus = [], []
        for i, node in enumerate(graph.nodes[1:], start=1):
            if tuple(node.inputs) != (i - 1,):
                return None
            before = graph.nodes[i - 1]
            if isinstance(node, ops.Linear):
                if node.weight.shape[1] != before.size or (linears and len(relus) < len(linears)):
                    return None
                linears.append(i)
            elif isinstance(node, ops.Relu):
                if not isinstance(before, ops.Linear):
                    return None
                relus.append(i)
            elif not isinstance(node, ops.Reshape):
                return None
        if not linears or graph.output != linears[-1] or len(relus) != len(linears) - 1:
            return None
        weights = tuple(np.asarray(graph.nodes[i].weight, dtype=np.float64) for i in linears)
        biases = tuple(np.zeros(w.shape[0]) if graph.nodes[i].bias is None else
                       np.asarray(graph.nodes[i].bias, dtype=np.float64)
                       for i, w in zip(linears, weights))
        return cls(tuple(linears), tuple(relus), weights, biases)

    @property
    def hidden(self) -> int:
        """Pre-activation entries of all hidden layers together."""
        return sum(w.shape[0] for w in self.weights[:-1])

    def split_hidden(self, flat):
        """(B, hidden) -> one (B, n_k) block per hidden layer."""
        cuts = np.cumsum([w.shape[0] for w in self.weights[:-1]])[:-1]
        return np.split(flat, cuts, axis=1)


@dataclass
class ChainBounds:
    """What :func:`chain_bounds` finds on a batch of boxes."""

    lower: np.ndarray     # (B, R) lower bounds of the rows c·y - d (real network)
    margin: np.ndarray    # (B, R) decision margins of the rows
    coef: np.ndarray      # (B, R, n_in) input coefficients of the forward lower bounds
    pre_lower: np.ndarray  # (B, hidden) pre-activation bounds, for the box's children
    pre_upper: np.ndarray
    direct: np.ndarray    # (B, R) lower bounds of the rows on the float32 network (or -inf)


def _relu_lines(lower, upper):
    """CROWN's ReLU lines on [lower, upper] (B, n): lower slope, upper slope,
    upper intercept (the chord's, moved out like the engine's)."""
    from verifier.bounds.activations import RELAXATION_PAD

    active, inactive = lower >= 0, upper <= 0
    unstable = ~(active | inactive)
    width = np.where(unstable, upper - lower, 1.0)
    chord = np.where(unstable, upper / width, active.astype(np.float64))
    intercept = -lower * chord
    pad = RELAXATION_PAD * (np.abs(intercept) + chord * np.maximum(np.abs(lower), upper))
    intercept = np.where(unstable, intercept + pad, 0.0)
    low = np.where(unstable, (upper >= -lower).astype(np.float64), chord)
    return low, chord, intercept


def _through_relu(A, bias, line):
    """Coefficients on a Relu's input and the bias, from ``A`` on its output
    (``A`` is overwritten)."""
    low, up, intercept = line
    neg = np.minimum(A, 0.0)
    bias = bias + np.einsum("brn,bn->br", neg, intercept)
    A *= low[:, None, :]
    neg *= (up - low)[:, None, :]
    A += neg
    return A, bias


def _backward(chain, lines, start, A, bias, lower, upper, own=None):
    """Back-substitute ``A·z_start + bias`` (A (B, R, n_start), z_start the
    output of Linear layer ``start``; ``lines[k]`` the lines of the Relu
    after layer k) to the boxes: the lower bound (B, R), the input
    coefficients (B, R, n_in) and, with ``own`` (per layer (B, n_k) own
    roundings), ``sum_k |A_k|·own_k``."""
    cost = 0.0
    for k in range(start, -1, -1):
        if own is not None:
            cost = cost + paid(A, own[k])
        bias = bias + A @ chain.biases[k]
        A = (A.reshape(-1, A.shape[-1]) @ chain.weights[k]).reshape(A.shape[:-1] + (-1,))
        if k:
            A, bias = _through_relu(A, bias, lines[k - 1])
    centre, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
    value = bias + np.einsum("brn,bn->br", A, centre) - np.einsum("brn,bn->br", np.abs(A),
                                                                  radius)
    return value, A, cost


def _tighten_layer(chain, lines, own, k, real, floats, lower, upper):
    """CROWN bounds of each box's own unstable pre-activations of hidden
    layer ``k`` (k >= 1), unstable in float (``floats``: (lower, upper)
    (B, n_k) bounds of the float32 values): ``lines`` hold for the real and
    the float values of the layers before, so one pass bounds the real value
    (updates ``real`` in place) and, paying each Linear node's own rounding
    ``own`` at its coefficient, the float one (updates ``floats``)."""
    unstable = (floats[0] < 0) & (floats[1] > 0)
    counts = unstable.sum(axis=1)
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    W, b = chain.weights[k], chain.biases[k]
    n_prev = W.shape[1]
    start = 0
    while start < len(order):
        step = len(order) - start  # counts ascend: size the chunk by its last box
        while step > 1 and 2 * n_prev * step * counts[order[start + step - 1]] > CHUNK_ELEMENTS:
            step //= 2
        boxes = order[start:start + step]
        width = int(counts[boxes].max())
        # each box's unstable neurons first, padded with its other neurons
        rank = np.argsort(~unstable[boxes], axis=1, kind="stable")[:, :width]
        A = W[rank]                           # (b, width, n_prev) on the Relu's output
        A = np.concatenate([A, -A], axis=1)
        sub = [(low[boxes], up[boxes], c[boxes]) for low, up, c in lines[:k]]
        A, bias = _through_relu(A, np.concatenate([b[rank], -b[rank]], axis=1), sub[k - 1])
        with np.errstate(invalid="ignore", over="ignore"):
            value, _, cost = _backward(chain, sub, k - 1, A, bias, lower[boxes], upper[boxes],
                                       [o[boxes] for o in own])
            mine_own = own[k][boxes[:, None], rank]
            charge = (cost + np.concatenate([mine_own, mine_own], axis=1)) * (1.0 + DIRECT_SLACK)
        value = np.where(np.isnan(value), -np.inf, value)
        float_value = np.where(np.isnan(charge), -np.inf, value - charge)
        # only the box's own unstable neurons: its result must not depend on the chunk
        mine = unstable[boxes[:, None], rank]
        at = boxes[:, None], rank
        for (low, high), found in ((real, value), (floats, float_value)):
            low[at] = np.where(mine, np.maximum(low[at], found[:, :width]), low[at])
            high[at] = np.where(mine, np.minimum(high[at], -found[:, width:]), high[at])
        start += len(boxes)


def _ibp_next(chain, k, pre_lower, pre_upper):
    """Interval of layer k's pre-activation from layer k-1's (after its Relu)."""
    W = chain.weights[k]
    low, up = np.maximum(pre_lower, 0.0), np.maximum(pre_upper, 0.0)
    centre, radius = 0.5 * (low + up), 0.5 * (up - low)
    mid = centre @ W.T + chain.biases[k]
    spread = radius @ np.abs(W).T
    return mid - spread, mid + spread


def _node_bounds(graph, chain, lower, upper, pre):
    """Every node's interval from the box and the pre-activation intervals."""
    bounds = {}
    pre = list(pre)
    out = _ibp_next(chain, len(chain.linears) - 1, *pre[-1]) if pre else None
    layer = 0
    for i, node in enumerate(graph.nodes):
        if i == 0 or isinstance(node, ops.Reshape):
            bounds[i] = Interval(lower, upper) if i == 0 else bounds[i - 1]
        elif isinstance(node, ops.Linear):
            if i == graph.output:
                if out is None:  # one layer: the box's exact interval
                    W = chain.weights[0]
                    centre, radius = 0.5 * (lower + upper), 0.5 * (upper - lower)
                    mid = centre @ W.T + chain.biases[0]
                    out = (mid - radius @ np.abs(W).T, mid + radius @ np.abs(W).T)
                bounds[i] = Interval(*out)
            else:
                bounds[i] = Interval(*pre[layer])
                layer += 1
        else:  # Relu
            bounds[i] = Interval(np.maximum(bounds[i - 1].lower, 0.0),
                                 np.maximum(bounds[i - 1].upper, 0.0))
    return bounds


def chain_bounds(graph, chain: Chain, lower, upper, rows, given=None,
                 crown: bool = True, deadline=None) -> ChainBounds:
    """Bounds and decision margins of the rows ``C·y - d`` of ``rows`` (a
    :class:`verifier.search.rows.CaseRows`: C (R, m), d (R,), the polytopes)
    on boxes (B, n_in) of a chain network.

    ``given``: (lower, upper) (B, hidden) sound pre-activation bounds on the
    boxes (e.g. their parent's), or None. Stages: forward symbolic bounds
    (with the given intervals) decide the boxes their forward gap margin
    allows; the others (``crown``) get each box's own unstable neurons
    tightened by back-substitution, layer by layer (skipped once
    ``deadline``, a ``time.monotonic()`` value, has passed: the bounds stay
    sound), and the float-valid final pass described in the module docstring.
    """
    C = np.asarray(rows.C, dtype=np.float64)
    d = np.asarray(rows.d, dtype=np.float64)
    relus = chain.relus
    hint = None
    if given is not None:
        blocks = zip(chain.split_hidden(given[0]), chain.split_hidden(given[1]))
        hint = {k: Interval(lo, up) for k, (lo, up) in zip(relus, blocks)}
    # (forward coefficients score the split better than those of the final
    # CROWN pass: 779 boxes against 5631 on acasxu 3_6 prop_1)
    bound, coef, intervals = spec_lower(graph, lower, upper, C, d, hint)
    pre = [(intervals[k].lower.copy(), intervals[k].upper.copy()) for k in relus]
    if hint is not None:  # spec_lower intersects for its forms; keep the intersection too
        pre = [(np.maximum(lo, hint[k].lower), np.minimum(up, hint[k].upper))
               for k, (lo, up) in zip(relus, pre)]
    bounds = _node_bounds(graph, chain, lower, upper, pre)
    with np.errstate(invalid="ignore", over="ignore"):
        _, errors, own = _sweep(graph, bounds)
    floor = comparison_floor(C, d, bounds[graph.output])
    gap = np.abs(C) @ errors[graph.output].reshape(len(lower), -1).T
    margin = gap.T * (1.0 + FLOAT64_SLACK) + floor
    still = np.flatnonzero(rows.open_polytopes(bound, margin).any(axis=1)) if crown \
        else np.zeros(0, int)
    direct = np.full(bound.shape, -np.inf)
    if len(still):
        sub = _open_boxes(graph, chain, lower[still], upper[still], C, d,
                          [(lo[still], up[still]) for lo, up in pre],
                          [e[still] for e in errors], [o[still] for o in own],
                          floor[still], margin[still], deadline)
        low_s, margin[still], pre_s, direct[still] = sub
        # forward bounds again with the tightened intervals: their coefficients
        # score the split (measured, boxes to prove: acasxu 2_7 prop_1 957
        # against 7563 with those of the first forward pass, 3_6 prop_1 745
        # against 779; 1_1 prop_2 2649 against 1777)
        hint = {k: Interval(lo, up) for k, (lo, up) in zip(relus, pre_s)}
        again, coef[still], _ = spec_lower(graph, lower[still], upper[still], C, d, hint)
        bound[still] = np.maximum(np.maximum(bound[still], low_s), again)
        for (lo, up), (lo_s, up_s) in zip(pre, pre_s):
            lo[still], up[still] = lo_s, up_s
    if not pre:
        empty = np.zeros((len(lower), 0))
        return ChainBounds(bound, margin, coef, empty, empty, direct)
    return ChainBounds(bound, margin, coef, np.concatenate([lo for lo, _ in pre], axis=1),
                       np.concatenate([up for _, up in pre], axis=1), direct)


#: lower slopes of unstable ReLUs tried by the final pass (each gives a sound
#: bound; every row keeps the best): CROWN's adaptive 0/1, 0, and the chord's
#: (Fast-Lin). Measured on a late batch of acasxu 3_3 prop_2 (4096 boxes):
#: 511 closed with the adaptive slopes alone, 587 with the best of the three.
FINAL_SLOPES = ("adaptive", "zero", "chord")


def _final_lines(pre, kind):
    """Relu lines of every hidden layer on the intervals ``pre`` with the
    ``kind`` lower slope."""
    lines = []
    for lo, up in pre:
        low, chord, intercept = _relu_lines(lo, up)
        if kind != "adaptive":
            unstable = (lo < 0) & (up > 0)
            low = np.where(unstable, 0.0 if kind == "zero" else chord, low)
        lines.append((low, chord, intercept))
    return lines


def _open_boxes(graph, chain, lower, upper, C, d, pre, errors, own, floor, margin,
                deadline):
    """The tightening and the final passes on the boxes left open: the rows'
    lower bounds, margins, input coefficients, pre-activation bounds and the
    float32 bounds (``-inf`` where not computed). ``errors``/``own``: the
    float32 error bounds and own roundings (B, size) of every node from the
    sweep over ``pre``; ``floor``/``margin``: the rows' floor and gap margin."""
    batch = len(lower)
    e = [errors[i].reshape(batch, -1) for i in chain.linears]
    own = [_no_nan(own[i].reshape(batch, -1)) for i in chain.linears]
    lines, floats = [], []
    for k in range(len(pre)):
        lo, up = pre[k]
        f_lo, f_up = lo - e[k], up + e[k]
        if k:
            ibp_lo, ibp_up = _ibp_next(chain, k, *pre[k - 1])
            lo, up = np.maximum(lo, ibp_lo), np.minimum(up, ibp_up)
            ibp_lo, ibp_up = _ibp_next(chain, k, *floats[k - 1])
            f_lo, f_up = np.maximum(f_lo, ibp_lo - own[k]), np.minimum(f_up, ibp_up + own[k])
            if deadline is None or time.monotonic() < deadline:
                _tighten_layer(chain, lines, own, k, (lo, up), (f_lo, f_up), lower, upper)
        lo, up = np.minimum(lo, up), np.maximum(lo, up)  # crossed only by rounding
        # the lines must hold for the real values too
        f_lo, f_up = np.minimum(np.minimum(f_lo, f_up), lo), np.maximum(np.maximum(f_lo, f_up), up)
        pre[k], floats = (lo, up), floats + [(f_lo, f_up)]
        lines.append(_relu_lines(f_lo, f_up))
    last = len(chain.linears) - 1
    A = np.broadcast_to(C, (batch,) + C.shape)
    bias = np.broadcast_to(-d, (batch, len(d)))
    value = None
    for kind in FINAL_SLOPES:
        found, _, _ = _backward(chain, _final_lines(pre, kind), last, A, bias,
                                         lower, upper)
        value = found if value is None else np.maximum(value, found)
    value = np.where(np.isnan(value), -np.inf, value)
    direct = np.full(value.shape, -np.inf)
    # the float32 bound, where it can change a decision
    which = np.flatnonzero(((value > floor) & (value <= margin)).any(axis=1))
    if len(which):
        sub = [(lo[which], up[which]) for lo, up in floats]
        own = [o[which] for o in own]
        for kind in FINAL_SLOPES:
            with np.errstate(invalid="ignore", over="ignore"):
                found, _, cost = _backward(chain, _final_lines(sub, kind), last, A[which],
                                           bias[which], lower[which], upper[which], own)
                found = found - cost * (1.0 + DIRECT_SLACK)
            direct[which] = np.maximum(direct[which], np.where(np.isnan(found), -np.inf, found))
        margin = np.where(direct > floor, np.minimum(margin, floor), margin)
    return value, margin, pre, direct
