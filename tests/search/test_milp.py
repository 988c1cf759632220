"""The MILP of small ReLU MLPs (verifier.search.milp): exact, sound against samples, guarded.

A 2-input MLP is sampled on a dense grid, so the grid's minimum of a row is its
true minimum to within a small Lipschitz step: a proof must never claim a lower
bound above it, a row pushed below zero must give a point, and the MILP must
prove a row whose minimum clears the threshold by a little more than its slack.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.bounds.nets import mlp
from tests.builders import relu_mlp_model, save
from tests.search.test_relu_split import box_property, random_mlp
from verifier.bounds import Box, compute_bounds
from verifier.ir import evaluate
from verifier.result import Verdict
from verifier.search import milp
from verifier.verify import Options, verify


def _setup(seed):
    rng = np.random.default_rng(seed)
    graph = mlp(rng, (2, 12, 12, 3))
    lower, upper = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    root = compute_bounds(graph, Box(lower[None], upper[None]), method="alpha-crown",
                          C=np.eye(3), upper=False)
    grid = np.stack(np.meshgrid(np.linspace(lower[0], upper[0], 301),
                                np.linspace(lower[1], upper[1], 301)), -1).reshape(-1, 2)
    y = evaluate(graph, grid.reshape(-1, 1, 2)).reshape(len(grid), -1)
    return graph, milp.encode(graph, lower, upper, root.pre_activation), y.min(axis=0)


@pytest.mark.parametrize("seed", range(3))
def test_milp_proofs_hold_on_a_dense_grid_and_points_are_real(seed):
    graph, enc, minimum = _setup(seed)
    assert enc is not None and enc.binaries > 0
    for row in range(3):
        c_row = np.eye(3)[row]
        d = minimum[row] - 1.0  # the row's minimum (over the grid) is 1
        g, constant = milp.row_objective(enc, c_row, d)
        tol = milp.tolerance(enc, g, constant)
        # threshold below the true minimum by more than 2 tol (+ grid error): proved,
        # and the bound stays below the grid minimum
        answer = milp.decide_row(enc, c_row, d, 1.0 - 3 * tol - 0.05, 30.0)
        assert answer.status in ("proved", "optimal"), answer
        assert 1.0 - 3 * tol - 0.05 < answer.lower <= 1.0 + 1e-9
        # threshold above the minimum: never proved
        answer = milp.decide_row(enc, c_row, d, 1.01, 30.0)
        assert not answer.lower > 1.01, answer
        # row shifted so that its minimum is below 0: a point where it really is <= 0
        d = minimum[row] + 0.05
        answer = milp.decide_row(enc, c_row, d, 0.0, 30.0)
        assert answer.point is not None, answer
        value = milp.known_values(graph, enc, c_row[None], np.array([d]), answer.point)[0, 0]
        assert value <= 1e-6
        assert np.all(answer.point >= enc.lb[:2] - 1e-9) and np.all(answer.point <= enc.ub[:2] + 1e-9)


def test_a_known_point_below_the_cutoff_blocks_the_proof():
    graph, enc, minimum = _setup(0)
    c_row, d = np.eye(3)[0], minimum[0] - 1.0
    assert milp.decide_row(enc, c_row, d, 0.8, 30.0).status in ("proved", "optimal")
    # a (made up) known point below the cutoff: HiGHS's infeasibility is not believed
    blocked = milp.decide_row(enc, c_row, d, 0.8, 30.0, known=(0.8,))
    assert blocked.status != "proved" and not blocked.lower > 1.0 + 1e-9


def test_encode_declines_large_or_non_mlp_graphs(monkeypatch):
    graph, enc, _ = _setup(1)
    root = compute_bounds(graph, Box(-np.ones((1, 2)), np.ones((1, 2))), method="crown")
    monkeypatch.setattr(milp, "MAX_BINARIES", 0)
    assert milp.encode(graph, -np.ones(2), np.ones(2), root.pre_activation) is None


def test_verify_proves_and_refutes_by_milp(tmp_path):
    # CROWN bounds y by ~49 on this net; the true maximum is below 30 (PGD's best is far
    # lower) and above 5: the MILP decides both properties at the root
    net = random_mlp(tmp_path, 0)
    proved = verify(net, box_property(tmp_path, 20, 30.0), Options(timeout=60))
    assert proved.verdict is Verdict.UNSAT and "MILP" in proved.reason
    assert proved.stats["milp"]["rows"][0][1] in ("proved", "optimal")
    broken = verify(net, box_property(tmp_path, 20, 5.0), Options(timeout=60, samples=1,
                                                                   pgd_restarts=1,
                                                                   pgd_steps=1))
    assert broken.verdict is Verdict.SAT


def _classifier(tmp_path, seed, n_in=24, hidden=20, n_out=5):
    """A 2-hidden-layer ReLU classifier; more than 16 inputs, so that ReLU
    splitting (and with it the MILP) runs rather than input splitting."""
    return save(relu_mlp_model(seed, n_in, hidden, n_out, bias=0.3, divisor=3.0),
                tmp_path / f"cls{seed}.onnx")


# (seed, eps) where CROWN alone does not prove robustness and the MILP does
# (seed 0 at eps 0.1: four rows)
MILP_CASES = [(0, 0.08), (0, 0.1), (1, 0.04), (3, 0.02)]


@pytest.mark.parametrize("seed,eps", MILP_CASES)
def test_milp_rows_in_threads_answer_as_in_turn_and_proofs_hold_in_float32(tmp_path, seed,
                                                                          eps):
    """Rows solved two at a time give the verdict rows solved in turn give; a MILP
    unsat holds on float32 points onnxruntime evaluates (random points and box
    corners); fd 1 points where it pointed before (HiGHS's output is sent to
    stderr only while it solves)."""
    import os

    from verifier.runtime import open_session
    from verifier.spec.generate import robustness_property

    net = _classifier(tmp_path, seed)
    session = open_session(net, device="cpu")
    x = np.random.default_rng(100 + seed).uniform(-1, 1, 24).astype(np.float32)
    label = int(session.run(x[None]).argmax())
    prop = robustness_property(x, label, eps, 5)
    stdout_before = os.fstat(1)
    answers = [verify(net, prop, Options(timeout=60, seed=0, workers=w)) for w in (1, 2)]
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (stdout_before.st_dev, stdout_before.st_ino)
    assert [a.verdict for a in answers] == [Verdict.UNSAT] * 2, [a.reason for a in answers]
    assert all("MILP" in a.reason and a.stats["milp"]["rows"] for a in answers)
    region = prop.cases[0].region
    rng = np.random.default_rng(seed)
    points = rng.uniform(region.lower, region.upper, (20000, x.size))
    corners = np.where(rng.random((4096, x.size)) < 0.5, region.lower, region.upper)
    y = session.run(np.concatenate([points, corners]).astype(np.float32))
    assert (y[:, label:label + 1] > np.delete(y, label, axis=1)).all(), \
        "an unsat with a float32 point of another class"


def test_no_row_starts_after_a_failure():
    import time as _time

    started = []

    def solve(r):
        started.append(r)
        _time.sleep(0.01 if r == 0 else 0.3)
        return r

    seen = []
    failed = {"yes": False}
    for r, answer in milp._solve_rows([0, 1, 2, 3, 4], solve, 2, lambda: failed["yes"]):
        seen.append(r)
        failed["yes"] = True  # the first answer fails the case
    assert sorted(started) == [0, 1] and sorted(seen) == [0, 1]
    # in turn (one worker): nothing after the failure
    started.clear()
    failed["yes"] = False
    for r, answer in milp._solve_rows([0, 1, 2], solve, 1, lambda: failed["yes"]):
        failed["yes"] = True
    assert started == [0]


def _network_point(graph, enc, x):
    """The encoding's variables at input ``x`` as the network computes them:
    inputs, then per hidden layer z and a, then each unstable ReLU's phase."""
    from verifier.bounds.lp_refine import linear_weights, mlp_layers

    linears, relus = mlp_layers(graph)
    values, a = [x], x
    for k in range(len(relus)):
        W, b = linear_weights(graph.nodes[linears[k]])
        z = W @ a + b
        a = np.maximum(z, 0.0)
        values += [z, a]
    v = np.concatenate(values)
    phases = [(v[y_cols] > 0).astype(float) for _, _, _, y_cols, _ in enc.unstable]
    return np.concatenate([v] + phases)


@pytest.mark.parametrize("seed", range(3))
def test_cuts_keep_every_network_point_and_tighten_the_relaxation(seed):
    """Every ideal-formulation cut holds at network points (random inputs and box
    corners, with their true phases); the LP bound only rises; the MILP with the
    cuts still never claims a bound above the grid minimum."""
    from scipy.optimize import LinearConstraint, Bounds, milp as scipy_milp

    graph, enc, minimum = _setup(seed)
    objectives = [milp.row_objective(enc, np.eye(3)[row], 0.0)[0] for row in range(3)]
    strong = milp.strengthen(enc, objectives, rounds=3)
    assert strong.A.shape[0] > enc.A.shape[0], "no cut was violated at any LP optimum"
    rng = np.random.default_rng(seed)
    lower, upper = enc.lb[:2], enc.ub[:2]
    inputs = np.concatenate([rng.uniform(lower, upper, (3000, 2)),
                             np.array([[lower[0], lower[1]], [lower[0], upper[1]],
                                       [upper[0], lower[1]], [upper[0], upper[1]]])])
    for x in inputs:
        v = _network_point(graph, strong, x)
        assert np.all(v >= strong.lb - 1e-12) and np.all(v <= strong.ub + 1e-12)
        r = strong.A @ v
        assert np.all(r <= strong.row_upper + 1e-9) and np.all(r >= strong.row_lower - 1e-9)
    rises = []
    for g in objectives:
        lp = [scipy_milp(g, constraints=LinearConstraint(e.A, e.row_lower, e.row_upper),
                         bounds=Bounds(e.lb, e.ub)).fun for e in (enc, strong)]
        assert lp[1] >= lp[0] - 1e-9
        rises.append(lp[1] - lp[0])
    assert max(rises) > 1e-3, rises
    for row in range(3):
        c_row, d = np.eye(3)[row], minimum[row] - 1.0
        g, constant = milp.row_objective(strong, c_row, d)
        tol = milp.tolerance(strong, g, constant)
        answer = milp.decide_row(strong, c_row, d, 1.0 - 3 * tol - 0.05, 30.0)
        assert answer.status in ("proved", "optimal")
        assert answer.lower <= 1.0 + 1e-9
