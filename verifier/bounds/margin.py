"""The decision margin: the one place where a bound is compared with 0 to decide.

A row ``c·y - d <= 0`` of a property's unsafe set is *refuted* when a sound
lower bound of ``c·y - d`` exceeds that row's margin (:func:`refuted`); an
unsafe polytope (a conjunction of rows) is refuted when one of its rows is.

The bounds are about the real-valued network of the IR. The answer must be
about the float32 network onnxruntime runs, so the margin of a row is
(:func:`decision_margins`):

* a bound of ``|c·(float32 output - real output)|`` over the region from
  :func:`verifier.bounds.roundoff.row_gaps` (computed from the region's own
  intermediate bounds: sub-problems of branch and bound get smaller margins
  than the root), inflated by ``FLOAT64_SLACK`` relative;
* ``COMPARISON`` relative of ``|c|·|y| + |d|``: the float64 rounding of the
  bound arithmetic itself (~1e-12 relative on our networks) and of the
  checker's evaluation of ``c·y - d`` on the float32 outputs;
* :data:`MARGIN_FLOOR` absolute.

Bounds computed on the float32 network itself (``BoundOptions(float32=True)``,
used by ReLU splitting) need no gap: their margin is the last two terms.

A row's margin drops to the last two terms (no float32 gap) when a lower
bound of ``c·y32 - d`` on the float32 network itself
(:func:`verifier.bounds.roundoff.direct_lower`: CROWN with the roundings as
perturbations) exceeds them: the row then holds for the float32 network on
the region, so refuting it is right whatever the caller's lower bound (any
margin is sound there; the floor keeps the real bound's comparison as
before). On deep networks this is tighter than the gap bound by orders of
magnitude (the gap bound grows with the interval Jacobian; the direct one
pays each rounding once, at its signed CROWN weight).

Every decision taken from bounds (the ``bounds`` command, the branch and
bound driver, alpha-CROWN's early stop) goes through :func:`refuted` with
margins from :func:`decision_margins`.

The engines take one more decision themselves: a sub-problem is *empty* (its
split constraints contradict the bounds) only when some lower bound exceeds
its upper bound by more than :data:`EMPTY_TOLERANCE` (relative). Bounds of
the same quantity computed two ways (e.g. a constant entry bounded by IBP and
by a parent's CROWN pass) may cross by a few ulps; that is rounding, not a
contradiction.
"""
from __future__ import annotations

import numpy as np

from verifier.bounds.result import Interval
from verifier.bounds.roundoff import direct_lower, row_gaps

#: The absolute part of every row's margin.
MARGIN_FLOOR = 1e-9
#: Relative slack on |c|·|y| + |d| for float64 rounding and the comparison.
COMPARISON = 2.0 ** -30
#: Relative inflation of the float32 gap for the float64 arithmetic computing it.
FLOAT64_SLACK = 2.0 ** -20

#: Relative slack before crossing bounds declare a sub-problem empty.
EMPTY_TOLERANCE = 1e-9


def empty(lower, upper, tolerance: float = EMPTY_TOLERANCE) -> np.ndarray:
    """Where ``lower > upper`` beyond rounding: the constrained set is empty."""
    lower, upper = np.asarray(lower), np.asarray(upper)
    return lower > upper + tolerance * (1.0 + np.abs(lower) + np.abs(upper))


def comparison_floor(C, d, out) -> np.ndarray:
    """``(B, R)``: ``COMPARISON·(|c|·|y| + |d|) + MARGIN_FLOOR``, the margin
    every row keeps (``out``: the output's Interval ``(B, n_out)``; ``C``
    ``(R, n_out)`` or ``(B or 1, R, n_out)``; ``d`` ``(R,)``, ``(B or 1, R)``
    or None)."""
    y = np.maximum(np.abs(out.lower), np.abs(out.upper))
    C = np.abs(np.asarray(C, dtype=np.float64))
    if C.ndim == 2:
        C = C[None]
    d = np.zeros(C.shape[1]) if d is None else np.abs(np.asarray(d, dtype=np.float64))
    size = np.where(C > 0, C * y[:, None, :], 0.0).sum(axis=2)  # no inf * 0
    return COMPARISON * (size + d) + MARGIN_FLOOR


def decision_margins(graph, node_bounds, C, d=None, lower=None,
                     float32=False) -> np.ndarray:
    """``(B, R)`` margins of the rows ``C·y - d`` over a batch of regions.

    ``node_bounds``: node index -> Interval ``(B, size)`` of every node over
    the regions (``BoundsResult.node_bounds``); ``C``: ``(R, n_out)`` or
    ``(B or 1, R, n_out)``; ``d``: ``(R,)`` or ``(B or 1, R)`` (None: 0).
    ``lower`` (optional, ``(B, R)``): the caller's lower bounds of the rows;
    the direct float32 bound is then only computed for the regions where it
    can change a decision (a row above the floor but not above the gap
    margin). Every margin returned is sound whatever lower bound it is later
    compared with. ``float32``: the node bounds and the lower bounds the
    margins will meet are bounds of the float32 network itself
    (``BoundOptions(float32=True)``): no gap, the floor only.
    """
    out = node_bounds[graph.output]
    if np.shape(C)[-2] == 0:  # no rows (a property without output constraints)
        return np.zeros((out.lower.shape[0], 0))
    floor = comparison_floor(C, d, out)
    if float32:
        return floor
    margin = row_gaps(graph, node_bounds, C) * (1.0 + FLOAT64_SLACK) + floor
    if lower is None:
        which = np.arange(margin.shape[0])
    else:
        lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), margin.shape)
        which = np.flatnonzero(((lower > floor) & (lower <= margin)).any(axis=1))
    if which.size == 0:
        return margin
    C = np.asarray(C, dtype=np.float64)
    C = C if C.ndim == 3 else C[None]
    d = np.zeros((1, C.shape[1])) if d is None else np.asarray(d, dtype=np.float64)
    d = d if d.ndim == 2 else d[None]
    direct = direct_lower(
        graph, {i: Interval(node_bounds[i].lower[which], node_bounds[i].upper[which])
                for i in range(len(graph.nodes))},
        C[which] if C.shape[0] > 1 else C, d[which] if d.shape[0] > 1 else d)
    margin = margin.copy()
    margin[which] = np.where(direct > floor[which], np.minimum(margin[which], floor[which]),
                             margin[which])
    return margin


def run_margins(run, target, A, bias):
    """The margins of the rows ``A·y + bias`` of a bound engine run's output
    (alpha-CROWN's early stop), or None when ``target`` is not the output."""
    if target != run.prep.graph.output:
        return None
    return decision_margins(run.prep.graph, run.bounds, A, -np.asarray(bias),
                            float32=run.options.float32)


def refuted(lower, margin) -> np.ndarray:
    """Where the lower bounds ``lower`` of ``c·y - d`` refute ``c·y <= d``,
    given each row's ``margin`` (from :func:`decision_margins`; broadcasts)."""
    return np.asarray(lower, dtype=np.float64) > np.asarray(margin, dtype=np.float64)
