"""Exact MILP for the open rows of a small ReLU MLP (scipy's HiGHS).

For a chain ``Input -> Reshape* -> (Linear -> Relu)* -> Linear`` with at most
:data:`MAX_RELUS` ReLUs, of which at most :data:`MAX_BINARIES` are unstable
under the root's alpha-CROWN intermediate bounds, the row ``c·y - d`` is
minimised over the input box exactly (:func:`encode`): each hidden layer has
its pre-activations ``z = W a_prev + b`` as variables (one dense equality row
per neuron, ``l <= z <= u`` from the sound intermediate bounds) and its
post-activations ``a``; an unstable ReLU ``a = max(z, 0)`` with ``l < 0 < u``
gets a 0/1 variable ``δ`` (``a >= z, a >= 0, a <= z - l (1 - δ), a <= u δ``),
an active one ``a = z``, an inactive one ``a = 0``. Keeping ``z`` explicit
leaves the big-M rows with two or three entries each instead of a copy of the
weight row: on the 64-128-128-10 digits MLP at eps 0.1 HiGHS spends most of
its time separating cuts at the root, and it proved the same rows 6-23 %
faster this way. On that MLP, branch and bound on ReLU splits left many
images open after 10 s (bounds still around -0.5 after a thousand
sub-problems) where HiGHS decides a row in a few seconds.

Before the rows are solved, one round of cuts of the ideal single-ReLU
formulation (Anderson et al. 2020; :func:`strengthen`) is added where the LP
relaxation's optimum for each open row violates them. On that MLP at eps 0.1
(six hard images, 30 s each, one core, run side by side under load) this
solved 6/6 in 86.8 s against 4/6 in 118.3 s without cuts and 5/6 in 105.7 s
with two rounds.

The open rows of a case are independent MILPs: they run on up to
:func:`row_workers` threads at once (HiGHS releases the GIL while it solves);
the first row that fails ends the case once the rows already running return.

HiGHS is asked a yes/no question per row rather than for the optimum: with
the cutoff ``objective_bound`` at ``margin + 2·tol`` (in the row's units) it
either reports the problem infeasible, i.e. no input gets the row below the
cutoff, or stops at the first solution below the cutoff
(``mip_max_improving_sols = 1``); where that solution has ``c·y - d <= 0``
its input is replayed through onnxruntime.

Soundness. The MILP is about the real-valued network of the IR; the float32
network is covered, as everywhere, by the row's decision margin from
:func:`verifier.bounds.margin.decision_margins` (passed in as ``margin``). A
HiGHS answer is not a certificate: its feasibility tolerances (primal 1e-7,
MIP feasibility and integrality 1e-6, absolute, HiGHS defaults, set
explicitly below) let its solutions violate constraints a little, which can
move the objective. So a row counts as refuted only with the explicit slack
``tol = TOLERANCE · (1 + scale)``, ``scale`` the largest the objective can be
on the variables' box (``sum |g_i| max(|lb_i|, |ub_i|) + |constant|``), a
hundred times HiGHS's tolerances relative to the problem's size: infeasible
at cutoff ``margin + 2·tol`` gives the lower bound ``margin + tol`` of the
row, which then goes through :func:`verifier.bounds.margin.refuted` against
``margin``. As a guard against a wrong infeasibility, no proof is accepted
when a known point (the box centre, a falsification point) already has the
row below the cutoff. The encoding's big-M constants come from sound
intermediate bounds (widened boxes never remove a point).
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from verifier.bounds.lp_refine import linear_weights, mlp_layers
from verifier.ir import evaluate

#: the most unstable ReLUs (0/1 variables) the MILP is tried with (-1: never)
MAX_BINARIES = 256
#: the most hidden ReLUs of a network the MILP is tried on: on mnist_fc
#: (benchmarks/bench_bab.py rows, 2-core CPU, 30 s) ReLU splitting did better on
#: 256x2 (prop 10 eps 0.05: 7.5 s vs 10.6 s; props 9, 11, 14 about even) and the
#: MILP timed out on 256x4 (prop 7 eps 0.05, 177 binaries; splitting too)
MAX_RELUS = 256
#: rounds of ideal-formulation cuts added before a case's MILP (see strengthen)
CUT_ROUNDS = 1
#: relative slack on HiGHS's answers (see the module docstring)
TOLERANCE = 1e-4
#: HiGHS's tolerances, stated explicitly (its defaults); TOLERANCE is 100x these
HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-7, "mip_feasibility_tolerance": 1e-6,
                 "presolve": True}
#: primal heuristics off: the rows left to the MILP are mostly robust (PGD and
#: falsification found nothing), and the proof comes from the dual side
SPEED_OPTIONS = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rens": False,
                 "mip_heuristic_run_rins": False, "mip_heuristic_run_feasibility_jump": False}


@dataclass(frozen=True)
class Encoding:
    """The exact MILP of a ReLU MLP over an input box: variables ``v`` (the
    inputs, then per hidden layer its pre-activations ``z`` and
    post-activations ``a``, then the 0/1 variables), ``row_lower <= A v <=
    row_upper``, ``lb <= v <= ub``; the output is ``W v[offset:offset+k] + b``."""

    A: object
    row_lower: np.ndarray
    row_upper: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integrality: np.ndarray
    offset: int
    weight: np.ndarray
    bias: np.ndarray
    n_inputs: int
    #: per hidden layer with unstable ReLUs: (input columns, W and b of its
    #: unstable neurons, their post-activation columns, their 0/1 columns)
    unstable: tuple = ()

    @property
    def binaries(self) -> int:
        return int(self.integrality.sum())


class _Rows:
    """Sparse rows ``lo <= sum coef·v <= hi`` collected as COO triplets."""

    def __init__(self):
        self.r, self.c, self.v, self.lo, self.hi = [], [], [], [], []
        self.count = 0

    def add(self, cols, coefs, lo, hi):
        """One row per row of ``cols``/``coefs`` ``(rows, k)``; ``lo``, ``hi``: scalars or ``(rows,)``."""
        cols, coefs = np.atleast_2d(cols), np.atleast_2d(coefs)
        n = cols.shape[0]
        if not n:
            return
        keep = coefs != 0.0
        self.r.append(np.broadcast_to(self.count + np.arange(n)[:, None], cols.shape)[keep])
        self.c.append(cols[keep])
        self.v.append(coefs[keep])
        self.lo.append(np.broadcast_to(lo, (n,)))
        self.hi.append(np.broadcast_to(hi, (n,)))
        self.count += n

    def matrix(self, n_vars):
        import scipy.sparse as sp

        return (sp.csr_matrix((np.concatenate(self.v), (np.concatenate(self.r),
                                                       np.concatenate(self.c))),
                              shape=(self.count, n_vars)),
                np.concatenate(self.lo).astype(np.float64),
                np.concatenate(self.hi).astype(np.float64))


def encode(graph, lower, upper, pre_activation) -> Encoding | None:
    """The MILP of ``graph`` over the box ``lower..upper`` (flat, ``(n,)``) with the
    ReLU input bounds ``pre_activation`` (Relu node -> Interval ``(1, n)``), or None
    when the graph is not a ReLU MLP chain, has more than :data:`MAX_RELUS` ReLUs
    or more than :data:`MAX_BINARIES` unstable ones."""
    layers = mlp_layers(graph)
    if layers is None:
        return None
    linears, relus = layers
    if sum(graph.nodes[k].size for k in relus) > MAX_RELUS:
        return None
    bounds = [(np.asarray(pre_activation[k].lower, np.float64)[0],
               np.asarray(pre_activation[k].upper, np.float64)[0]) for k in relus]
    unstable = [np.flatnonzero((lo < 0) & (hi > 0)) for lo, hi in bounds]
    binaries = sum(len(u) for u in unstable)
    if binaries > MAX_BINARIES or not all(np.isfinite(lo).all() and np.isfinite(hi).all()
                                          for lo, hi in bounds):
        return None  # too many 0/1 variables, or no finite big-M constant
    lower = np.asarray(lower, np.float64).reshape(-1)
    upper = np.asarray(upper, np.float64).reshape(-1)
    lb, ub = [lower], [upper]
    prev = np.arange(lower.size)          # columns of the previous layer's values
    n_vars = lower.size + 2 * sum(lo.size for lo, _ in bounds)
    delta = n_vars                        # next 0/1 column
    rows = _Rows()
    table = []
    column = lower.size
    for k, (lo, hi) in enumerate(bounds):
        W, b = linear_weights(graph.nodes[linears[k]])
        m = W.shape[0]
        z, a = column + np.arange(m), column + m + np.arange(m)
        column += 2 * m
        lb += [lo, np.zeros(m)]
        ub += [hi, np.maximum(hi, 0.0)]   # a = 0 where inactive (hi <= 0)
        # z - W a_prev = b
        rows.add(np.column_stack([np.broadcast_to(prev, (m, prev.size)), z]),
                 np.column_stack([-W, np.ones(m)]), b, b)
        act = np.flatnonzero(lo >= 0)     # a - z = 0
        rows.add(np.column_stack([a[act], z[act]]), np.tile([1.0, -1.0], (len(act), 1)),
                 0.0, 0.0)
        j = unstable[k]
        d = delta + np.arange(len(j))
        delta += len(j)
        ones = np.ones(len(j))
        # z - a <= 0;  a - z - l d <= -l;  a - u d <= 0
        rows.add(np.column_stack([z[j], a[j]]), np.column_stack([ones, -ones]), -np.inf, 0.0)
        rows.add(np.column_stack([a[j], z[j], d]), np.column_stack([ones, -ones, -lo[j]]),
                 -np.inf, -lo[j])
        rows.add(np.column_stack([a[j], d]), np.column_stack([ones, -hi[j]]), -np.inf, 0.0)
        if len(j):
            table.append((prev, W[j], b[j], a[j], d))
        prev = a
    lb.append(np.zeros(binaries))
    ub.append(np.ones(binaries))
    A, row_lower, row_upper = rows.matrix(n_vars + binaries)
    integrality = np.concatenate([np.zeros(n_vars), np.ones(binaries)])
    weight, bias = linear_weights(graph.nodes[linears[-1]])
    return Encoding(A, row_lower, row_upper, np.concatenate(lb), np.concatenate(ub),
                    integrality, int(prev[0]), weight, bias, lower.size, tuple(table))


def strengthen(enc: Encoding, objectives, rounds: int | None = None,
               deadline: float | None = None) -> Encoding:
    """``enc`` with cuts of the ideal single-ReLU formulation (Anderson et al.,
    "Strong mixed-integer programming formulations for trained neural
    networks", 2020) that the LP relaxation's optima violate.

    For ``y = max(0, w·x + b)`` with ``x`` in the box ``[L, U]`` and ``δ`` its
    phase, every subset I of the inputs gives the valid inequality
    ``y <= sum_{i in I} w_i (x_i - L'_i (1 - δ)) + (b + sum_{i not in I} w_i U'_i) δ``
    (``L'_i``, ``U'_i`` the box ends that minimise and maximise ``w_i x_i``);
    the big-M rows are the two extreme subsets. For each objective (a row's
    ``g``) and round, the LP relaxation is solved, and for each unstable ReLU
    the subset most violated at its optimum (``i in I`` iff ``w_i (x_i - L'_i
    (1 - δ)) < w_i U'_i δ``) is added when it cuts the point off. Each holds
    at every point of the network (``δ`` = [z > 0], or either at z = 0), so no
    point of the network is removed: the MILP stays exact and the cuts only
    tighten its relaxation. On the digits MLP at eps 0.1 one round lifts
    the root LP bound of a hard row from -2.9 to -1.7 (HiGHS's own root cuts
    reach -1.6 in 5 s). The right-hand sides get a relative slack of 1e-9
    against float64 rounding in their sums."""
    import scipy.sparse as sp

    rounds = CUT_ROUNDS if rounds is None else rounds
    if not enc.unstable or rounds <= 0:
        return enc
    strong = enc
    for _ in range(rounds):
        found = _Rows()
        for g in objectives:
            if deadline is not None and time.monotonic() >= deadline:
                break
            res = _solve(strong, g, {"presolve": True}, np.inf, relaxed=True)
            if res is not None and res.x is not None:
                _separate(enc, res.x, found)
        if not found.count:
            break
        extra, low, high = found.matrix(enc.A.shape[1])
        strong = dataclasses.replace(strong, A=sp.vstack([strong.A, extra]).tocsr(),
                                     row_lower=np.concatenate([strong.row_lower, low]),
                                     row_upper=np.concatenate([strong.row_upper, high]))
    return strong


def _separate(enc: Encoding, v: np.ndarray, out: "_Rows") -> None:
    """Add to ``out`` the most violated ideal-formulation cut of each unstable
    ReLU at the LP point ``v`` (see :func:`strengthen`), where it is violated."""
    for cols, W, b, y_cols, d_cols in enc.unstable:
        L, U = enc.lb[cols], enc.ub[cols]
        low = np.where(W >= 0, L, U)             # L'
        high = np.where(W >= 0, U, L)            # U'
        x, y, d = v[cols], v[y_cols], v[d_cols][:, None]
        inside = W * (x - low * (1.0 - d))       # (J, n): the terms of i in I
        outside = W * high * d
        chosen = inside < outside
        terms = np.where(chosen, inside, outside)
        bound = terms.sum(axis=1) + b * d[:, 0]
        scale = np.abs(terms).sum(axis=1) + np.abs(b) + 1.0
        hit = np.flatnonzero(y > bound + 1e-6 * scale)
        if not len(hit):
            continue
        chosen, Wh, lowh, highh = chosen[hit], W[hit], low[hit], high[hit]
        in_w = np.where(chosen, Wh, 0.0)
        constant = (in_w * lowh).sum(axis=1)                               # sum_I w L'
        d_coef = -(constant + b[hit] + np.where(chosen, 0.0, Wh * highh).sum(axis=1))
        rhs = -constant
        slack = 1e-9 * (np.abs(in_w * lowh).sum(axis=1) + np.abs(d_coef) + 1.0)
        n_in = len(cols)
        out.add(np.column_stack([np.broadcast_to(cols, (len(hit), n_in)), y_cols[hit],
                                 d_cols[hit]]),
                np.column_stack([-in_w, np.ones(len(hit)), d_coef]), -np.inf, rhs + slack)


@dataclass(frozen=True)
class RowAnswer:
    """What HiGHS said about one row: ``lower`` a lower bound of the row to compare
    with its margin (-inf when nothing was proved), ``point`` an input where the
    real-valued row is <= 0 (None if none was found), ``status`` in words."""

    lower: float
    point: np.ndarray | None
    status: str
    seconds: float


def row_objective(enc: Encoding, c_row, d_row):
    """``(g, constant)`` with ``c·y - d = g·v + constant`` on the encoding's variables."""
    g = np.zeros(enc.A.shape[1])
    g[enc.offset:enc.offset + enc.weight.shape[1]] = np.asarray(c_row, np.float64) @ enc.weight
    return g, float(np.asarray(c_row, np.float64) @ enc.bias - d_row)


def tolerance(enc: Encoding, g, constant) -> float:
    """The slack ``TOLERANCE · (1 + scale)`` of a row (module docstring)."""
    scale = float(np.abs(g) @ np.maximum(np.abs(enc.lb), np.abs(enc.ub))) + abs(constant)
    return TOLERANCE * (1.0 + scale)


def decide_row(enc: Encoding, c_row, d_row, margin: float, time_limit: float,
               known=()) -> RowAnswer:
    """Ask HiGHS whether ``c·y - d`` stays above ``margin + 2·tol`` on the box.

    HiGHS stops at the first solution below the cutoff; when that solution
    has the row above 0 (the minimum lies near the cutoff), it solves again
    to optimality in the time left, and the widened dual bound decides.
    ``known``: row values at points of the box (upper bounds of the minimum);
    if one is below the cutoff, an infeasible answer would be wrong, so none
    is taken (and the MILP still looks for a point with the row <= 0)."""
    start = time.perf_counter()
    g, constant = row_objective(enc, c_row, d_row)
    tol = tolerance(enc, g, constant)
    cutoff = margin + 2.0 * tol
    provable = all(value >= cutoff for value in known)
    if not provable:  # a point below the cutoff is known: only look for the row <= 0
        cutoff = 0.0
    options = dict(HIGHS_OPTIONS, **SPEED_OPTIONS, objective_bound=cutoff - constant)
    res = _solve(enc, g, dict(options, mip_max_improving_sols=1), time_limit)
    if res is not None and res.x is not None and res.fun is not None \
            and res.fun + constant > 0.0 and res.status != 0:
        left = time_limit - (time.perf_counter() - start)
        res = _solve(enc, g, options, left) if left > 0 else None
    seconds = time.perf_counter() - start
    if res is None:
        return RowAnswer(-np.inf, None, "HiGHS failed or no time left", seconds)
    if res.x is not None and res.fun is not None and res.fun + constant <= 0.0:
        return RowAnswer(-np.inf, np.asarray(res.x[:enc.n_inputs]), "point", seconds)
    if res.status == 2 and provable:  # infeasible under the cutoff
        return RowAnswer(margin + tol, None, "proved", seconds)
    bound = getattr(res, "mip_dual_bound", None)
    if res.status == 0 and bound is not None and np.isfinite(bound):
        # solved to optimality under the cutoff: what it proves is that no point
        # is below min(dual bound, cutoff). HiGHS may report "optimal" with a
        # solution (and dual bound) above the cutoff once the cutoff has pruned
        # every node, which bounds the row by the cutoff, not by that value.
        lower = min(float(bound) + constant, cutoff) - tol
        if all(value >= lower for value in known):
            return RowAnswer(lower, None, "optimal", seconds)
        return RowAnswer(-np.inf, None, "contradicted by a known point", seconds)
    return RowAnswer(-np.inf, None, "time limit" if res.status == 1 else res.message, seconds)


def _solve(enc: Encoding, g, options: dict, time_limit: float, relaxed: bool = False):
    """``scipy.optimize.milp`` on the encoding with objective ``g`` (its LP
    relaxation when ``relaxed``); None if HiGHS rejects the model."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    options = dict(options, time_limit=max(float(time_limit), 0.01), disp=False)
    try:
        with _quiet_highs():
            return milp(g, constraints=LinearConstraint(enc.A, enc.row_lower, enc.row_upper),
                        bounds=Bounds(enc.lb, enc.ub),
                        integrality=None if relaxed else enc.integrality, options=options)
    except ValueError:
        return None


_QUIET_LOCK = threading.Lock()
_quiet_state = {"users": 0, "saved": None, "warnings": None}


@contextlib.contextmanager
def _quiet_highs():
    """While any thread solves: the process's stdout (fd 1) goes to stderr
    (HiGHS's C++ code may print there; ``--json`` output must stay clean) and
    scipy's warning about options it passes to HiGHS verbatim is ignored. Both
    are process-wide, so the first solver in sets them and the last one out
    restores them (rows are solved in threads, see :func:`_solve_rows`)."""
    with _QUIET_LOCK:
        if _quiet_state["users"] == 0:
            sys.stdout.flush()
            _quiet_state["saved"] = os.dup(1)
            os.dup2(2, 1)
            _quiet_state["warnings"] = warnings.catch_warnings()
            _quiet_state["warnings"].__enter__()
            warnings.filterwarnings("ignore", message="Unrecognized options",
                                    category=RuntimeWarning)
        _quiet_state["users"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_state["users"] -= 1
            if _quiet_state["users"] == 0:
                _quiet_state["warnings"].__exit__(None, None, None)
                os.dup2(_quiet_state["saved"], 1)
                os.close(_quiet_state["saved"])


def known_values(graph, enc: Encoding, C, d, points) -> np.ndarray:
    """``(points, rows)`` values of the rows ``C·y - d`` at ``points`` (float64 IR)."""
    points = np.asarray(points, np.float64).reshape(-1, enc.n_inputs)
    y = evaluate(graph, points.reshape((len(points),) + tuple(graph.input_shape)))
    return y.reshape(len(points), -1) @ np.asarray(C, np.float64).T - np.asarray(d)


def applies(graph, rows) -> bool:
    """Whether :func:`prove_case` may apply: a ReLU MLP chain of at most
    :data:`MAX_RELUS` ReLUs and unsafe polytopes of one row each (the number
    of unstable ReLUs is checked by :func:`encode`)."""
    layers = mlp_layers(graph)
    return layers is not None and np.all(np.diff(np.append(rows.starts, len(rows.d))) == 1) \
        and sum(graph.nodes[k].size for k in layers[1]) <= MAX_RELUS


def prove_case(ctx, case_index, box, rows, root, margin):
    """Decide a case of ReLU splitting by MILP, after the root's alpha-CROWN.

    ``box``: the case's float32-hull Box (batch 1); ``rows``: its
    :class:`~verifier.search.rows.CaseRows`; ``root``: the alpha-CROWN result
    (its ``pre_activation`` gives the big-M bounds) of the *real-valued*
    network (not ``BoundOptions.float32``: the MILP encodes real values);
    ``margin``: ``(1, R)`` the rows' decision margins there (float32 gaps). Returns an
    :class:`~verifier.search.bab.Outcome`, or None when the MILP does not apply
    (not a ReLU MLP chain, too many unstable ReLUs, or an unsafe polytope of
    several rows: refuting one row of it proves it, but a point where one row
    holds is not a counterexample, so those stay with branch and bound).
    """
    from verifier.bounds.margin import refuted
    from verifier.search.bab import Outcome
    from verifier.verify import try_candidates

    if not applies(ctx.graph, rows):
        return None
    enc = encode(ctx.graph, box.lower[0], box.upper[0], root.pre_activation)
    if enc is None:
        return None
    centre = (box.lower[0] + box.upper[0]) / 2.0
    known = known_values(ctx.graph, enc, rows.C, rows.d, centre)[0]
    lower, margin = root.lower[0], np.broadcast_to(margin, root.lower.shape)[0]
    todo = [int(r) for r in np.argsort(lower) if not refuted(lower[r], margin[r])]
    record = ctx.stats.setdefault("milp", {"binaries": enc.binaries, "rows": []})
    if todo:
        before = enc.A.shape[0]
        enc = strengthen(enc, [row_objective(enc, rows.C[r], rows.d[r])[0] for r in todo],
                         deadline=time.monotonic() + 0.2 * ctx.time_left())
        record["cuts"] = enc.A.shape[0] - before

    def solve(r):
        left = ctx.time_left()
        return None if left <= 0 else decide_row(enc, rows.C[r], rows.d[r],
                                                 float(margin[r]), left, (known[r],))

    def judge(r, answer):
        """None when row r is refuted, else the case's Outcome."""
        if answer is None:
            return Outcome(False, f"time ran out in the MILP ({len(todo)} rows, "
                                  f"{enc.binaries} binary ReLUs)")
        record["rows"].append([r, answer.status, round(answer.seconds, 3)])
        ctx.log(f"MILP row {r}: {answer.status} in {answer.seconds:.2f} s")
        if answer.point is not None:
            value = known_values(ctx.graph, enc, rows.C[r:r + 1], rows.d[r:r + 1],
                                 answer.point)[0]
            cex = try_candidates(ctx, case_index, answer.point[None], value)
            if cex is not None:
                return Outcome(False, "counterexample found by the MILP", cex)
            return Outcome(False, f"the MILP found a point with row {r} <= 0 that the "
                                  f"float32 network does not replay as a counterexample")
        if not refuted(answer.lower, margin[r]):
            return Outcome(False, f"MILP row {r}: {answer.status}")
        return None

    failed = None
    for r, answer in _solve_rows(todo, solve, row_workers(ctx), lambda: failed is not None):
        if failed is not None and failed.counterexample is not None:
            continue  # a counterexample is the answer; the others only finish
        outcome = judge(r, answer)
        if outcome is not None and (failed is None or outcome.counterexample is not None):
            failed = outcome
    return failed or Outcome(True, "proved by MILP")


def row_workers(ctx=None) -> int:
    """Rows solved at once: ``--workers`` when given, else the CPUs this process
    may use."""
    from verifier.search.split_workers import available_cores

    chosen = getattr(getattr(ctx, "options", None), "workers", None)
    return max(1, int(chosen)) if chosen else available_cores()


def _solve_rows(todo, solve, workers, stop):
    """``(row, solve(row))`` for the rows of ``todo`` as they finish, up to
    ``workers`` at a time in threads (inline for one worker). No row starts
    once ``stop()`` is true; the rows already running are waited for (HiGHS
    cannot be interrupted from scipy, and a solve left running would take a
    core from whatever runs next), each bounded by the case's deadline."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if workers <= 1 or len(todo) <= 1:
        for r in todo:
            if stop():
                return
            yield r, solve(r)
        return
    queue = iter(todo)
    with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        running = {pool.submit(solve, r): r for r in itertools.islice(queue, workers)}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
                if not stop():
                    r = next(queue, None)
                    if r is not None:
                        running[pool.submit(solve, r)] = r
