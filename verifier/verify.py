"""The verification driver: load, falsify, bound, branch, decide.

    verify(model_path, property_path, timeout=...) -> Result

The strategy is chosen from the model and property alone:

1. Falsify: box centres, random samples and a batched PGD attack on the
   unsafe margins. A candidate becomes ``sat`` only after onnxruntime has
   replayed it (:func:`verifier.result.replay_counterexample`).
2. Prove with the bound engine, cheapest first.
3. Branch and bound (:mod:`verifier.search.bab`): input splitting for
   low-dimensional inputs, ReLU splitting otherwise.
"""
from __future__ import annotations

import os
import sys
import time
import types
from dataclasses import dataclass, field

import numpy as np

from verifier.result import (Result, Verdict, float32_admissible, float32_inside,
                             replay_counterexample)
from verifier.search.attack import Targets, pgd, sample_margins, sample_points


@dataclass
class Options:
    """Tuning knobs with sane defaults (no per-benchmark configuration).

    ``timeout`` (seconds) counts from ``start``, a ``time.monotonic()`` value
    (None: when :func:`verify` is called; the CLI passes the moment the
    process started, so that imports count too). Every bound computation
    gets the deadline and stops there with the sound bounds it has, so a
    call returns shortly after it. ``max_disjuncts`` raises (or lowers) the
    property reader's limit on unsafe disjuncts (None: its default).
    """

    timeout: float = 300.0
    start: float | None = None
    max_disjuncts: int | None = None
    seed: int = 0
    samples: int = 64           # random points per case before the attack
    pgd_steps: int = 60
    pgd_restarts: int = 0       # 0: as many as ~attack_flops allows, in [4, 256]
    attack_flops: float = 8e9
    input_split_max_dim: int = 16  # input splitting up to this many free inputs
    workers: int | None = None  # input-split processes per instance and MILP rows at
    #                             once (None: the CPUs available; search/split_workers.py)
    verbose: bool = False


@dataclass
class Context:
    """Everything one run needs; built once by :func:`verify`."""

    graph: object
    prop: object
    session: object
    options: Options
    start: float
    rng: np.random.Generator
    stats: dict = field(default_factory=dict)
    plan: object = None  # verifier.search.plan.Plan, made by search_plan()

    @property
    def deadline(self) -> float:
        return self.start + self.options.timeout

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def log(self, message: str) -> None:
        if self.options.verbose:
            import sys

            print(f"[{time.monotonic() - self.start:7.2f}s] {message}", file=sys.stderr)


def forward_flops(graph) -> float:
    """Multiply-adds of one forward pass (Linear and Conv dominate)."""
    from verifier.ir import ops

    total = 0.0
    for node in graph.nodes:
        if isinstance(node, (ops.Linear, ops.Conv, ops.ConvTranspose)):
            # every output entry costs one weight row (Linear) or filter (Conv)
            total += node.weight.size * (node.size // node.weight.shape[0])
        else:
            total += node.size
    return total


def attack_restarts(ctx, polytopes: int) -> int:
    opts = ctx.options
    if opts.pgd_restarts:
        return opts.pgd_restarts
    per_run = 3.0 * forward_flops(ctx.graph) * opts.pgd_steps * polytopes  # fwd + bwd
    return int(np.clip(opts.attack_flops / max(per_run, 1.0), 4, 256))


def try_candidates(ctx: Context, case_index: int, x, margins, count: int = 8,
                   slack: float = 1e-3):
    """Replay the ``count`` most promising points of a case (smallest worst-row
    margin first, none above ``slack`` plus the float32 gap bound at the point:
    the float32 network can violate a row that the real-valued one misses by
    less than that); the first replayed counterexample."""
    from verifier.bounds.margin import MARGIN_FLOOR
    from verifier.bounds.roundoff import node_errors, point_bounds
    from verifier.search.rows import CaseRows

    case = ctx.prop.cases[case_index]
    region = case.region
    order = np.argsort(margins)[:count]
    x32 = np.stack([float32_inside(x[k], region.lower, region.upper) for k in order]) \
        if len(order) else np.zeros((0, region.n_inputs), np.float32)
    C = CaseRows.of(case).C
    if len(order) and len(C):
        # only decides which points are worth replaying (the replay is strict), so
        # the cheap forward bound |c|·e_out serves: no backward pass per row
        errors = node_errors(ctx.graph, point_bounds(ctx.graph, x32))[ctx.graph.output]
        # an unbounded error times a zero coefficient is no bound: inf (replay anyway)
        with np.errstate(invalid="ignore"):
            gaps = (errors.reshape(len(x32), -1) @ np.abs(C).T).max(axis=1) + MARGIN_FLOOR
        gaps = np.where(np.isnan(gaps), np.inf, gaps)
    else:  # no point, or no output row at all (every output is unsafe)
        gaps = np.zeros(len(order))
    for k, point, gap in zip(order, x32, gaps):
        if margins[k] > slack + gap or not float32_admissible(region, point):
            continue
        cex = replay_counterexample(ctx.session, ctx.prop, point, case_index)
        if cex is not None:
            return cex
    return None


def _case_boxes(case):
    """The case's box repeated once per unsafe polytope, and the polytope indices."""
    which = np.arange(len(case.unsafe))
    return (np.repeat(case.region.lower[None], len(which), axis=0),
            np.repeat(case.region.upper[None], len(which), axis=0), which)


#: Above this many unsafe polytopes in one input region, falsification samples
#: the region once for all of them and attacks only the MANY_POLYTOPES ones
#: closest to being reached (the others are left to the proof): sampling and
#: attacking every polytope separately took gigabytes on 50 000 disjuncts.
MANY_POLYTOPES = 256


def _shared_samples(ctx, sc, targets, count, chunk=4096):
    """Points of the region sampled once, their best margin over all the
    case's polytopes, and the MANY_POLYTOPES polytopes closest to being
    reached at them; polytopes are scored a chunk at a time (bounded memory)."""
    from verifier.ir import evaluate

    region = sc.case.region
    x = sample_points(region.lower[None], region.upper[None], max(count, 1), ctx.rng,
                      sc.project)
    y = evaluate(ctx.graph, x.reshape((len(x),) + ctx.graph.input_shape)).reshape(len(x), -1)
    polytopes = len(targets.C)
    best_point = np.full(len(x), np.inf)       # per point, its smallest margin
    best_polytope = np.empty(polytopes)         # per polytope, its smallest margin
    for start in range(0, polytopes, chunk):
        part = slice(start, min(start + chunk, polytopes))
        values = np.einsum("prj,sj->spr", targets.C[part], y) - targets.d[part][None]
        worst = values.max(axis=2)              # (points, polytopes of the chunk)
        best_point = np.minimum(best_point, worst.min(axis=1))
        best_polytope[part] = worst.min(axis=0)
    closest = np.argsort(best_polytope)[:MANY_POLYTOPES]
    return x, best_point, closest


def falsify(ctx: Context):
    """Sampling on every case, then PGD on every case; a replayed
    counterexample or None.

    The cases are those of :func:`verifier.search.plan.search_plan`:
    empty regions and unsafe polytopes infeasible on their own are left out,
    boxes are tightened to the linear input constraints, and every point is
    projected onto box ∩ {A x <= b} before it is evaluated."""
    from verifier.search.plan import search_plan

    opts = ctx.options
    cases = [(sc, Targets.from_polytopes(sc.case.unsafe)) + _case_boxes(sc.case)
             for sc in search_plan(ctx).cases]
    for k, (sc, targets, lower, upper, which) in enumerate(cases):
        if len(which) > MANY_POLYTOPES:
            x, margins, closest = _shared_samples(ctx, sc, targets, opts.samples)
            cases[k] = (sc, targets, lower[closest], upper[closest], which[closest])
        else:
            x, margins, _ = sample_margins(ctx.graph, lower, upper, targets, which,
                                           opts.samples, ctx.rng, project=sc.project)
        cex = try_candidates(ctx, sc.index, x, margins)
        if cex is not None:
            ctx.stats["found_by"] = "sampling"
            return cex
    for sc, targets, lower, upper, which in cases:
        if ctx.out_of_time():
            return None
        x, margins, _ = pgd(ctx.graph, lower, upper, targets, which, steps=opts.pgd_steps,
                            restarts=attack_restarts(ctx, len(which)), rng=ctx.rng,
                            deadline=ctx.deadline, clock=time.monotonic, project=sc.project)
        ctx.stats.setdefault("pgd_best_margin", []).append(float(margins.min()))
        cex = try_candidates(ctx, sc.index, x, margins)
        if cex is not None:
            ctx.stats["found_by"] = "pgd"
            return cex
    return None


def verify(model, prop, options: Options | None = None, *, stats: dict | None = None) -> Result:
    """Verify property ``prop`` (path or Property) on ``model`` (a path, bytes
    or an ONNX ``ModelProto``).

    ``stats``: a dict the run fills as it goes (``phase``, ``load_seconds``,
    ``pgd_best_margin``, ...); it becomes ``Result.stats``, so a watchdog
    thread can report what was reached if it has to cut the run short.

    Raises :class:`verifier.errors.VerifierError` on bad input; every other
    outcome is a :class:`Result`, returned shortly after
    ``options.start + options.timeout``.
    """
    called = time.monotonic()  # before the imports below: they count too
    from verifier.crosscheck import check_lowering
    from verifier.frontend import read_model_proto
    from verifier.frontend.loader import lower_model
    from verifier.runtime import open_session
    from verifier.spec import load_property

    options = options or Options()
    start = called if options.start is None else options.start
    stats = {} if stats is None else stats
    stats["phase"] = "loading"
    loading = time.monotonic()
    proto = read_model_proto(model)
    where = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "<model>"
    graph = lower_model(proto, where)
    if not hasattr(prop, "cases"):
        limit = {} if options.max_disjuncts is None else {"max_disjuncts": options.max_disjuncts}
        prop = load_property(prop, **limit)
    prop.check_sizes(graph.input_size, graph.output_size, model=f"model {where}")
    session = open_session(proto, device="cpu", name=where)
    # no answer about a different function: the IR must match onnxruntime
    check_lowering(graph, proto, prop, where=where, session=session)
    ctx = Context(graph, prop, session, options, start, np.random.default_rng(options.seed),
                  stats)
    ctx.stats["load_seconds"] = round(time.monotonic() - loading, 4)

    def done(verdict, reason="", cex=None):
        ctx.stats["phase"] = "done"
        return Result(verdict, cex, reason, time.monotonic() - start, ctx.stats)

    if ctx.out_of_time():
        return done(Verdict.TIMEOUT, "time ran out while loading the model and property")
    ctx.stats["phase"] = "falsification"
    cex = falsify(ctx)
    if cex is not None:
        return done(Verdict.SAT, f"counterexample found by {ctx.stats['found_by']}", cex)
    if ctx.out_of_time():
        return done(Verdict.TIMEOUT, "time ran out during falsification")
    ctx.log("falsification found nothing; proving")
    ctx.stats["phase"] = "bounds and branch and bound"
    from verifier.search.bab import prove

    outcome = prove(ctx)
    if outcome.counterexample is not None:
        return done(Verdict.SAT, outcome.reason, outcome.counterexample)
    if outcome.proved:
        return done(Verdict.UNSAT, outcome.reason)
    if ctx.out_of_time():
        return done(Verdict.TIMEOUT, outcome.reason or "time ran out")
    return done(Verdict.UNKNOWN, outcome.reason)


class _CallableModule(types.ModuleType):
    """This module's type: calling the module calls :func:`verify`.

    The import system binds a submodule on its package, so the package
    attribute ``verifier.verify`` is this module once anything has imported
    it; being callable, ``verifier.verify(model, prop)`` works every time,
    while ``import verifier.verify as driver`` still gives the module."""

    def __call__(self, model, prop, options: Options | None = None, *,
                 stats: dict | None = None) -> Result:
        return verify(model, prop, options, stats=stats)


sys.modules[__name__].__class__ = _CallableModule
