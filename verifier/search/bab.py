"""Branch and bound: make the bound engine complete where it can be.

Two strategies, chosen from the problem:

* input splitting (few free inputs, e.g. acasxu's 5): a stack of sub-boxes,
  bounded many at a time by CROWN; a box is closed when every unsafe polytope
  of its case is refuted on it; others are split in two along the input with
  the largest |gradient| x width of their worst open row (a "smear" score),
  and their centres are tried as counterexamples.
* ReLU splitting (high-dimensional inputs): sub-problems are sets of ReLU
  phase constraints, bounded by alpha-CROWN with the constraints enforced
  (and the parent's intermediate bounds and slopes as warm starts); the
  branching neuron is the unstable ReLU with the largest triangle-relaxation
  area u*(-l)/(u-l) scaled by its back-substituted influence (a BaBSR-like
  score, Bunel et al. 2020), children take the two phases.

Linear input constraints ``A x <= b``: both strategies start from the case's
box tightened by LP to the constraints (:mod:`verifier.search.plan`), a
superset of the region, so bounds over it are a sound relaxation; input
splitting also drops sub-boxes that miss the constraints and shrinks the
others, ReLU splitting bounds over the tightened box only.

A sub-problem is refuted only through :func:`verifier.bounds.margin.refuted`,
each row against its own float32 margin computed on that sub-problem; every
box is first widened to its float32 hull (the inputs onnxruntime can see).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.engine import compute_bounds
from verifier.bounds.inputs import Box
from verifier.bounds.margin import decision_margins, refuted
from verifier.bounds.roundoff import float32_hull
from verifier.bounds.result import BoundOptions
from verifier.ir import evaluate, ops
from verifier.ir.grad import grad_input
from verifier.search.attack import Targets, pgd
from verifier.search.plan import LpBudget, search_plan
from verifier.verify import try_candidates


@dataclass
class Outcome:
    proved: bool
    reason: str
    counterexample: object = None


@dataclass(frozen=True)
class CaseRows:
    """All rows of a case's polytopes stacked: C (R, n_out), d (R,), owner (R,)."""

    C: np.ndarray
    d: np.ndarray
    owner: np.ndarray
    count: int

    @classmethod
    def of(cls, case):
        C = np.vstack([p.C for p in case.unsafe])
        d = np.concatenate([p.d for p in case.unsafe])
        owner = np.concatenate([np.full(p.rows, k) for k, p in enumerate(case.unsafe)])
        return cls(C, d, owner, len(case.unsafe))

    def open_polytopes(self, lower, margin):
        """(B, P) bool: polytopes not refuted by row lower bounds (B, R) given
        the rows' decision margins (B, R)."""
        row_refuted = refuted(lower, margin)
        closed = np.zeros((lower.shape[0], self.count), dtype=bool)
        for k in range(self.count):
            closed[:, k] = row_refuted[:, self.owner == k].any(axis=1)
        return ~closed

    def worst_margin(self, y):
        """(B,) min over polytopes of max over its rows of C y - d, and the row."""
        values = y @ self.C.T - self.d
        best = np.full(len(y), np.inf)
        row = np.zeros(len(y), dtype=int)
        for k in range(self.count):
            idx = np.flatnonzero(self.owner == k)
            worst = idx[values[:, idx].argmax(axis=1)]
            margin = values[np.arange(len(y)), worst]
            better = margin < best
            best[better], row[better] = margin[better], worst[better]
        return best, row


def prove(ctx) -> Outcome:
    """Prove every case of ``ctx.prop`` or find a counterexample.

    The cases are those of :func:`verifier.search.plan.search_plan`
    (empty regions and self-contradictory unsafe polytopes are already
    decided; boxes are tightened to the linear input constraints). The reason
    of a proof names what proved each case (input splitting, CROWN,
    alpha-CROWN, ReLU splitting).
    """
    plan = search_plan(ctx)
    if not plan.cases:
        return Outcome(True, plan.reason)
    for sc in plan.cases:
        if sc.unconstrained_output:
            return Outcome(False, f"case {sc.index}: every output is unsafe (a disjunct has "
                                  "no output constraint), but no float32 input of the input "
                                  "region passed the replay check")
    free = [int(((sc.case.region.upper - sc.case.region.lower) > 0).sum()) for sc in plan.cases]
    use_input_split = max(free) <= ctx.options.input_split_max_dim
    ctx.stats["strategy"] = ("input-split" if use_input_split
                             else "relu-split" if _relu_nodes(ctx.graph) else "bounds")
    total_domains = 0
    how = []
    for sc in plan.cases:
        if use_input_split:
            outcome, domains = _input_split(ctx, sc.index, sc)
        else:
            outcome, domains = _relu_split(ctx, sc.index, sc.case)
        total_domains += domains
        ctx.stats["domains"] = total_domains
        if not outcome.proved:
            return outcome
        method = outcome.reason.removeprefix("proved by ")
        if method not in how:
            how.append(method)
    ctx.stats["proved_by"] = how
    before = plan.reason
    return Outcome(True, f"all {len(ctx.prop.cases)} input region(s) proved "
                         f"({', '.join(how)}, {total_domains} sub-problems)"
                         + (f"; before the search: {before}" if before else ""))


def _input_split(ctx, case_index, search_case, batch_size=256):
    """Best-first input splitting: the open boxes with the lowest bound go first
    (they are the likeliest to hold a counterexample, and must be split anyway).

    With linear input constraints, sub-boxes that miss ``A x <= b`` are
    dropped and the others shrunk around their part of the region before
    they are bounded (:meth:`SearchCase.restrict`), and the points tried are
    projected into the region. A sub-box that shrinks to a single point and
    stays open ends the search (``unknown``): splitting it changes nothing."""
    graph = ctx.graph
    case = search_case.case
    lp_budget = LpBudget(0.1)
    rows = CaseRows.of(case)
    targets = Targets.from_polytopes(case.unsafe)
    stack_lower, stack_upper = (v[None] for v in float32_hull(case.region.lower,
                                                             case.region.upper))
    stack_bound = np.array([-np.inf])
    domains = 0
    while len(stack_lower):
        if ctx.out_of_time():
            return Outcome(False, f"time ran out with {len(stack_lower)} open sub-boxes "
                                  f"(input splitting, worst bound "
                                  f"{stack_bound.min():.4g})"), domains
        if len(stack_lower) > batch_size:
            pick = np.argpartition(stack_bound, batch_size)[:batch_size]
            rest = np.ones(len(stack_lower), dtype=bool)
            rest[pick] = False
        else:
            pick, rest = np.arange(len(stack_lower)), np.zeros(len(stack_lower), dtype=bool)
        lo, hi = stack_lower[pick], stack_upper[pick]
        stack_lower, stack_upper, stack_bound = \
            stack_lower[rest], stack_upper[rest], stack_bound[rest]
        lo, hi = search_case.restrict(lo, hi, lp_budget)
        if not len(lo):
            continue
        domains += len(lo)
        lower_bound, margin = _box_bounds(graph, lo, hi, rows, ctx.deadline)
        if domains == len(lo):
            _root_margins(ctx, margin)
        open_poly = rows.open_polytopes(lower_bound, margin)
        keep = open_poly.any(axis=1)
        if not keep.any():
            continue
        lo, hi, open_poly = lo[keep], hi[keep], open_poly[keep]
        bound = _worst_open(rows, lower_bound[keep], open_poly)
        # the box centres: counterexample candidates and where the split is scored
        centers = 0.5 * (lo + hi)
        points = search_case.project(centers, lo, hi)
        values = evaluate(graph, points.reshape((len(points),) + graph.input_shape),
                          all_values=True)
        y = values[graph.output].reshape(len(points), -1)
        cex = try_candidates(ctx, case_index, points, rows.worst_margin(y)[0], 4, 1e-4)
        if cex is None:
            worst_boxes = np.argsort(bound)[:16]
            cex = _attack_boxes(ctx, case_index, targets, lo[worst_boxes], hi[worst_boxes],
                                search_case.project)
        if cex is not None:
            ctx.stats["found_by"] = "input splitting"
            return Outcome(False, "counterexample found during input splitting", cex), domains
        if not (hi > lo).any(axis=1).all():
            return Outcome(False, "a sub-box shrank to a single point that the bounds do not "
                                  "refute (within the decision margin) and that does not "
                                  "replay as a counterexample"), domains
        # smear score: |d worst-open-row / dx| * width at the box centre
        row_values = y @ rows.C.T - rows.d
        row_values[~open_poly[:, rows.owner]] = -np.inf
        worst = row_values.argmax(axis=1)
        cot = rows.C[worst].reshape(values[graph.output].shape)
        grad = np.abs(grad_input(graph, values, cot).reshape(len(centers), -1))
        width = hi - lo
        score = (grad + 1e-12) * width
        score[width <= 0] = -1.0
        dim = score.argmax(axis=1)
        mid = centers[np.arange(len(lo)), dim]
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[np.arange(len(lo)), dim] = mid
        right_lo[np.arange(len(lo)), dim] = mid
        stack_lower = np.vstack([stack_lower, lo, right_lo])
        stack_upper = np.vstack([stack_upper, left_hi, hi])
        stack_bound = np.concatenate([stack_bound, bound, bound])
    return Outcome(True, "proved by input splitting"), domains


_RECOMPUTE = BoundOptions(recompute_intermediate=True)


def _box_bounds(graph, lo, hi, rows, deadline=None):
    """Lower bounds (B, R) of the case's rows on boxes and the rows' decision
    margins there: forward symbolic bounds first (cheap with few inputs), the
    margins from IBP tightened by their intermediate bounds; the boxes they
    leave open get CROWN (stopped at ``deadline`` with the sound bounds
    reached), which also recomputes the intermediate bounds and keeps the
    tighter of its own and the forward ones."""
    from verifier.bounds.forward import output_lower

    forward = output_lower(graph, lo, hi, rows.C, rows.d)
    if forward is None:
        crown = compute_bounds(graph, Box(lo, hi), method="crown", C=rows.C, d=rows.d,
                               upper=False, deadline=deadline)
        return crown.lower, _margins(graph, crown, rows)
    lower, intervals = forward
    ibp = compute_bounds(graph, Box(lo, hi), method="ibp", C=rows.C, d=rows.d, upper=False,
                         intermediate=intervals)
    margin = _margins(graph, ibp, rows)
    still = np.flatnonzero(rows.open_polytopes(lower, margin).any(axis=1))
    if len(still):
        crown = compute_bounds(graph, Box(lo[still], hi[still]), method="crown", C=rows.C,
                               d=rows.d, upper=False,
                               intermediate={k: v.take(still) for k, v in intervals.items()},
                               options=_RECOMPUTE, deadline=deadline)
        lower[still] = np.maximum(lower[still], crown.lower)
        margin[still] = np.minimum(margin[still], _margins(graph, crown, rows))
    return lower, margin


def _margins(graph, result, rows):
    """(B, R) decision margins of the case's rows from a bound result's node bounds."""
    return decision_margins(graph, result.node_bounds, rows.C, rows.d)


def _root_margins(ctx, margin):
    """Record the largest and median row margins of the root (first case's) in the stats."""
    if "margin_max" not in ctx.stats:
        ctx.stats["margin_max"] = float(margin.max())
        ctx.stats["margin_median"] = float(np.median(margin))
    return margin


def _attack_boxes(ctx, case_index, targets, lower, upper, project, steps=20):
    """A short PGD inside the given sub-boxes (points mapped by ``project``, see
    :func:`verifier.search.attack.pgd`), against every polytope of the case."""
    count = len(targets.C)
    lo = np.repeat(lower, count, axis=0)
    hi = np.repeat(upper, count, axis=0)
    which = np.tile(np.arange(count), len(lower))
    x, margin, _ = pgd(ctx.graph, lo, hi, targets, which, steps=steps, restarts=1,
                       rng=ctx.rng, project=project)
    return try_candidates(ctx, case_index, x, margin, 8, 1e-4)


# ---------------------------------------------------------------- ReLU splitting


def _relu_nodes(graph):
    return [i for i, n in enumerate(graph.nodes) if isinstance(n, ops.Relu)]


def _relu_split(ctx, case_index, case, max_batch=64):
    graph = ctx.graph
    rows = CaseRows.of(case)
    region = case.region
    relus = _relu_nodes(graph)
    hull = float32_hull(region.lower, region.upper)
    box = Box(hull[0][None], hull[1][None])
    options = BoundOptions()
    started = time.monotonic()
    first = compute_bounds(graph, box, method="crown", C=rows.C, d=rows.d, upper=False,
                           options=options, deadline=ctx.deadline)
    margin = _root_margins(ctx, _margins(graph, first, rows))
    if not rows.open_polytopes(first.lower, margin).any():
        return Outcome(True, "proved by CROWN"), 1
    if ctx.out_of_time():
        return Outcome(False, "time ran out after CROWN"), 1
    crown_seconds = time.monotonic() - started
    if crown_seconds * 8 > ctx.time_left():
        return Outcome(False, "too little time left for alpha-CROWN "
                              f"(CROWN alone took {crown_seconds:.2f} s)"), 1
    # alpha-CROWN also optimises the intermediate bounds here (recomputed, not
    # reused from CROWN): the children reuse these tighter tables
    root = compute_bounds(graph, box, method="alpha-crown", C=rows.C, d=rows.d, upper=False,
                          intermediate=first.pre_activation,
                          options=BoundOptions(recompute_intermediate=True),
                          deadline=ctx.deadline)
    if not rows.open_polytopes(root.lower, _margins(graph, root, rows)).any():
        return Outcome(True, "proved by alpha-CROWN"), 1
    if not relus:
        return Outcome(False, "bounds are not tight enough and the network has no ReLU "
                              "to split"), 1
    per_domain = (time.monotonic() - started) / 2  # a child costs about a root pass
    root = _refine_root(ctx, box, rows, root)
    if not rows.open_polytopes(root.lower, _margins(graph, root, rows)).any():
        return Outcome(True, "proved by alpha-CROWN over LP/MILP-refined intermediate "
                             "bounds"), 1
    domains = [_Domain({k: np.zeros(graph.nodes[graph.nodes[k].inputs[0]].size, np.int8)
                        for k in relus},
                       dict(root.pre_activation), root.alpha,
                       float(_worst_open(rows, root.lower)[0]),
                       {k: v[0] for k, v in root.split_scores.items()})]
    explored = 1
    child_options = BoundOptions(alpha_iterations=10)
    progress = _Progress(ctx)
    while domains:
        progress.report(domains, explored)
        left = ctx.time_left()
        if left <= 0:
            worst = min(d.bound for d in domains)
            return Outcome(False, f"time ran out with {len(domains)} open sub-problems "
                                  f"(worst bound {worst:.4g}, ReLU splitting)"), explored
        # size the batch so that one bound call uses at most a fifth of the time left
        pairs = int(max(1, min(max_batch // 2, 0.2 * left / max(2 * per_domain, 1e-6))))
        domains.sort(key=lambda dom: dom.bound)  # worst first
        batch, domains = domains[:pairs], domains[pairs:]
        children = []
        for dom in batch:
            choice = _branch(graph, dom, relus)
            if choice is None:
                continue  # every ReLU stable and still open: nothing to split
            node, neuron = choice
            for phase in (-1, 1):
                splits = {k: v.copy() for k, v in dom.splits.items()}
                splits[node][neuron] = phase
                children.append(_Domain(splits, dom.intermediate, dom.alpha, dom.bound,
                                        dom.scores))
        if not children:
            return Outcome(False, "open sub-problems with every ReLU fixed: the relaxation "
                                  "of the other ops is not exact"), explored
        explored += len(children)
        n = len(children)
        tick = time.monotonic()
        result = compute_bounds(
            graph, Box(np.repeat(hull[0][None], n, 0), np.repeat(hull[1][None], n, 0)),
            method="alpha-crown", C=rows.C, d=rows.d, upper=False,
            splits={k: np.stack([c.splits[k] for c in children]) for k in relus},
            intermediate=_stack_intervals([c.intermediate for c in children]),
            alpha=_stack_alpha([c.alpha for c in children]), options=child_options,
            deadline=ctx.deadline)
        per_domain = 0.5 * per_domain + 0.5 * (time.monotonic() - tick) / n
        open_poly = rows.open_polytopes(result.lower, _margins(graph, result, rows))
        if result.infeasible is not None:
            open_poly[result.infeasible] = False
        still = np.flatnonzero(open_poly.any(axis=1))
        bounds = _worst_open(rows, result.lower, open_poly)
        for j in still:
            domains.append(_Domain(
                children[j].splits,
                {k: v.take(slice(j, j + 1)) for k, v in result.pre_activation.items()},
                _take_alpha(result.alpha, j), float(bounds[j]),
                {k: v[j] for k, v in result.split_scores.items()}))
    return Outcome(True, "proved by ReLU splitting"), explored


#: share of the time left that LP/MILP refinement of the root's intermediate
#: bounds may take, and the ReLUs per earlier layer encoded exactly (0/1) there.
#: Off by default: on mnist_fc (benchmarks/bench_bab.py, 2-core CPU) it lifts
#: the root bound (256x2 rows 11 and 14 at eps 0.05 proved at the root) but
#: each HiGHS MILP takes ~1-2 s, so no row is solved that was not, and rows get
#: slower (256x2: median 2.0 -> 5.6 s; 256x4: 0/4 either way at 30 s).
LP_SHARE = 0.0
LP_BINARIES = 32


def _refine_root(ctx, box, rows, root):
    """For a ReLU MLP chain, the root's hidden pre-activation bounds refined by
    LP/MILP (:mod:`verifier.bounds.lp_refine`, highest split score first, within
    ``LP_SHARE`` of the time left), then alpha-CROWN again over them; the
    refined table is what the children start from. Returns the better root."""
    from verifier.bounds.lp_refine import mlp_layers, refine

    graph = ctx.graph
    if LP_SHARE <= 0 or mlp_layers(graph) is None:
        return root
    tick = time.monotonic()
    scores = {k: v[0] for k, v in root.split_scores.items()}
    table, stats = refine(graph, box.lower[0], box.upper[0], root.pre_activation, scores,
                          deadline=tick + LP_SHARE * ctx.time_left(), binary=LP_BINARIES)
    again = compute_bounds(graph, box, method="alpha-crown", C=rows.C, d=rows.d, upper=False,
                           intermediate=table, alpha=root.alpha,
                           options=BoundOptions(recompute_intermediate=True),
                           deadline=ctx.deadline)
    before = float(_worst_open(rows, root.lower)[0])
    after = float(_worst_open(rows, again.lower)[0])
    stats = dict(stats, seconds=round(time.monotonic() - tick, 3), root_before=before,
                 root_after=after)
    ctx.stats["lp_refine"] = stats
    ctx.log(f"LP/MILP refinement: {stats['lps']} problems, {stats['refined']} bounds "
            f"tightened, {stats['stabilised']} ReLUs stabilised in {stats['seconds']} s; "
            f"root bound {before:.6g} -> {after:.6g}")
    return again if after >= before else root


PROGRESS_SECONDS = 3.0  # seconds between two progress lines of ReLU splitting (``-v``)


class _Progress:
    """One ``ctx.log`` line every :data:`PROGRESS_SECONDS` during ReLU splitting:
    open sub-problems, the global lower bound (the worst open bound) and the
    sub-problems bounded per second since the previous line."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.last = time.monotonic()
        self.last_explored = 1

    def report(self, domains, explored):
        if not self.ctx.options.verbose:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS:
            return
        rate = (explored - self.last_explored) / max(now - self.last, 1e-9)
        worst = min((d.bound for d in domains), default=float("inf"))
        self.ctx.log(f"ReLU splitting: {len(domains)} open sub-problems, global lower "
                     f"bound {worst:.6g}, {rate:.1f} sub-problems/s ({explored} bounded)")
        self.last, self.last_explored = now, explored


def _stack_alpha(tables):
    if any(t is None for t in tables):
        return None
    return {node: {side: np.concatenate([t[node][side] for t in tables])
                   for side in tables[0][node]} for node in tables[0]}


def _take_alpha(table, j):
    if table is None:
        return None
    return {node: {side: value[j:j + 1] for side, value in sides.items()}
            for node, sides in table.items()}


@dataclass
class _Domain:
    splits: dict
    intermediate: dict
    alpha: object
    bound: float
    scores: dict = None  # Relu node -> (n,) BaBSR-style split scores


def _worst_open(rows, lower, open_poly=None):
    """Per element, the smallest 'best row' lower bound over open polytopes."""
    best = np.full((lower.shape[0], rows.count), np.inf)
    for k in range(rows.count):
        best[:, k] = lower[:, rows.owner == k].max(axis=1)
    if open_poly is not None:
        best[~open_poly] = np.inf
    return best.min(axis=1)


def _stack_intervals(tables):
    from verifier.bounds.result import Interval

    keys = tables[0].keys()
    return {k: Interval(np.vstack([t[k].lower for t in tables]),
                        np.vstack([t[k].upper for t in tables])) for k in keys}


def _branch(graph, dom, relus):
    """The free unstable ReLU with the best split score: the bound the CROWN
    pass lost to its relaxation (BaBSR-like, from the bound engine); the
    triangle area u*(-l)/(u-l) breaks ties and stands in where no score is known."""
    best, choice = -np.inf, None
    for k in relus:
        interval = dom.intermediate[k]
        lower, upper = interval.lower[0], interval.upper[0]
        free = (dom.splits[k] == 0) & (lower < 0) & (upper > 0)
        if not free.any():
            continue
        area = upper * -lower / np.maximum(upper - lower, 1e-12)
        score = area * 1e-6
        if dom.scores and k in dom.scores:
            score = score + dom.scores[k]
        score = np.where(free, score, -np.inf)
        j = int(score.argmax())
        if score[j] > best:
            best, choice = float(score[j]), (k, j)
    return choice
