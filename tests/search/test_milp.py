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
