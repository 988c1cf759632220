"""Branch and bound: make the bound engine complete where it can be.

Two strategies, chosen from the problem:

* input splitting (few free inputs, e.g. acasxu's 5): a queue of sub-boxes
  bounded thousands at a time (forward symbolic bounds, then CROWN on the
  open ones), split along the input with the largest |coefficient| x width
  of their worst open row; see :mod:`verifier.search.input_split`.
* ReLU splitting (high-dimensional inputs): sub-problems are sets of ReLU
  phase constraints, bounded by alpha-CROWN with the constraints enforced
  (beta-CROWN's multipliers), warm-started from the parent's slopes and
  multipliers; their intermediate bounds are the parent's intersected with a
  CROWN pass under the child's own splits (for the layers after its newest
  split; those before it keep the parent's). A child bounds only the rows of
  the polytopes its parent left open and keeps the parent's row bounds where
  tighter. The branching neuron: the unstable ReLUs with the best BaBSR-like
  scores (the bound the CROWN pass lost to each relaxation, Bunel et al.
  2020), optionally the best few tried by one cheap bound pass each, the one
  whose worse child is best split (filtered smart branching, De Palma et al.
  2021; :data:`FSB_CANDIDATES`). The
  inputs minimising the sub-problems' CROWN bounds are replayed as
  counterexample candidates.
* Sigmoid/tanh splitting (the same loop; GenBaB, Shi et al., "Neural Network
  Verification with Branch-and-Bound for General Nonlinearities", 2024): a
  sub-problem is also a set of pre-activation intervals ``[l, u]`` of Sigmoid
  and Tanh neurons, its parent's with one neuron's interval cut in the
  middle. The cut is only a clamp of the intermediate bounds passed to the
  engine: the neuron's relaxation is rebuilt on the narrower interval, the
  later intermediate bounds are recomputed by CROWN under it, and no
  multiplier is needed (every input lies in one child, where its
  pre-activation is in the clamped interval; a child whose recomputed bounds
  cross its clamp is empty). The neuron: the best score of the engine's
  CROWN pass, the mean gap between each neuron's relaxation and the function
  over its interval times its coefficient's magnitude (neurons narrower than
  :data:`MIN_SPLIT_WIDTH` are left alone). Networks with sigmoid/tanh
  neurons and no ReLU first get one longer alpha-CROWN pass at the root
  (:data:`ROOT_SHARE`).

Linear input constraints ``A x <= b``: both strategies start from the case's
box tightened by LP to the constraints (:mod:`verifier.search.plan`), a
superset of the region, so bounds over it are a sound relaxation; input
splitting also drops sub-boxes that miss the constraints and shrinks the
others, ReLU splitting bounds over the tightened box only.

A sub-problem is refuted only through :func:`verifier.bounds.margin.refuted`,
each row against its own float32 margin computed on that sub-problem; every
box is first widened to its float32 hull (the inputs onnxruntime can see).
ReLU (and sigmoid/tanh) splitting bounds the float32 network itself
(``BoundOptions(float32=True)``, every graph without Softmax): its splits
are about the float32 pre-activations (a ReLU's sign, a sigmoid's interval
``z32 <= s`` or ``z32 >= s``), which partition the float32 inputs as the
real ones partition the real inputs, and its margins are the comparison
floor only.
(Splits about real pre-activations would leave the float32 bound unable to
use them: ``z >= 0`` only gives ``z32 >= -e``, with ``e`` the forward error
bound, thousands on deep networks.)
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.engine import SMOOTH_SPLIT, compute_bounds, concatenate, float32_supported
from verifier.bounds.inputs import Box
from verifier.bounds.roundoff import float32_hull
from verifier.bounds.result import BoundOptions, Interval
from verifier.ir import ops
from verifier.search.plan import search_plan
from verifier.search.progress import Progress
from verifier.search.rows import CaseRows, record_root_margins


@dataclass
class Outcome:
    proved: bool
    reason: str
    counterexample: object = None


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
                             else "relu-split" if _relu_nodes(ctx.graph)
                             else "activation-split" if _smooth_nodes(ctx.graph) else "bounds")
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


def _input_split(ctx, case_index, search_case):
    """Input splitting (:mod:`verifier.search.input_split`)."""
    from verifier.search.input_split import search

    result = search(ctx, case_index, search_case)
    return Outcome(result.proved, result.reason, result.counterexample), result.boxes


# ---------------------------------------------------------------- ReLU splitting


def _relu_nodes(graph):
    return [i for i, n in enumerate(graph.nodes) if isinstance(n, ops.Relu)]


def _smooth_nodes(graph):
    """The Sigmoid/Tanh nodes, whose neurons are split by their input interval."""
    return [i for i, n in enumerate(graph.nodes) if isinstance(n, SMOOTH_SPLIT)]


def _relu_split(ctx, case_index, case, max_batch=64):
    graph = ctx.graph
    rows = CaseRows.of(case)
    region = case.region
    relus = _relu_nodes(graph)
    smooth = _smooth_nodes(graph)
    name = "activation splitting" if smooth else "ReLU splitting"
    hull = float32_hull(region.lower, region.upper)
    box = Box(hull[0][None], hull[1][None])
    # the bounds are about the float32 network itself (splits on float32
    # pre-activations, no gap in the margins) where the engine supports it
    f32 = float32_supported(graph)
    started = time.monotonic()
    first = compute_bounds(graph, box, method="crown", C=rows.C, d=rows.d, upper=False,
                           options=BoundOptions(float32=f32), deadline=ctx.deadline)
    margin = record_root_margins(ctx.stats, rows.margins(graph, first.node_bounds,
                                                         first.lower, float32=f32))
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
    tick = time.monotonic()
    root = compute_bounds(graph, box, method="alpha-crown", C=rows.C, d=rows.d, upper=False,
                          intermediate=first.pre_activation,
                          options=BoundOptions(recompute_intermediate=True, float32=f32),
                          deadline=ctx.deadline)
    alpha_seconds = time.monotonic() - tick
    root_open = rows.open_polytopes(root.lower, rows.margins(graph, root.node_bounds,
                                                             root.lower, float32=f32))
    if not root_open.any():
        return Outcome(True, "proved by alpha-CROWN"), 1
    if not relus and not smooth:
        return Outcome(False, "bounds are not tight enough and the network has no ReLU, "
                              "sigmoid or tanh to split"), 1
    from verifier.search.milp import applies, prove_case  # small ReLU MLPs: exact MILP

    if applies(graph, rows):
        # the MILP encodes the real-valued network: real bounds for its big-M
        # constants, and margins with the float32 gap
        real = root if not f32 else compute_bounds(
            graph, box, method="alpha-crown", C=rows.C, d=rows.d, upper=False,
            options=BoundOptions(recompute_intermediate=True), deadline=ctx.deadline)
        decided = prove_case(ctx, case_index, box, rows, real,
                             rows.margins(graph, real.node_bounds, real.lower))
    else:
        decided = None
    if decided is not None:
        return decided, 1
    per_domain = (time.monotonic() - started) / 2  # a child costs about a root pass
    refined = _refine_root(ctx, box, rows, root, f32)
    if refined is not root:
        root = refined
        root_open = rows.open_polytopes(root.lower, rows.margins(
            graph, root.node_bounds, root.lower, float32=f32))
        if not root_open.any():
            return Outcome(True, "proved by alpha-CROWN over LP/MILP-refined intermediate "
                                 "bounds"), 1
    if smooth and not relus:
        root, root_open, iterations = _longer_root_pass(ctx, box, rows, root, root_open,
                                                        f32, alpha_seconds)
        if not root_open.any():
            return Outcome(True, f"proved by alpha-CROWN ({iterations} iterations)"), 1
    root_lower = root.lower[0]
    root_rows = _open_rows(rows, root_open[0])
    domains = [_Domain({k: np.zeros(graph.nodes[graph.nodes[k].inputs[0]].size, np.int8)
                        for k in relus},
                       dict(root.pre_activation), _take_alpha(root.alpha, 0, root_rows),
                       float(rows.worst_open(root.lower)[0]),
                       {k: v[0, root_rows] for k, v in root.split_scores.items()},
                       root_rows, root_lower)]
    explored = 1
    child_options = BoundOptions(alpha_iterations=10, float32=f32,
                                 recompute_intermediate=CHILD_CROWN_INTERMEDIATE,
                                 alpha_intermediate=False)
    progress = Progress(ctx, name, "sub-problems")
    while domains:
        progress.report(len(domains), min(d.bound for d in domains), explored)
        left = ctx.time_left()
        if left <= 0:
            worst = min(d.bound for d in domains)
            return Outcome(False, f"time ran out with {len(domains)} open sub-problems "
                                  f"(worst bound {worst:.4g}, {name})"), explored
        # size the batch so that one bound call uses at most a fifth of the time left
        pairs = int(max(1, min(max_batch // 2, 0.2 * left / max(2 * per_domain, 1e-6))))
        domains.sort(key=lambda dom: dom.bound)  # worst first
        batch, domains = domains[:pairs], domains[pairs:]
        tick = time.monotonic()  # the branching's bound pass counts in the time per child
        children = []
        for dom, choice in zip(batch, _choose(ctx, batch, relus, smooth, rows, hull, f32)):
            if choice is None:
                continue  # every neuron stable (or too narrow) and still open
            children += _children(graph, dom, *choice)
        if not children:
            return Outcome(False, "open sub-problems with every ReLU fixed and every "
                                  "sigmoid/tanh interval narrow: the relaxation of the "
                                  "other ops is not exact"), explored
        explored += len(children)
        n = len(children)
        children.sort(key=lambda c: -1 if c.newest is None else c.newest)
        result, index = _bound_batch(graph, children, relus, rows, hull, child_options,
                                     ctx.deadline)
        per_domain = 0.5 * per_domain + 0.5 * (time.monotonic() - tick) / n
        lower = _scatter_rows(result.lower, index, len(rows.d),
                              np.stack([c.lower for c in children]))
        open_poly = rows.open_polytopes(lower, rows.margins(
            graph, result.node_bounds, lower, float32=f32))
        if result.infeasible is not None:
            open_poly[result.infeasible] = False
        still = np.flatnonzero(open_poly.any(axis=1))
        cex = _try_points(ctx, case_index, rows, result.points, still)
        if cex is not None:
            return Outcome(False, f"counterexample found by {name} (at the "
                                  "minimiser of a sub-problem's CROWN bound)", cex), explored
        bounds = rows.worst_open(lower, open_poly)
        for j in still:
            kept = _open_rows(rows, open_poly[j])
            where = np.searchsorted(children[j].rows, kept)
            domains.append(_Domain(
                children[j].splits,
                {k: v.take(slice(j, j + 1)) for k, v in result.pre_activation.items()},
                _take_alpha(result.alpha, j, where), float(bounds[j]),
                {k: v[j, where] for k, v in result.split_scores.items()}, kept, lower[j],
                _take_alpha(result.beta, j, where)))
    return Outcome(True, f"proved by {name}"), explored


#: children recompute their intermediate bounds by CROWN under their split
#: constraints (intersected with the parent's), instead of reusing the parent's
CHILD_CROWN_INTERMEDIATE = True

#: share of the time left that LP/MILP refinement of the root's intermediate
#: bounds may take, and the ReLUs per earlier layer encoded exactly (0/1) there.
#: Off by default: on mnist_fc (benchmarks/bench_bab.py, 2-core CPU) it lifts
#: the root bound (256x2 rows 11 and 14 at eps 0.05 proved at the root) but
#: each HiGHS MILP takes ~1-2 s, so no row is solved that was not, and rows get
#: slower (256x2: median 2.0 -> 5.6 s; 256x4: 0/4 either way at 30 s).
LP_SHARE = 0.0
LP_BINARIES = 32


def _refine_root(ctx, box, rows, root, f32):
    """For a ReLU MLP chain, the root's hidden pre-activation bounds refined by
    LP/MILP (:mod:`verifier.bounds.lp_refine`, highest split score first, within
    ``LP_SHARE`` of the time left), then alpha-CROWN again over them; the
    refined table is what the children start from. Returns the better root.

    The LP bounds the real-valued network; with float32 bounds (``f32``) its
    table starts from a real-valued CROWN pass and is widened by the float32
    error bound of each pre-activation before it meets the float bounds."""
    from verifier.bounds.lp_refine import mlp_layers, refine
    from verifier.bounds.roundoff import node_errors

    graph = ctx.graph
    if LP_SHARE <= 0 or mlp_layers(graph) is None:
        return root
    tick = time.monotonic()
    scores = {k: v[0].sum(axis=0) for k, v in root.split_scores.items()}
    real = compute_bounds(graph, box, method="crown", C=rows.C, d=rows.d, upper=False,
                          deadline=ctx.deadline) if f32 else root
    table, stats = refine(graph, box.lower[0], box.upper[0], real.pre_activation, scores,
                          deadline=tick + LP_SHARE * ctx.time_left(), binary=LP_BINARIES)
    if f32:
        errors = node_errors(graph, real.node_bounds)
        floats = root.pre_activation
        table = {k: Interval(np.maximum(v.lower - errors[graph.nodes[k].inputs[0]],
                                        floats[k].lower),
                             np.minimum(v.upper + errors[graph.nodes[k].inputs[0]],
                                        floats[k].upper))
                 for k, v in table.items()}
    again = compute_bounds(graph, box, method="alpha-crown", C=rows.C, d=rows.d, upper=False,
                           intermediate=table, alpha=root.alpha,
                           options=BoundOptions(recompute_intermediate=True, float32=f32),
                           deadline=ctx.deadline)
    before = float(rows.worst_open(root.lower)[0])
    after = float(rows.worst_open(again.lower)[0])
    stats = dict(stats, seconds=round(time.monotonic() - tick, 3), root_before=before,
                 root_after=after)
    ctx.stats["lp_refine"] = stats
    ctx.log(f"LP/MILP refinement: {stats['lps']} problems, {stats['refined']} bounds "
            f"tightened, {stats['stabilised']} ReLUs stabilised in {stats['seconds']} s; "
            f"root bound {before:.6g} -> {after:.6g}")
    return again if after >= before else root


#: sigmoid/tanh networks: the root's alpha-CROWN is run once more with as many
#: iterations (at most ROOT_MAX_ITERATIONS) as fit in ROOT_SHARE of the time
#: left, judged by the first pass's time per iteration, starting from its
#: intermediate bounds and slopes; splitting goes on from that pass. On eran's
#: 6x200 sigmoid MLP the bounds keep rising with the iterations (row
#: mnist_spec_idx_1211: worst row -1.18 after 20 iterations, +0.31 after 60),
#: faster than splitting gains: on row 9044 at 75 s (2-core CPU, shared), a
#: share of 0.6 ended at worst bound -0.69 (root pass -2.28 -> -0.75, then 243
#: sub-problems), 0.85 at -0.55 (root -> -0.64, then 623 sub-problems).
ROOT_SHARE = 0.85
ROOT_MAX_ITERATIONS = 400


def _longer_root_pass(ctx, box, rows, root, root_open, f32, seconds):
    """One longer alpha-CROWN pass at the root (see :data:`ROOT_SHARE`;
    ``seconds``: what the first 20-iteration pass took): every intermediate
    bound recomputed and re-optimised, intersected with the first pass's;
    each row keeps its better bound. Returns the result (with those row
    bounds), its open polytopes and the iterations (0: no pass)."""
    graph = ctx.graph
    iterations = int(min(ROOT_MAX_ITERATIONS, 20 * ROOT_SHARE * ctx.time_left()
                         / max(seconds, 1e-6)))
    if iterations <= 20:
        return root, root_open, 0
    tick = time.monotonic()
    work = BoundOptions().max_alpha_work  # the intermediate nodes the first pass optimised
    again = compute_bounds(graph, box, method="alpha-crown", C=rows.C, d=rows.d,
                           upper=False, intermediate=root.pre_activation, alpha=root.alpha,
                           options=BoundOptions(recompute_intermediate=True, float32=f32,
                                                alpha_iterations=iterations,
                                                max_alpha_work=work * iterations / 20),
                           deadline=ctx.deadline)
    before = float(rows.worst_open(root.lower, root_open)[0])
    lower = np.maximum(root.lower, again.lower)
    root = dataclasses.replace(again, lower=lower)
    root_open = rows.open_polytopes(lower, rows.margins(graph, again.node_bounds, lower,
                                                        float32=f32))
    after = float(rows.worst_open(lower, root_open)[0])
    ctx.log(f"alpha-CROWN with {iterations} iterations: worst open bound {before:.6g} -> "
            f"{after:.6g} in {time.monotonic() - tick:.2f} s")
    ctx.stats["root_iterations"] = iterations
    return root, root_open, iterations


def _bound_batch(graph, domains, relus, rows, hull, options, deadline):
    """Bound a batch of sub-problems (alpha-CROWN with their splits, their
    parents' intermediate bounds, slopes and multipliers as warm starts), each
    on the rows of its parent's open polytopes only (padded to the batch's
    widest by repeating them). Returns the result and the ``(n, k)`` rows bounded."""
    width = max(len(c.rows) for c in domains)
    index = np.stack([np.resize(c.rows, width) for c in domains])
    padded = [np.resize(np.arange(len(c.rows)), width) for c in domains]

    def bound(part):
        group = [domains[j] for j in part]
        used = options
        if options.recompute_intermediate:
            used = dataclasses.replace(options, keep_intermediate=_unchanged(graph, group))
        return compute_bounds(
            graph, Box(np.repeat(hull[0][None], len(part), 0),
                       np.repeat(hull[1][None], len(part), 0)),
            method="alpha-crown", C=rows.C[index[part]], d=rows.d[index[part]], upper=False,
            splits={k: np.stack([c.splits[k] for c in group]) for k in relus},
            intermediate=_stack_intervals([c.intermediate for c in group]),
            alpha=_stack_alpha([_take_alpha(domains[j].alpha, 0, padded[j]) for j in part]),
            beta=_stack_alpha([_take_alpha(domains[j].beta, 0, padded[j]) for j in part]),
            options=used, deadline=deadline)

    if not options.recompute_intermediate:
        return bound(np.arange(len(domains))), index
    return concatenate([bound(part) for part in _groups(domains)]), index


#: children recomputing their intermediate bounds are bounded in groups of
#: the same newest split node (the layers before it are kept, see
#: :func:`_unchanged`); a group smaller than this joins the next one
MIN_GROUP = 8


def _groups(domains):
    """Index arrays of consecutive domains (sorted by newest split node, as
    :func:`_relu_split` orders a batch's children) with the same newest split
    node, each group at least :data:`MIN_GROUP` long where it can be."""
    groups, start = [], 0
    for j in range(1, len(domains) + 1):
        if j == len(domains) or (domains[j].newest != domains[j - 1].newest
                                 and j - start >= MIN_GROUP):
            groups.append(np.arange(start, j))
            start = j
    if len(groups) > 1 and len(groups[-1]) < MIN_GROUP:
        groups[-2:] = [np.concatenate(groups[-2:])]
    return groups


def _unchanged(graph, domains):
    """The nonlinear nodes whose input bounds no domain's newest split can
    change: their input does not depend on any newest split neuron's node.
    The parent's bounds there were computed under the same splits (all the
    others lie in the parent too), so a child need not recompute them; on
    eran's 9x200 MLP the recomputation was 27 of 35 s of a ReLU-split run."""
    from verifier.bounds.prepare import prepare

    newest = {dom.newest for dom in domains}
    if None in newest:
        return frozenset()
    prep = prepare(graph)
    return frozenset(k for k, node in enumerate(graph.nodes) if prep.nonlinear[k]
                     and newest.isdisjoint(prep.cone(node.inputs[0])))


#: filtered smart branching: the split score's best this many candidates per
#: sub-problem are tried by one bound pass each (both phases, the parent's
#: slopes and multipliers, no optimisation); the one whose worse child bound
#: is best is split (1: the split score alone). Off: with 4 candidates, two hard
#: mnist_fc rows (256x4 prop_11_0.05, 256x6 prop_7_0.03, run side by side on a
#: 2-core CPU) took 509 and 203 sub-problems instead of 855 and 255, but the
#: same time (17.8 and 9.1 s against 17.5 and 8.7 s): the trial passes cost
#: what the smaller tree saves.
FSB_CANDIDATES = 1


def _choose(ctx, batch, relus, smooth, rows, hull, f32):
    """Per sub-problem of ``batch``, the neuron ``(node, neuron)`` to split, or
    None when every ReLU is stable or split and every sigmoid/tanh interval
    narrower than :data:`MIN_SPLIT_WIDTH` (see :data:`FSB_CANDIDATES`)."""
    lists = [_candidates(dom, relus, smooth, FSB_CANDIDATES, _focus(dom, rows))
             for dom in batch]
    if all(len(c) <= 1 for c in lists):
        return [c[0] if c else None for c in lists]
    trial = []
    for dom, cands in zip(batch, lists):
        for node, neuron in cands:
            trial += _children(ctx.graph, dom, node, neuron)
    result, index = _bound_batch(ctx.graph, trial, relus, rows, hull,
                                 BoundOptions(alpha_iterations=0, float32=f32), ctx.deadline)
    lower = _scatter_rows(result.lower, index, len(rows.d), np.stack([t.lower for t in trial]))
    worse = rows.worst_open(lower).reshape(-1, 2).min(axis=1)  # per candidate
    choices, start = [], 0
    for cands in lists:
        if not cands:
            choices.append(None)
            continue
        choices.append(cands[int(np.argmax(worse[start:start + len(cands)]))])
        start += len(cands)
    return choices


def _try_points(ctx, case_index, rows, points, which):
    """Replay the most promising of the CROWN minimisers ``points`` ``(n, k, n_in)``
    of the sub-problems ``which`` (still open): the first counterexample, or None."""
    from verifier.verify import try_candidates

    if points is None or not len(which):
        return None
    x = points[which].reshape(-1, points.shape[-1])
    return try_candidates(ctx, case_index, x, rows.margins_at(ctx.graph, x))


def _children(graph, dom, node, neuron):
    """The two sub-problems of ``dom`` with ReLU ``neuron`` of ``node`` inactive
    (-1) and active (+1), or with the input interval ``[l, u]`` of sigmoid/tanh
    ``neuron`` cut in the middle ``s`` into ``[l, s]`` and ``[s, u]`` (GenBaB,
    Shi et al., "Neural Network Verification with Branch-and-Bound for General
    Nonlinearities", 2024); they start from the parent's tables and bounds."""
    if not isinstance(graph.nodes[node], ops.Relu):
        interval = dom.intermediate[node]
        low, high = interval.lower[0, neuron], interval.upper[0, neuron]
        cut = 0.5 * (low + high)
        out = []
        for lower, upper in ((low, cut), (cut, high)):
            table = dict(dom.intermediate)
            bounds = Interval(interval.lower.copy(), interval.upper.copy())
            bounds.lower[0, neuron], bounds.upper[0, neuron] = lower, upper
            table[node] = bounds
            out.append(_Domain(dom.splits, table, dom.alpha, dom.bound, dom.scores,
                               dom.rows, dom.lower, dom.beta, node))
        return out
    out = []
    for phase in (-1, 1):
        splits = {k: v.copy() for k, v in dom.splits.items()}
        splits[node][neuron] = phase
        out.append(_Domain(splits, dom.intermediate, dom.alpha, dom.bound, dom.scores,
                           dom.rows, dom.lower, dom.beta, node))
    return out


def _stack_alpha(tables):
    """One alpha (node -> side -> array) or beta (node -> array) table from the
    tables of single batch elements (None if one is missing)."""
    if any(t is None for t in tables):
        return None
    return {node: ({side: np.concatenate([t[node][side] for t in tables])
                    for side in value} if isinstance(value, dict)
                   else np.concatenate([t[node] for t in tables]))
            for node, value in tables[0].items()}


def _take_alpha(table, j, rows):
    """Batch element ``j`` of an alpha or beta table, its row axis reduced to ``rows``."""
    if table is None:
        return None
    return {node: ({side: v[j:j + 1, rows] for side, v in value.items()}
                   if isinstance(value, dict) else value[j:j + 1, rows])
            for node, value in table.items()}


def _open_rows(rows, open_poly):
    """The rows (indices into the case's stacked rows) of the open polytopes."""
    return np.flatnonzero(open_poly[rows.owner])


def _scatter_rows(lower, index, count, parent):
    """``(n, count)`` row lower bounds from those of the rows ``index`` ``(n, k)``
    bounded (``lower``, ``(n, k)``); a row a child did not bound belongs to a
    polytope its parent refuted (+inf). Each child's bound is a sub-domain of
    its parent's, so the parent's row bounds ``parent`` ``(n, count)`` hold
    there too: the larger of the two is kept."""
    which = (np.arange(len(lower))[:, None], index)
    full = np.full((len(lower), count), -np.inf)
    np.maximum.at(full, which, lower)
    bounded = np.zeros(full.shape, dtype=bool)
    bounded[which] = True
    return np.maximum(np.where(bounded, full, np.inf), parent)


@dataclass
class _Domain:
    splits: dict
    intermediate: dict
    alpha: object
    bound: float
    scores: dict = None  # Relu node -> (len(rows), n) BaBSR-style split scores per row
    rows: np.ndarray = None  # the rows of its open polytopes, alpha's row axis
    lower: np.ndarray = None  # (R,) lower bounds of every row (+inf: refuted)
    beta: dict = None  # the parent's beta multipliers (warm start; new splits start at 0)
    newest: int = None  # the node of the split that made it (None: the root)


def _stack_intervals(tables):
    keys = tables[0].keys()
    return {k: Interval(np.vstack([t[k].lower for t in tables]),
                        np.vstack([t[k].upper for t in tables])) for k in keys}


#: sigmoid/tanh neurons whose input interval is narrower are not split
MIN_SPLIT_WIDTH = 1e-3


#: the split scores of a sub-problem's rows are weighted by how far each row's
#: polytope is from refuted, relative to its worst open polytope (whose bound
#: is the sub-problem's): ``(bound_p / bound_worst) ** FOCUS_POWER`` for
#: polytopes with a negative best row, 0 for the others (0: every open row
#: weighs the same). With equal weights the splits served the rows already
#: near refutation: on mnist_fc 256x4 prop_7_0.05 the worst row stayed at
#: -1.64862 from 10 s to 35 s while the other eight rose; with the worst
#: polytope's rows alone, rows with several polytopes about as bad (prop_0_0.05,
#: prop_14_0.05) lost (-0.38 against -0.63 and -0.54 against -0.74 at 60 s).
FOCUS_POWER = 4.0


def _focus(dom, rows):
    """Weights ``(len(dom.rows),)`` of the rows whose split scores choose its
    neuron (see :data:`FOCUS_POWER`)."""
    weight = np.ones(len(dom.rows))
    if not FOCUS_POWER or dom.lower is None or len(dom.rows) < 2:
        return weight
    owner = rows.owner[dom.rows]
    best = np.full(rows.count, -np.inf)
    np.maximum.at(best, owner, dom.lower[dom.rows])
    worst = best[owner].min()
    if not worst < 0:
        return weight
    return np.clip(best[owner] / worst, 0.0, 1.0) ** FOCUS_POWER


def _candidates(dom, relus, smooth, count, focus=None):
    """The ``count`` free unstable ReLUs and sigmoid/tanh neurons (input
    interval at least :data:`MIN_SPLIT_WIDTH` wide) ``(node, neuron)`` with the
    best split scores, best first: the bound the CROWN pass lost to each one's
    relaxation (BaBSR-like, from the bound engine), summed over the rows
    weighted by ``focus`` (``(len(dom.rows),)``; None: all 1); for ReLUs the triangle
    area u*(-l)/(u-l) breaks ties and stands in where no score is known (the
    width for the others)."""
    found = []
    for k in smooth + relus:
        lower, upper = dom.intermediate[k].lower[0], dom.intermediate[k].upper[0]
        width = upper - lower
        if k in smooth:
            free = np.flatnonzero(np.isfinite(width) & (width >= MIN_SPLIT_WIDTH))
            tie = width[free]
        else:
            free = np.flatnonzero((dom.splits[k] == 0) & (lower < 0) & (upper > 0))
            tie = upper[free] * -lower[free] / np.maximum(width[free], 1e-12)
        score = tie * 1e-6
        if dom.scores and k in dom.scores:
            per_row = dom.scores[k][:, free]
            score = score + (per_row.sum(axis=0) if focus is None else focus @ per_row)
        top = np.argsort(-score, kind="stable")[:count]
        found.extend((float(score[t]), k, int(free[t])) for t in top)
    found.sort(key=lambda item: -item[0])
    return [(k, j) for _, k, j in found[:count]]


