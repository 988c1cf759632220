"""Input splitting for few-input networks (acasxu's 5 inputs, control policies).

A queue of sub-boxes of one input region. Each round takes the ``batch``
open boxes with the lowest parent bound (likeliest to hold a counterexample)
and bounds them all at once:

1. forward symbolic bounds (:mod:`verifier.bounds.forward`, a few matrix
   products over every box together) give a linear lower bound
   ``coef·x + const`` of every property row on every box;
2. the boxes they leave open get CROWN, with the intermediate bounds
   recomputed by back-substitution (much tighter on deep nets), and the
   forward bounds once more with CROWN's intermediate bounds (see
   :func:`box_bounds`).

On Linear/ReLU chains (acasxu, control policies) both stages are replaced
by :func:`verifier.bounds.chain.chain_bounds`: each box back-substitutes only
its own unstable neurons, starts from its parent's pre-activation bounds
(kept in the queue) and gets its float32 decision margins from the same
passes. Measured on acasxu 3_3 prop_2 (one core, shared machine): about
3000 sub-boxes per second, against about 500 with the two stages.

A box is closed when every unsafe polytope of the case is refuted on it
(:func:`verifier.bounds.margin.refuted`). An open box is split in two at the
middle of the input with the largest ``|coef_i| x width_i`` of its worst
open row (the "smear" of ReluVal, Wang et al. 2018, read off the symbolic
bound for free): halving that input raises the linear bound the most. On
chains, :func:`look_ahead` bounds the children of that split and of the
next best smear input, keeps the split whose worse child is better, and
queues its children with their bounds, so they are not bounded again.

Falsification is amortised over the bound calls: the centre and the
minimiser of the linear bound of each open box are evaluated in float64 (one
batched forward pass), and only points whose float64 margin is violated are
replayed through onnxruntime; a short PGD on the few worst boxes runs only
while attacks have used under ``attack_share`` of the search time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.chain import Chain, chain_bounds
from verifier.bounds.engine import compute_bounds
from verifier.bounds.forward import spec_lower
from verifier.bounds.inputs import Box
from verifier.bounds.roundoff import float32_hull
from verifier.bounds.result import BoundOptions
from verifier.search.attack import Targets, pgd
from verifier.search.plan import LpBudget
from verifier.search.progress import Progress
from verifier.search.rows import CaseRows, record_root_margins


@dataclass
class SplitOutcome:
    """How one region's search ended: proved, or a counterexample, or time."""

    proved: bool
    reason: str
    counterexample: object = None
    boxes: int = 0


@dataclass
class SplitSettings:
    batch: int = 4096            # boxes bounded per round
    crown: bool = True           # CROWN on boxes the forward bounds leave open
    attack_share: float = 0.1    # at most this share of the time in PGD
    attack_boxes: int = 8        # worst boxes attacked per PGD run
    attack_steps: int = 20
    workers: int | None = None   # processes per region (None: ctx.options.workers)
    fork_after: float = 1.0      # seconds of search before the queue is shared
    chain: bool = True           # Linear/Relu chains: per-box bounds (verifier.bounds.chain)
    lookahead: int = 2           # inputs tried per split (look_ahead: chains, polytopes of >1 row)


class BoxQueue:
    """Open sub-boxes with a lower bound for their order (their parent's, or
    their own), optionally (``hint``) sound pre-activation bounds of each box
    (its parent's, stored in float32 rounded outward), for
    :func:`chain_bounds`, and optionally (``known``) what bounding the box
    itself found, when that was done before it was queued
    (:func:`look_ahead`): its rows' lower bounds and margins (B, R) and the
    input coefficients (B, R, n_in), kept exactly (float64).

    Flat arrays with spare capacity: popping ``count`` boxes moves at most
    ``count`` rows (the last ones fill the holes), pushing appends, so a
    round costs the batch, not the queue (plus one argpartition of the bounds).
    """

    def __init__(self, lower, upper):
        self.size = 1
        self._lower = lower[None].astype(np.float64)
        self._upper = upper[None].astype(np.float64)
        self._bound = np.array([-np.inf])
        self._hint = None
        self._known = None

    def __len__(self):
        return self.size

    lower = property(lambda self: self._lower[:self.size])
    upper = property(lambda self: self._upper[:self.size])
    bound = property(lambda self: self._bound[:self.size])
    hint = property(lambda self: None if self._hint is None else
                    tuple(h[:self.size] for h in self._hint))
    known = property(lambda self: None if self._known is None else
                     tuple(k[:self.size] for k in self._known))

    @classmethod
    def of(cls, lower, upper, bound, hint=None, known=None) -> "BoxQueue":
        queue = cls(lower[0], upper[0])
        queue.size = 0
        queue.push(lower, upper, bound, hint, stored=True, known=known)
        return queue

    def take(self, index) -> "BoxQueue":
        """A queue of the boxes ``index`` (this one unchanged)."""
        hint, known = ((None if extra is None else tuple(h[index] for h in extra))
                       for extra in (self.hint, self.known))
        return BoxQueue.of(self.lower[index], self.upper[index], self.bound[index], hint, known)

    def deal(self, parts: int) -> list["BoxQueue"]:
        """The boxes sorted by bound and dealt round-robin into ``parts`` queues
        (each gets a share of the worst and of the best boxes); this one unchanged."""
        order = np.argsort(self.bound, kind="stable")
        return [self.take(order[j::parts]) for j in range(parts)]

    def replace(self, other: "BoxQueue"):
        """Hold ``other``'s boxes instead of this queue's."""
        self.size, self._lower, self._upper = other.size, other._lower, other._upper
        self._bound, self._hint, self._known = other._bound, other._hint, other._known

    def _arrays(self):
        return ([self._lower, self._upper, self._bound] + list(self._hint or ())
                + list(self._known or ()))

    def pop_worst(self, count):
        """Remove and return the ``count`` boxes with the lowest bound:
        lower, upper, their hint ((lower, upper) float64, or None) and what
        is known of them (or None)."""
        n = self.size
        if n > count:
            pick = np.argpartition(self._bound[:n], count)[:count]
        else:
            pick = np.arange(n)
        lower, upper = self._lower[pick], self._upper[pick]
        hint = None if self._hint is None else tuple(h[pick].astype(np.float64)
                                                    for h in self._hint)
        known = None if self._known is None else tuple(k[pick] for k in self._known)
        rest = n - len(pick)
        holes = pick[pick < rest]
        taken = np.zeros(len(pick), dtype=bool)
        taken[pick[pick >= rest] - rest] = True
        movers = rest + np.flatnonzero(~taken)
        for array in self._arrays():
            array[holes] = array[movers]
        self.size = rest
        return lower, upper, hint, known

    def push(self, lower, upper, bound, hint=None, stored=False, known=None):
        """Add boxes; ``hint``: (lower, upper) pre-activation bounds (B, H) or
        None, ``known``: (row bounds, margins, coefficients) or None (the
        queue keeps each only while every box has one).
        ``stored``: the hint is already float32, rounded outward."""
        n, m = self.size, len(lower)
        if hint is not None and (self._hint is not None or not n):
            if not stored:
                low32, up32 = float32_hull(*hint)
                hint = (low32.astype(np.float32), up32.astype(np.float32))
            self._hint = _room(self._hint, hint, len(self._bound))
        else:
            self._hint, hint = None, None
        if known is not None and (self._known is not None or not n):
            self._known = _room(self._known, known, len(self._bound))
        else:
            self._known, known = None, None
        if n + m > len(self._bound):
            capacity = max(2 * len(self._bound), n + m)
            grown = []
            for array in self._arrays():
                bigger = np.empty((capacity,) + array.shape[1:], array.dtype)
                bigger[:n] = array[:n]
                grown.append(bigger)
            self._lower, self._upper, self._bound = grown[:3]
            extra = len(self._hint or ())
            self._hint = tuple(grown[3:3 + extra]) or None
            self._known = tuple(grown[3 + extra:]) or None
        new = [lower, upper, bound] + list(hint or ()) + list(known or ())
        for array, values in zip(self._arrays(), new):
            array[n:n + m] = values
        self.size = n + m


def _room(stored, values, capacity):
    """``stored`` (arrays of ``capacity`` rows), or new empty ones when
    ``values`` do not fit their shapes and types."""
    if stored is None or any(s.shape[1:] != v.shape[1:] or s.dtype != v.dtype
                             for s, v in zip(stored, values)):
        return tuple(np.empty((capacity,) + v.shape[1:], v.dtype) for v in values)
    return stored


#: CROWN recomputes every intermediate bound by back-substitution to the input
_CROWN_INTERMEDIATE = BoundOptions(intermediate="crown", recompute_intermediate=True)


def box_bounds(graph, lower, upper, rows: CaseRows, crown: bool = True, deadline=None):
    """Lower bounds (B, R) of the case's rows on boxes (B, n_in), the rows'
    decision margins there (B, R), and the input coefficients (B, R, n_in) of
    a linear lower bound of each row.

    Three stages, each only on the boxes the previous ones leave open:
    forward symbolic bounds (cheap; margins from IBP over their intervals);
    CROWN with every intermediate bound recomputed by back-substitution
    (stopped at ``deadline`` with the sound bounds reached; measured on
    acasxu 3_3 prop_1: it closes all of a sample of open boxes where forward
    bounds plus one CROWN sweep close a third); forward bounds again with
    CROWN's intermediate bounds, whose tighter relaxations give the
    coefficients that score the split. Every bound kept is the tightest of
    the sound ones found, every margin the smallest. Graphs the forward
    bounds do not support get CROWN alone (coefficients None).
    """
    forward = spec_lower(graph, lower, upper, rows.C, rows.d)
    if forward is None:
        result = compute_bounds(graph, Box(lower, upper), method="crown", C=rows.C,
                                d=rows.d, upper=False, deadline=deadline)
        return result.lower, rows.margins(graph, result.node_bounds, result.lower), None
    bound, coef, intervals = forward
    ibp = compute_bounds(graph, Box(lower, upper), method="ibp", C=rows.C, d=rows.d,
                         upper=False, intermediate=intervals)
    margin = rows.margins(graph, ibp.node_bounds, bound)
    still = np.flatnonzero(rows.open_polytopes(bound, margin).any(axis=1))
    if crown and len(still):
        result = compute_bounds(graph, Box(lower[still], upper[still]), method="crown",
                                C=rows.C, d=rows.d, upper=False,
                                intermediate={k: v.take(still) for k, v in intervals.items()},
                                options=_CROWN_INTERMEDIATE, deadline=deadline)
        again, again_coef, _ = spec_lower(graph, lower[still], upper[still], rows.C, rows.d,
                                          result.pre_activation)
        bound[still] = np.maximum(np.maximum(bound[still], result.lower), again)
        margin[still] = np.minimum(margin[still],
                                   rows.margins(graph, result.node_bounds, bound[still]))
        coef[still] = again_coef
    return bound, margin, coef


def split_dimension(rows: CaseRows, bound, coef, open_poly, lower, upper, root_width=None,
                    guard: float = 100.0):
    """Per box, the input to halve: largest |coef| x width on the best row of
    its worst open polytope (the smear), unless that input is already
    ``guard`` times narrower, relative to ``root_width``, than the box's
    relatively widest input, which is then taken instead (widest input when
    no coefficients are known).

    Why the guard: the smear alone kept halving one input on acasxu 3_6
    prop_1 (timeout at 40 s, where widest-first proves it with 1163 boxes)
    and on a generated rl network (timeout vs 881 boxes): the float32
    decision margins shrink with the whole box, not with the input the bound
    is steepest in. Widest-first alone costs 14157 boxes on 1_1 prop_2
    against the smear's 2491. Measured with guard 100: 1583, 4119 and 2119
    boxes on the three, all proved; guard 8 timed out on both acasxu rows.
    """
    width = upper - lower
    relative = width / (width.max(axis=0) if root_width is None else
                        np.maximum(root_width, 1e-300))
    widest = relative.argmax(axis=1)
    if coef is None:
        return widest
    pick = np.arange(len(bound))
    dim = smear(rows, bound, coef, open_poly, width).argmax(axis=1)
    narrow = relative[pick, dim] * guard < relative[pick, widest]
    return np.where(narrow, widest, dim)


def smear(rows: CaseRows, bound, coef, open_poly, width):
    """(B, n_in) ``|coef_i| x width_i`` on the best row of each box's worst
    open polytope; -1 on inputs of zero width."""
    best, best_row = rows.best_rows(bound)
    best = np.where(open_poly, best, np.inf)
    pick = np.arange(len(bound))
    row = best_row[pick, best.argmin(axis=1)]
    score = np.abs(coef[pick, row]) * width
    score[width <= 0] = -1.0
    return score


def look_ahead(graph, chain, rows: CaseRows, lower, upper, hint, bound, coef, open_poly, dim,
               settings: SplitSettings, deadline=None):
    """Split each open box (B, n_in) along the best of ``settings.lookahead``
    inputs, judged by bounding the children: ``dim`` (the guarded smear
    choice of :func:`split_dimension`) and the inputs with the next largest
    smear. Each candidate's two children get :func:`chain_bounds` (from the
    box's pre-activation bounds ``hint``); the split whose worse child has
    the larger worst open ``bound - margin`` wins (closed children count as
    ``inf``; ties go to ``dim``). Boxes whose children under ``dim`` are both
    closed try nothing else.

    The chosen children are bounded already, so they are queued with what
    was found (their bounds, margins, coefficients, and pre-activation
    bounds for their own children) and are not bounded again. Returns the
    open children as :meth:`BoxQueue.push` takes them (lower, upper, order
    bound, hint), what is known of them (``known``) and the number of boxes
    bounded.

    Measured (boxes bounded and search seconds, one process, shared 2-core
    machine; lookahead 2 against 1, the smear alone): acasxu 1_1 prop_2 581
    boxes, 1.6 s against 2649, 5.5 s (its polytope has four rows: the
    children's own relaxations show which split helps the other rows);
    4_6 prop_1 1177 against 1179, 3_3 prop_9 4569 against 4401, 5_3 prop_2
    (sat) 15555 against 15197, each within the machine's noise in time.
    Lookahead 3 bounded more on 3_3 prop_9 (5371) and 5_3 prop_2 (20677).
    :func:`run_queue` looks ahead where some polytope has several rows or
    the case has a single polytope: on acasxu 5_8 prop_1 (one polytope of
    one row) the smear alone kept halving three inputs while a fourth stayed
    32 times wider, with 80 unstable neurons per box (timeout after 323k
    boxes at 116 s); looking ahead proves it with 1691 boxes in 1.9 s. On
    eight other prop_1 rows it bounded 6150 boxes in all against 7262
    (fewer on 3_9: 1029 against 1523, and 5_6: 827 against 1735; more on
    3_6: 999 against 745). Looking ahead on a disjunction of one-row
    polytopes (1_1 prop_5) made it time out (305k boxes, against 18097
    without), so those do not.
    """
    batch = len(lower)
    score = smear(rows, bound, coef, open_poly, upper - lower)
    score[np.arange(batch), dim] = np.inf
    tries = np.argsort(-score, axis=1, kind="stable")[:, :max(settings.lookahead, 1)]
    # never an input of zero width (its halves are the box itself)
    tries = np.where(np.take_along_axis(score, tries, axis=1) < 0, dim[:, None], tries)
    given = tuple(np.concatenate([h, h]) for h in hint)
    best = np.full(batch, -np.inf)
    choice = np.zeros(batch, dtype=np.intp)
    found_all, which_all = [], []
    bounded = 0
    for j in range(tries.shape[1]):
        which = np.arange(batch) if j == 0 else np.flatnonzero(best < np.inf)
        if not len(which):
            break
        both = np.concatenate([which, which + batch])
        low, up = bisect(lower[which], upper[which], tries[which, j])
        found = chain_bounds(graph, chain, low, up, rows,
                             tuple(g[both] for g in given), settings.crown, deadline)
        bounded += len(low)
        gap = rows.worst_open(found.lower - found.margin,
                              rows.open_polytopes(found.lower, found.margin))
        worse = np.minimum(gap[:len(which)], gap[len(which):])
        better = worse > best[which]
        best[which[better]] = worse[better]
        choice[which[better]] = j
        found_all.append((low, up, found))
        which_all.append(which)
    parts = []
    for j, ((low, up, found), which) in enumerate(zip(found_all, which_all)):
        mine = np.flatnonzero(choice[which] == j)
        pick = np.concatenate([mine, mine + len(which)])
        open_poly = rows.open_polytopes(found.lower[pick], found.margin[pick])
        still = open_poly.any(axis=1)
        pick = pick[still]
        parts.append((low[pick], up[pick], rows.worst_open(found.lower[pick], open_poly[still]),
                      found.pre_lower[pick], found.pre_upper[pick],
                      found.lower[pick], found.margin[pick], found.coef[pick]))
    low, up, order, pre_low, pre_up, row_bound, margin, coefs = (
        np.concatenate(column) for column in zip(*parts))
    return (low, up, order, (pre_low, pre_up)), (row_bound, margin, coefs), bounded


def bisect(lower, upper, dim):
    """The two halves of each box along ``dim`` (B,): (lower, upper) of both, stacked."""
    pick = np.arange(len(lower))
    mid = 0.5 * (lower[pick, dim] + upper[pick, dim])
    left_upper, right_lower = upper.copy(), lower.copy()
    left_upper[pick, dim] = mid
    right_lower[pick, dim] = mid
    return np.concatenate([lower, right_lower]), np.concatenate([left_upper, upper])


def candidate_points(rows: CaseRows, coef, bound, open_poly, lower, upper):
    """Box centres, plus (with coefficients) the corner minimising the linear
    lower bound of each box's worst open row: where a counterexample is likeliest."""
    centre = 0.5 * (lower + upper)
    if coef is None:
        return centre
    best, best_row = rows.best_rows(bound)
    best = np.where(open_poly, best, np.inf)
    pick = np.arange(len(bound))
    direction = coef[pick, best_row[pick, best.argmin(axis=1)]]
    corner = np.where(direction > 0, lower, upper)
    return np.concatenate([centre, corner])


def search(ctx, case_index, search_case, settings: SplitSettings | None = None
           ) -> SplitOutcome:
    """Prove a case's region safe, or find a replayed counterexample in it
    (``ctx.stats['search_seconds']`` adds the time spent here).

    ``search_case``: a :class:`verifier.search.plan.SearchCase`. The root box
    is the float32 hull of its box (every input onnxruntime can see). With
    linear input constraints, sub-boxes that miss ``A x <= b`` are dropped
    and the others shrunk before they are bounded
    (:meth:`~verifier.search.plan.SearchCase.restrict`), and every point
    tried is projected into the region. A sub-box that shrinks to a single
    point and stays open ends the search without a proof.
    """
    tick = time.monotonic()
    try:
        return _search(ctx, case_index, search_case, settings or SplitSettings())
    finally:
        ctx.stats["search_seconds"] = round(
            ctx.stats.get("search_seconds", 0.0) + time.monotonic() - tick, 4)


def _search(ctx, case_index, search_case, settings):
    from verifier.search.split_workers import Team
    from verifier.verify import try_candidates

    case = search_case.case
    queue = BoxQueue(*float32_hull(case.region.lower, case.region.upper))
    team = Team.for_run(ctx, settings, search_case)
    try:
        outcome = run_queue(ctx, case_index, search_case, settings, queue, try_candidates,
                            team)
        if team is not None:
            outcome = team.finish(ctx, case_index, outcome)
    finally:
        if team is not None:
            team.stop()
    return outcome


def run_queue(ctx, case_index, search_case, settings, queue, replay, team=None, share=None):
    """Bound, close, try and split the boxes of ``queue`` until it is empty,
    a counterexample is found or time runs out. ``replay(ctx, case, points,
    margins, count, slack)`` tries candidate points (a replayed
    counterexample or None); ``team`` (a :class:`~verifier.search.split_workers.Team`)
    may hand part of the queue to worker processes and report their results;
    ``share(queue)``, called once a round, may take boxes out of the queue
    (a worker handing them back to its idle parent)."""
    graph = ctx.graph
    case = search_case.case
    lp_budget = LpBudget(0.1)
    rows = CaseRows.of(case)
    chain = Chain.of(graph) if settings.chain else None
    # look ahead where a polytope has several rows or the case has one polytope
    # (see look_ahead)
    ahead = settings.lookahead > 1 and (len(rows.d) > rows.count or rows.count == 1)
    targets = Targets.from_polytopes(case.unsafe)
    root_width = case.region.upper - case.region.lower
    started = time.monotonic()
    attack_seconds = 0.0
    boxes = 0
    progress = Progress(ctx, "input splitting", "sub-boxes")
    while len(queue):
        progress.report(len(queue), float(queue.bound.min()), boxes)
        if ctx.out_of_time():
            return SplitOutcome(False, f"time ran out with {len(queue)} open sub-boxes "
                                       f"(input splitting, worst bound "
                                       f"{queue.bound.min():.4g})", boxes=boxes)
        if team is not None:
            news = team.poll(ctx, case_index, queue, time.monotonic() - started)
            if news is not None:
                return news
        if share is not None:
            share(queue)
        lower, upper, hint, known = queue.pop_worst(settings.batch)
        if search_case.constrained:
            lower, upper = search_case.restrict(lower, upper, lp_budget)
            hint = known = None  # boxes may have been dropped
        if not len(lower):
            continue
        if known is not None:  # bounded by look_ahead (and counted there)
            bound, margin, coef = known
        elif chain is not None:
            boxes += len(lower)
            found = chain_bounds(graph, chain, lower, upper, rows, hint,
                                 settings.crown, ctx.deadline)
            bound, margin, coef = found.lower, found.margin, found.coef
            hint = (found.pre_lower, found.pre_upper)
        else:
            boxes += len(lower)
            bound, margin, coef = box_bounds(graph, lower, upper, rows, settings.crown,
                                             ctx.deadline)
        if boxes == len(lower):
            record_root_margins(ctx.stats, margin)
        open_poly = rows.open_polytopes(bound, margin)
        keep = np.flatnonzero(open_poly.any(axis=1))
        if not len(keep):
            continue
        lower, upper, bound, open_poly = lower[keep], upper[keep], bound[keep], open_poly[keep]
        if hint is not None:
            hint = tuple(h[keep] for h in hint)
        coef = None if coef is None else coef[keep]
        points = candidate_points(rows, coef, bound, open_poly, lower, upper)
        reps = len(points) // len(lower)
        points = search_case.project(points, np.tile(lower, (reps, 1)),
                                     np.tile(upper, (reps, 1)))
        cex = replay(ctx, case_index, points, rows.margins_at(graph, points), 4, 1e-4)
        worst = rows.worst_open(bound, open_poly)
        if cex is None and attack_seconds < settings.attack_share * (time.monotonic() - started):
            tick = time.monotonic()
            chosen = np.argsort(worst)[:settings.attack_boxes]
            x, margins = _attack(ctx, targets, lower[chosen], upper[chosen],
                                 settings.attack_steps, search_case.project)
            cex = replay(ctx, case_index, x, margins, 8, 1e-4)
            attack_seconds += time.monotonic() - tick
        if cex is not None:
            ctx.stats["found_by"] = "input splitting"
            return SplitOutcome(False, "counterexample found during input splitting", cex,
                                boxes)
        if not (upper > lower).any(axis=1).all():
            return SplitOutcome(False, "a sub-box shrank to a single point that the bounds do "
                                       "not refute (within the decision margin) and that does "
                                       "not replay as a counterexample", boxes=boxes)
        dim = split_dimension(rows, bound, coef, open_poly, lower, upper, root_width)
        if chain is None or search_case.constrained:
            queue.push(*bisect(lower, upper, dim), np.concatenate([worst, worst]))
        elif ahead:
            children, known, bounded = look_ahead(graph, chain, rows, lower, upper, hint,
                                                  bound, coef, open_poly, dim, settings,
                                                  ctx.deadline)
            boxes += bounded
            queue.push(*children, known=known)
        else:
            queue.push(*bisect(lower, upper, dim), np.concatenate([worst, worst]),
                       tuple(np.concatenate([h, h]) for h in hint))
    return SplitOutcome(True, "proved by input splitting", boxes=boxes)


def _attack(ctx, targets, lower, upper, steps, project):
    """A short PGD inside the given sub-boxes (points mapped by ``project``, see
    :func:`verifier.search.attack.pgd`), against every polytope of the case:
    the points reached and their worst-row margins."""
    count = len(targets.C)
    which = np.tile(np.arange(count), len(lower))
    x, margin, _ = pgd(ctx.graph, np.repeat(lower, count, axis=0),
                       np.repeat(upper, count, axis=0), targets, which, steps=steps,
                       restarts=1, rng=ctx.rng, project=project)
    return x, margin
