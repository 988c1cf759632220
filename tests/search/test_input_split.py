"""Input splitting: batched row tables, sound box bounds, splits, and the search."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.builders import chain_model, save
from verifier.frontend import read_model_proto
from verifier.frontend.loader import lower_model
from verifier.ir import evaluate
from verifier.result import replay_counterexample
from verifier.runtime import open_session
from verifier.search.input_split import (
    BoxQueue, SplitSettings, bisect, box_bounds, look_ahead, search, split_dimension,
)
from verifier.search.plan import search_plan
from verifier.search.rows import CaseRows
from verifier.spec import load_property
from verifier.verify import Context, Options


def polytopes(sizes, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(unsafe=[SimpleNamespace(C=rng.normal(size=(r, n_out)),
                                                   d=rng.normal(size=r), rows=r)
                                   for r in sizes])


def test_case_rows_match_a_loop_over_polytopes():
    case = polytopes([2, 1, 3])
    rows = CaseRows.of(case)
    rng = np.random.default_rng(1)
    lower = rng.normal(scale=1e-5, size=(50, 6))  # around the decision margin
    lower[:, 2] = rng.choice([-1.0, 1.0], size=50)
    y = rng.normal(size=(50, 3))
    values = y @ rows.C.T - rows.d
    margin, row = rows.worst_margin(y)
    for b in range(50):
        per_poly = [values[b, rows.owner == k].max() for k in range(3)]
        assert margin[b] == min(per_poly)
        assert values[b, row[b]] == margin[b]
        closed = [(lower[b, rows.owner == k] > 1e-6).any() for k in range(3)]
        assert list(rows.open_polytopes(lower, 1e-6)[b]) == [not c for c in closed]
        best = [lower[b, rows.owner == k].max() for k in range(3)]
        assert rows.worst_open(lower)[b] == min(best)


def test_queue_pops_the_lowest_bounds_and_bisect_halves_exactly():
    queue = BoxQueue(np.zeros(2), np.ones(2))
    queue.push(np.zeros((3, 2)), np.ones((3, 2)), np.array([5.0, -3.0, 1.0]))
    lower, _, hint, known = queue.pop_worst(2)
    assert len(lower) == 2 and sorted(queue.bound) == [1.0, 5.0] and hint is None
    assert known is None
    # hints (pre-activation bounds) travel with their boxes, rounded outward to float32
    queue = BoxQueue(np.zeros(2), np.ones(2))
    queue.pop_worst(1)
    for round_ in range(3):
        bound = np.arange(5.0) + 10 * round_
        hint = (np.tile(bound[:, None], (1, 3)) + 0.1, np.tile(bound[:, None], (1, 3)) + 0.2)
        queue.push(np.tile(bound[:, None], (1, 2)), np.tile(bound[:, None], (1, 2)) + 1,
                   bound, hint)
        lower, upper, got, _ = queue.pop_worst(2)
        assert np.all(got[0][:, 0] <= lower[:, 0] + 0.1) and np.all(got[1][:, 0] >= lower[:, 0] + 0.2)
        assert np.all(got[1][:, 0] - lower[:, 0] < 0.2 + 1e-5)
    assert len(queue) == 9 and sorted(queue.bound)[:3] == [11.0, 12.0, 13.0]
    assert np.all(queue.hint[0][:, 0] <= queue.lower[:, 0] + 0.1)
    halves = queue.take(np.arange(9)[::2])
    assert len(halves) == 5 and halves.hint[0].shape == (5, 3)
    queue.push(np.zeros((1, 2)), np.ones((1, 2)), np.zeros(1))  # no hint: none kept
    assert queue.hint is None and len(queue) == 10
    # what look_ahead found travels with its box, exactly (float64)
    queue = BoxQueue(np.zeros(2), np.ones(2))
    queue.pop_worst(1)
    for round_ in range(3):
        bound = np.arange(5.0) + 10 * round_
        known = (bound[:, None] + np.pi, bound[:, None] / 3, np.tile(bound[:, None, None], (1, 1, 2)))
        queue.push(np.tile(bound[:, None], (1, 2)), np.tile(bound[:, None], (1, 2)) + 1,
                   bound, known=known)
        lower, _, _, got = queue.pop_worst(2)
        assert np.array_equal(got[0][:, 0], lower[:, 0] + np.pi)
        assert np.array_equal(got[1][:, 0], lower[:, 0] / 3)
        assert got[2].shape == (2, 1, 2) and np.array_equal(got[2][:, 0, 1], lower[:, 0])
    halves = queue.take(np.arange(9)[::2])
    lower, _, _, got = halves.pop_worst(5)
    assert len(lower) == 5 and np.array_equal(got[1][:, 0], lower[:, 0] / 3)
    lo = np.array([[0.0, 0.0], [-1.0, 2.0]])
    hi = np.array([[1.0, 4.0], [1.0, 3.0]])
    new_lo, new_hi = bisect(lo, hi, np.array([1, 0]))
    assert np.allclose(new_hi[0], [1.0, 2.0]) and np.allclose(new_lo[2], [0.0, 2.0])
    assert np.allclose(new_hi[1], [0.0, 3.0]) and np.allclose(new_lo[3], [0.0, 2.0])
    # the halves tile the parent: same total volume
    assert np.isclose(np.prod(new_hi - new_lo, axis=1).sum(), np.prod(hi - lo, axis=1).sum())


def test_split_dimension_takes_the_largest_coefficient_times_width():
    rows = CaseRows.of(polytopes([1]))
    coef = np.array([[[1.0, -5.0, 2.0]]])
    lower, upper = np.zeros((1, 3)), np.array([[3.0, 0.5, 1.0]])
    dim = split_dimension(rows, np.array([[-1.0]]), coef, np.ones((1, 1), bool), lower, upper)
    assert dim[0] == 0  # 1*3 > 5*0.5 > 2*1


def test_split_dimension_guard_takes_the_widest_input_when_the_smear_one_is_thin():
    rows = CaseRows.of(polytopes([1]))
    coef = np.array([[[1e6, 1.0, 0.0]]])
    lower, upper = np.zeros((1, 3)), np.array([[1e-3, 0.5, 1.0]])
    root = np.ones(3)
    args = (rows, np.array([[-1.0]]), coef, np.ones((1, 1), bool), lower, upper, root)
    assert split_dimension(*args)[0] == 2          # input 0 is 1000x narrower
    assert split_dimension(*args, guard=1e4)[0] == 0  # within the guard: the smear


def relu_net(tmp_path, seed=0, n_in=3):
    rng = np.random.default_rng(seed)
    layers = [("Gemm", [rng.normal(size=(16, n_in)).astype(np.float32),
                        rng.normal(size=16).astype(np.float32)], {"transB": 1}),
              ("Relu", [], {}),
              ("Gemm", [rng.normal(size=(16, 16)).astype(np.float32),
                        rng.normal(size=16).astype(np.float32)], {"transB": 1}),
              ("Relu", [], {}),
              ("Gemm", [rng.normal(size=(2, 16)).astype(np.float32),
                        np.zeros(2, np.float32)], {"transB": 1})]
    path = save(chain_model(layers, (1, n_in)), tmp_path / f"relu{seed}.onnx")
    return path, lower_model(read_model_proto(path), str(path))


@pytest.mark.parametrize("crown", [False, True])
def test_box_bounds_hold_on_samples_and_corners(tmp_path, crown):
    _, graph = relu_net(tmp_path)
    rows = CaseRows.of(polytopes([2, 1], n_out=2, seed=3))
    rng = np.random.default_rng(4)
    centre = rng.uniform(-1, 1, size=(20, 3))
    radius = rng.uniform(0.01, 0.5, size=(20, 3))
    lower, upper = centre - radius, centre + radius
    bound, margin, coef = box_bounds(graph, lower, upper, rows, crown)
    assert coef.shape == (20, 3, 3) and margin.shape == (20, 3) and np.all(margin > 0)
    corners = np.array(np.meshgrid(*[[0, 1]] * 3)).reshape(3, -1).T
    for b in range(20):
        points = np.vstack([lower[b] + rng.random((300, 3)) * (upper[b] - lower[b]),
                            lower[b] + corners * (upper[b] - lower[b])])
        y = evaluate(graph, points.reshape(-1, 1, 3)).reshape(len(points), -1)
        assert np.all(y @ rows.C.T - rows.d >= bound[b] - 1e-9)


@pytest.mark.parametrize("tries", [1, 2, 3])
def test_look_ahead_queues_each_child_with_its_own_bounds_and_drops_only_safe_ones(
        tmp_path, tries):
    """The children look_ahead queues carry exactly what chain_bounds finds on
    them (from their parent's pre-activation bounds); every sampled float32
    point (onnxruntime) of a parent that is unsafe lies in a queued child."""
    from verifier.bounds.chain import Chain, chain_bounds

    path, graph = relu_net(tmp_path)
    chain = Chain.of(graph)
    session = open_session(read_model_proto(path), device="cpu")
    rng = np.random.default_rng(5)
    centre = rng.uniform(-1, 1, size=(40, 3))
    radius = rng.uniform(0.05, 0.4, size=(40, 3))
    centre[:, 0], radius[:, 0] = np.linspace(-2, 2, 40), 0.04  # disjoint boxes
    lower, upper = centre - radius, centre + radius
    x = lower[:, None] + rng.random((40, 400, 3)) * (upper - lower)[:, None]
    y = session.run(x.reshape(-1, 1, 3).astype(np.float32)).reshape(40, 400, -1)
    gap = y[..., 0] - y[..., 1]
    # unsafe: Y_0 - Y_1 <= level, reached in some boxes and not in others
    level = float(np.quantile(gap.min(axis=1), 0.5))
    rows = CaseRows(np.array([[1.0, -1.0]]), np.array([level]), np.zeros(1, int), 1,
                    np.zeros(1, np.intp))
    found = chain_bounds(graph, chain, lower, upper, rows)
    open_poly = rows.open_polytopes(found.lower, found.margin)
    keep = np.flatnonzero(open_poly[:, 0])
    assert 0 < len(keep) < 40
    hint = (found.pre_lower[keep], found.pre_upper[keep])
    dim = split_dimension(rows, found.lower[keep], found.coef[keep], open_poly[keep],
                          lower[keep], upper[keep])
    (child_low, child_up, order, child_hint), known, bounded = look_ahead(
        graph, chain, rows, lower[keep], upper[keep], hint, found.lower[keep],
        found.coef[keep], open_poly[keep], dim, SplitSettings(lookahead=tries))
    row_bound, margin, coef = known
    assert 2 * len(keep) <= bounded <= 2 * tries * len(keep)
    assert len(child_low) and np.all(rows.open_polytopes(row_bound, margin))
    # each child is a half of a parent, and its bounds are its own
    parent = np.array([np.flatnonzero(np.all((lower[keep] <= lo) & (up <= upper[keep]), axis=1))[0]
                       for lo, up in zip(child_low, child_up)])
    again = chain_bounds(graph, chain, child_low, child_up, rows,
                         (hint[0][parent], hint[1][parent]))
    # (equal up to float64 rounding: the batch's chunking changes BLAS's shapes)
    assert np.allclose(row_bound, again.lower, rtol=1e-12, atol=1e-12)
    assert np.allclose(margin, again.margin, rtol=1e-12, atol=1e-15)
    assert np.allclose(coef, again.coef, rtol=1e-12, atol=1e-12)
    assert np.array_equal(order, row_bound[:, 0])
    assert np.allclose(child_hint[0], again.pre_lower, rtol=1e-12, atol=1e-12)
    # unsafe float32 points of the parents are all in queued children
    for b, k in enumerate(keep):
        unsafe = x[k][gap[k] <= level]
        inside = np.any(np.all((child_low[:, None] <= unsafe[None]) &
                               (unsafe[None] <= child_up[:, None]), axis=2), axis=0)
        assert inside.all()


def context(tmp_path, unsafe, timeout=30.0):
    path, graph = relu_net(tmp_path)
    lines = [f"(declare-const X_{i} Real)" for i in range(3)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(3)]
    lines.append(f"(assert {unsafe})")
    spec = tmp_path / "p.vnnlib"
    spec.write_text("\n".join(lines) + "\n")
    prop = load_property(spec)
    session = open_session(read_model_proto(path), device="cpu")
    ctx = Context(graph, prop, session, Options(timeout=timeout), time.monotonic(),
                  np.random.default_rng(0))
    return ctx, graph


def case_of(ctx):
    return search_plan(ctx).cases[0]


def literal(value):
    """A VNN-LIB 1.0 number (negative ones as (- v))."""
    return f"{value!r}" if value >= 0 else f"(- {-value!r})"


def output_range(graph):
    x = np.random.default_rng(9).uniform(-1, 1, size=(20000, 3))
    y = evaluate(graph, x.reshape(-1, 1, 3)).reshape(len(x), -1)
    return (y[:, 0] - y[:, 1]).min(), (y[:, 0] - y[:, 1]).max()


#: a second row of the same polytope that every output meets: the search
#: then looks ahead (look_ahead), the unsafe set is the same
ALWAYS = "(<= (- Y_1 Y_0) 1000.0)"


@pytest.mark.parametrize("extra", ["", ALWAYS])
def test_search_proves_a_safe_region_in_small_batches(tmp_path, extra):
    ctx, graph = context(tmp_path, "(<= Y_0 0.0)")
    low, high = output_range(graph)
    row = f"(<= (- Y_0 Y_1) {literal(float(low - 0.1 * (high - low)))})"
    ctx, _ = context(tmp_path, f"(and {row} {extra})" if extra else row)
    outcome = search(ctx, 0, case_of(ctx), SplitSettings(batch=16))
    assert outcome.proved, outcome.reason
    assert outcome.boxes > 1  # needed splitting
    assert ctx.stats["search_seconds"] > 0


@pytest.mark.parametrize("extra", ["", ALWAYS])
def test_search_finds_a_replayed_counterexample_in_a_thin_unsafe_set(tmp_path, extra):
    ctx, graph = context(tmp_path, "(<= Y_0 0.0)")
    low, _ = output_range(graph)
    # just above the sampled minimum: a small unsafe set, reached by the search
    row = f"(<= (- Y_0 Y_1) {literal(float(low) + 1e-3)})"
    ctx, _ = context(tmp_path, f"(and {row} {extra})" if extra else row)
    outcome = search(ctx, 0, case_of(ctx), SplitSettings(batch=16, attack_share=0.0))
    assert not outcome.proved and outcome.counterexample is not None
    x = outcome.counterexample.x
    assert replay_counterexample(ctx.session, ctx.prop, x, 0) is not None


@pytest.mark.parametrize("verbose", [True, False])
def test_verbose_input_splitting_logs_progress(tmp_path, monkeypatch, capsys, verbose):
    from verifier.search import progress

    ctx, graph = context(tmp_path, "(<= Y_0 0.0)")
    low, high = output_range(graph)
    ctx, _ = context(tmp_path, f"(<= (- Y_0 Y_1) {literal(float(low - 0.1 * (high - low)))})")
    ctx.options.verbose = verbose
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)
    outcome = search(ctx, 0, case_of(ctx), SplitSettings(batch=4))
    assert outcome.proved and outcome.boxes > 4  # several rounds
    lines = [line for line in capsys.readouterr().err.splitlines()
             if "input splitting:" in line]
    if not verbose:
        assert not lines
        return
    assert len(lines) >= 2
    counts = [int(line.split("(")[-1].split()[0]) for line in lines]
    assert counts == sorted(counts) and counts[-1] > 0
    assert all("open sub-boxes" in line and "global lower bound" in line
               and "sub-boxes/s" in line for line in lines)


def test_search_stops_at_the_deadline(tmp_path):
    ctx, graph = context(tmp_path, "(<= Y_0 0.0)", timeout=0.0)
    outcome = search(ctx, 0, case_of(ctx))
    assert not outcome.proved and outcome.counterexample is None
    assert "time ran out" in outcome.reason


@pytest.mark.parametrize("unsafe_offset, proved", [(-0.1, True), (1e-3, False)])
def test_two_worker_processes_prove_and_find_like_one(tmp_path, unsafe_offset, proved):
    """The queue is shared at once (fork_after 0): a safe region is proved by
    both processes together; in the thin unsafe set, a counterexample found
    by either is replayed by the parent."""
    ctx, graph = context(tmp_path, "(<= Y_0 0.0)")
    low, high = output_range(graph)
    level = low + unsafe_offset * (high - low) if unsafe_offset < 0 else low + unsafe_offset
    ctx, _ = context(tmp_path, f"(<= (- Y_0 Y_1) {literal(float(level))})")
    settings = SplitSettings(batch=8, workers=2, fork_after=0.0, attack_share=0.0)
    outcome = search(ctx, 0, case_of(ctx), settings)
    assert outcome.proved is proved, outcome.reason
    if proved:
        assert ctx.stats["workers"] == 2 and "2 processes" in outcome.reason
    else:
        assert replay_counterexample(ctx.session, ctx.prop, outcome.counterexample.x, 0)


def test_an_idle_parent_searches_boxes_a_worker_hands_back(tmp_path, monkeypatch):
    """The parent's own part is done (here: dropped) while a worker still
    splits: the parent asks for boxes, the worker hands half of its queue
    back, the parent searches them, and the region's outcome waits for both."""
    from verifier.search import split_workers
    from verifier.search.input_split import SplitOutcome

    monkeypatch.setattr(split_workers, "MIN_SHARE", 1)
    ctx, graph = context(tmp_path, "(<= Y_0 0.0)")
    low, high = output_range(graph)
    ctx, _ = context(tmp_path, f"(<= (- Y_0 Y_1) {literal(float(low - 0.1 * (high - low)))})")
    sc = case_of(ctx)
    edges = np.linspace(-1.0, 1.0, 5)
    grid = np.array(np.meshgrid(edges[:-1], edges[:-1], edges[:-1], indexing="ij"))
    lower = grid.reshape(3, -1).T
    queue = BoxQueue.of(lower, lower + 0.5, np.full(len(lower), -np.inf))
    settings = SplitSettings(batch=2, workers=2, fork_after=0.0, attack_share=0.0)
    team = split_workers.Team.for_run(ctx, settings, sc)
    try:
        team._fork(ctx, 0, queue)
        assert len(queue) == 32 and team.running == 1
        outcome = team.finish(ctx, 0, SplitOutcome(True, "parent's part dropped"))
    finally:
        team.stop()
    assert outcome.proved, outcome.reason
    assert ctx.stats["boxes_handed_back"] > 0
    assert outcome.boxes > team.child_boxes  # the parent bounded the boxes handed back


def test_one_process_per_available_core_unless_told_otherwise(monkeypatch):
    from verifier.search import split_workers
    from verifier.search.split_workers import Team

    assert split_workers.available_cores() >= 1
    monkeypatch.setattr(split_workers, "available_cores", lambda: 1)
    assert Team.for_run(SimpleNamespace(options=Options()), SplitSettings()) is None
    monkeypatch.setattr(split_workers, "available_cores", lambda: 4)
    assert Team.for_run(SimpleNamespace(options=Options()), SplitSettings()).workers == 4
    assert Team.for_run(SimpleNamespace(options=Options(workers=1)), SplitSettings()) is None
    team = Team.for_run(SimpleNamespace(options=Options(workers=3)), SplitSettings())
    assert team is not None and team.workers == 3
