"""Certified linear-programming facts about boxes and polytopes.

The search (:mod:`verifier.search.plan`) asks three kinds of question about a
box intersected with ``A x <= b`` and about unsafe output sets ``C y <= d``:
is the set empty, how far does each input reach in it, and where is a point
of it near a given one. This module answers them.

Soundness never rests on the LP solver's tolerances. HiGHS
(``scipy.optimize.linprog(method="highs")``) only proposes multipliers; each
decision is taken on a certificate checked here:

* input side, weak Lagrangian duality: for any ``y >= 0`` and any ``x`` in the
  region, ``c·x >= (c + Aᵀy)·x - yᵀb >= min over the box of the same``; that
  minimum is evaluated in float64 minus a rigorous allowance for its rounding
  (:func:`lagrangian_lower`). With ``c = 0`` a positive value (above
  :data:`EMPTY_MARGIN`) proves the region empty.
  Emptiness is decided over the reals: a region with real points but no
  float32 point is not empty (its search may then end ``unknown``);
* output side (no box bounds the outputs), an exact rational Farkas
  combination: ``λ >= 0`` with ``λᵀC = 0`` and ``λᵀd < 0`` (or ``= 0`` with a
  strict row in its support), checked with :class:`fractions.Fraction`.

Sub-boxes are cut to ``A x <= b`` by the bound tightening of MIP presolve
(Savelsbergh 1994) with outward rounding (:func:`propagate`), and points are
projected by Dykstra's alternating projections (:func:`dykstra`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: float64 unit roundoff
_U64 = 2.0 ** -53
#: A region is declared empty only when the certified violation exceeds this
#: (in units of rows scaled to max |coefficient| 1), on top of the rounding
#: allowance of :func:`lagrangian_lower`.
EMPTY_MARGIN = 1e-9
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def solver():
    """scipy's ``linprog`` (imported on first use: the import takes a second or more)."""
    from scipy.optimize import linprog

    return linprog


def _linprog(c, A_ub, b_ub, bounds):
    """HiGHS on ``min c·z, A_ub z <= b_ub, bounds``; the result or None on failure."""
    linprog = solver()
    try:
        res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs",
                      options=_HIGHS)
    except ValueError:
        return None
    return res if res.status == 0 else None


def row_scale(A):
    """max |a_ij| per row (1 for all-zero rows)."""
    norm = np.abs(A).max(axis=1) if A.size else np.ones(A.shape[0])
    return np.where(norm > 0, norm, 1.0)


def lagrangian_lower(c, y, A, b, lower, upper) -> float:
    """A rigorous lower bound of ``min c·x`` over ``box ∩ {A x <= b}``.

    ``y`` (k,): any multipliers (negative entries are treated as 0). Weak
    duality makes the value a bound whatever ``y`` is; the float64 rounding of
    its evaluation (products and sums of at most ``n + k + 2`` terms) is
    subtracted with a generous factor.
    """
    y = np.maximum(np.asarray(y, dtype=np.float64), 0.0)
    g = c + y @ A
    value = float(np.minimum(g * lower, g * upper).sum() - y @ b)
    reach = np.maximum(np.abs(lower), np.abs(upper))
    scale = float(((np.abs(c) + y @ np.abs(A)) * reach).sum() + y @ np.abs(b))
    n, k = A.shape[1], A.shape[0]
    return value - 4.0 * (n + k + 4) * _U64 * scale


@dataclass(frozen=True)
class Depth:
    """The LP ``max t`` s.t. ``â_i·x + t <= b̂_i`` (rows scaled to max |a| = 1) over the box.

    ``t`` is how deep the deepest point ``x`` lies inside every row (negative:
    how far it is outside); ``empty`` is True only when the multipliers of
    the LP certify (:func:`lagrangian_lower`) that the region has no point.
    """

    t: float
    x: np.ndarray | None
    empty: bool


def deepest_point(lower, upper, A, b) -> Depth:
    """Solve the depth LP of box ∩ {A x <= b} and check emptiness (see :class:`Depth`)."""
    k, n = A.shape
    if k == 0:
        return Depth(np.inf, 0.5 * (lower + upper), False)
    scale = row_scale(A)
    objective = np.zeros(n + 1)
    objective[-1] = -1.0
    rows = np.hstack([A / scale[:, None], np.ones((k, 1))])
    res = _linprog(objective, rows, b / scale,
                   list(zip(lower, upper)) + [(None, None)])
    if res is None:
        return Depth(-np.inf, None, False)
    t = -float(res.fun)
    empty = False
    if t < 0:
        y = -np.asarray(res.ineqlin.marginals) / scale   # multipliers of the original rows
        empty = lagrangian_lower(np.zeros(n), y, A, b, lower, upper) > EMPTY_MARGIN
    return Depth(t, np.clip(res.x[:n], lower, upper), empty)


def tighten_box(lower, upper, A, b, deadline: float):
    """Lower and upper bounds of each input over box ∩ {A x <= b} by LP.

    Each bound is certified by :func:`lagrangian_lower`, so the result always
    contains the region; inputs left when ``deadline`` (time.monotonic)
    passes keep their box bounds. Returns (lower, upper, empty): ``empty`` is
    True when two certified bounds cross (then the region has no point).
    """
    lower, upper = lower.copy(), upper.copy()
    k, n = A.shape
    scale = row_scale(A)
    scaled, rhs = A / scale[:, None], b / scale
    for i in np.flatnonzero(A.any(axis=0)):     # an input in no row keeps its bounds
        for sign in (1.0, -1.0):
            if time.monotonic() > deadline or lower[i] >= upper[i]:
                break
            c = np.zeros(n)
            c[i] = sign
            res = _linprog(c, scaled, rhs, list(zip(lower, upper)))
            if res is None:
                continue
            y = -np.asarray(res.ineqlin.marginals) / scale
            bound = lagrangian_lower(c, y, A, b, lower, upper)
            if sign > 0:
                lower[i] = max(lower[i], bound)
            else:
                upper[i] = min(upper[i], -bound)
    empty = bool(np.any(lower > upper))
    return lower, np.maximum(upper, lower), empty


# ------------------------------------------------------------------ output side


def _farkas_exact(C, d, strict, weights) -> bool:
    """Whether ``weights`` (rounded to small rationals) prove C y <= d infeasible, exactly."""
    top = float(np.max(weights)) if len(weights) else 0.0
    if not top > 0:
        return False
    lam = [Fraction(float(w / top)).limit_denominator(10 ** 6) if w > 1e-9 * top
           else Fraction(0) for w in weights]
    support = [i for i, v in enumerate(lam) if v > 0]
    if not support:
        return False
    for j in range(C.shape[1]):
        if sum(lam[i] * Fraction(float(C[i, j])) for i in support) != 0:
            return False
    total = sum(lam[i] * Fraction(float(d[i])) for i in support)
    return total < 0 or (total == 0 and any(strict[i] for i in support))


def screen(polytopes):
    """Cheap exact decisions for many polytopes at once, so that the usual ones
    need no LP. Returns (infeasible, undecided), bool arrays over the polytopes.

    Infeasible: an all-zero row ``0 <= d_i`` that fails (``(< Y_0 Y_0)``), or
    two rows on one output alone that cross beyond rounding
    (``Y_0 <= 0 and Y_0 >= 1``). Feasible (neither flag): fewer than two rows
    otherwise; ``y = 0`` satisfies every row; the direction ``v = -(sum of
    the rows, each scaled to max |c| = 1)`` decreases every non-zero row
    (then ``t v`` does for large ``t``) and the all-zero rows hold; or every
    row is on one output alone and each output's interval is wide beyond
    rounding. The rest is undecided (touching intervals go to the LP).
    """
    count = len(polytopes)
    C = np.vstack([p.C for p in polytopes])
    d = np.concatenate([p.d for p in polytopes])
    strict = np.concatenate([p.strict for p in polytopes])
    owner = np.repeat(np.arange(count), [p.rows for p in polytopes])
    zero = ~C.any(axis=1)
    holds_at_zero = np.where(strict, d > 0, d >= 0)

    def every(row_ok):
        return np.bincount(owner[~row_ok], minlength=count) == 0

    infeasible = ~every(~zero | holds_at_zero)
    scaled = C / row_scale(C)[:, None]
    direction = np.zeros((count, C.shape[1]))
    np.add.at(direction, owner, -scaled)
    slope = np.einsum("rj,rj->r", scaled, direction[owner])
    crossed, wide = _intervals(C, d, owner, count)
    infeasible |= crossed
    single = np.count_nonzero(C, axis=1) == 1
    feasible = (np.array([p.rows < 2 for p in polytopes], dtype=bool) | every(holds_at_zero)
                | every(np.where(zero, holds_at_zero, slope < 0))
                | (every(np.where(zero, holds_at_zero, single)) & wide))
    return infeasible, ~infeasible & ~feasible


def _tightest(keys, values, pick):
    """Per distinct key, the ``pick`` (np.minimum / np.maximum) of its values."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else keys
    return keys[starts], pick.reduceat(values, starts) if len(keys) else values


def _intervals(C, d, owner, count):
    """Rows with one non-zero ``c y_j <= d`` bound ``y_j`` by ``d / c``. Per
    polytope: (some output's lower bound exceeds its upper bound by more than
    the division's rounding, every output's interval is wider than it)."""
    single = np.flatnonzero(np.count_nonzero(C, axis=1) == 1)
    column = np.abs(C[single]).argmax(axis=1)
    coef = C[single, column]
    value = d[single] / coef
    key = owner[single] * C.shape[1] + column
    up_keys, up = _tightest(key[coef > 0], value[coef > 0], np.minimum)
    low_keys, low = _tightest(key[coef < 0], value[coef < 0], np.maximum)
    both, at_up, at_low = np.intersect1d(up_keys, low_keys, return_indices=True)
    slack = 4 * _U64 * (np.abs(up[at_up]) + np.abs(low[at_low]))
    gap = up[at_up] - low[at_low]
    owners = both // C.shape[1]
    crossed = np.zeros(count, dtype=bool)
    crossed[owners[gap < -slack]] = True
    wide = np.ones(count, dtype=bool)
    wide[owners[gap <= slack]] = False
    return crossed, wide


def farkas_infeasible(poly) -> bool:
    """Whether ``C y <= d`` has no solution, on an exact certificate: HiGHS on
    ``max t`` s.t. ``ĉ_i·y + t <= d̂_i`` (rows scaled to max |c| = 1) gives
    multipliers that sum to 1 and combine the rows to 0; they are checked in
    rational arithmetic (:func:`_farkas_exact`). False: feasible or not decided.
    """
    C, d, strict = poly.C, poly.d, poly.strict
    scale = row_scale(C)
    objective = np.zeros(C.shape[1] + 1)
    objective[-1] = -1.0
    rows = np.hstack([C / scale[:, None], np.ones((poly.rows, 1))])
    res = _linprog(objective, rows, d / scale, [(None, None)] * C.shape[1] + [(None, 1.0)])
    if res is None or -res.fun > 1e-9:
        return False
    weights = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0) / scale
    return _farkas_exact(C, d, strict, weights)


def polytope_infeasible(poly) -> bool:
    """Whether ``C y <= d`` (strict rows strictly) has no solution ``y``:
    :func:`screen`, then :func:`farkas_infeasible` if undecided. True only
    with an exact certificate."""
    infeasible, undecided = screen([poly])
    return bool(infeasible[0] or (undecided[0] and farkas_infeasible(poly)))


# ------------------------------------------------------------------ projection


def dykstra(x, lower, upper, A, target, iterations: int):
    """Rows of ``x`` projected onto ``[lower, upper] ∩ {A x <= target}``.

    Dykstra's alternating projections (Boyle and Dykstra 1986) over the
    half-spaces and the box, batched over the rows of ``x`` (``lower``/
    ``upper`` per row). It stops as soon as every point is feasible, so the
    result is a feasible point near ``x`` rather than always the nearest one;
    points still outside after ``iterations`` rounds are left in the box.
    """
    x = np.clip(x, lower, upper)
    live = np.flatnonzero(A.any(axis=1))
    if not len(live):
        return x
    A, target = A[live], target[live]
    square = (A * A).sum(axis=1)
    increments = np.zeros((len(live),) + x.shape)
    box_increment = np.zeros_like(x)
    for _ in range(iterations):
        if np.all(x @ A.T <= target):
            break
        for i in range(len(live)):
            y = x + increments[i]
            excess = np.maximum(y @ A[i] - target[i], 0.0) / square[i]
            x = y - excess[:, None] * A[i]
            increments[i] = y - x
        y = x + box_increment
        x = np.clip(y, lower, upper)
        box_increment = y - x
    return x


def propagate(lower, upper, A, b):
    """One round of interval constraint propagation of ``A x <= b`` on boxes (B, n).

    Returns (lower, upper, keep): every bound is moved outwards by a rounding
    allowance, so each new box contains its box's part of the region; ``keep``
    is False where that part is certified empty.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _propagate(lower, upper, A, b)


def _propagate(lower, upper, A, b):
    positive, negative = np.maximum(A, 0.0), np.minimum(A, 0.0)
    # per box, row and input: the minimum of a_ij x_j over the box
    least = positive[None] * lower[:, None, :] + negative[None] * upper[:, None, :]
    row_min = least.sum(axis=2)                                  # (B, k)
    reach = np.maximum(np.abs(lower), np.abs(upper))              # (B, n)
    slack = 4.0 * (A.shape[1] + 4) * _U64 * (reach @ np.abs(A).T + np.abs(b))  # (B, k)
    keep = np.all(row_min <= b + slack, axis=1)
    rest = (b - row_min + slack)[:, :, None] + least                # >= a_ij x_j
    bound = rest / A[None]
    bound = bound + np.abs(bound) * 4 * _U64 * np.sign(A[None])     # outward for the division
    new_upper = np.min(np.where(A[None] > 0, bound, np.inf), axis=1)
    new_lower = np.max(np.where(A[None] < 0, bound, -np.inf), axis=1)
    lower = np.maximum(lower, new_lower)
    upper = np.minimum(upper, new_upper)
    keep &= np.all(lower <= upper, axis=1)
    return lower, np.maximum(upper, lower), keep
