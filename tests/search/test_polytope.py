"""verifier.search.polytope: certificates, box tightening, propagation, feasibility.

Soundness is checked against points of the region (sampled, or found by an
independent LP), never against the module's own answers.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from verifier.search.polytope import (
    deepest_point, lagrangian_lower, polytope_infeasible, propagate, tighten_box,
)
from verifier.spec.property import OutputPolytope


def random_region(rng, n=4, k=3):
    lower = rng.uniform(-2, 0, n)
    upper = lower + rng.uniform(0.1, 2, n)
    A = rng.normal(size=(k, n))
    centre = (lower + upper) / 2
    b = A @ centre + rng.uniform(-0.3, 0.5, k)   # some regions empty, most not
    return lower, upper, A, b


def points_in(rng, lower, upper, A, b, count=4000):
    x = lower + rng.random((count, len(lower))) * (upper - lower)
    return x[np.all(x @ A.T <= b, axis=1)]


def exact_min(c, lower, upper, A, b):
    res = linprog(c, A_ub=A, b_ub=b, bounds=list(zip(lower, upper)), method="highs")
    return res.fun if res.status == 0 else None


@pytest.mark.parametrize("seed", range(12))
def test_lagrangian_lower_is_below_every_feasible_value_for_any_multipliers(seed):
    rng = np.random.default_rng(seed)
    lower, upper, A, b = random_region(rng)
    x = points_in(rng, lower, upper, A, b)
    c = rng.normal(size=len(lower))
    for y in (rng.uniform(0, 3, len(b)), np.zeros(len(b)), rng.normal(size=len(b))):
        bound = lagrangian_lower(c, y, A, b, lower, upper)
        if len(x):
            assert bound <= (x @ c).min()
        best = exact_min(c, lower, upper, A, b)
        if best is not None:
            assert bound <= best + 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_tightened_box_contains_the_region_and_matches_the_lp(seed):
    rng = np.random.default_rng(seed)
    lower, upper, A, b = random_region(rng)
    new_lower, new_upper, empty = tighten_box(lower, upper, A, b, deadline=np.inf)
    x = points_in(rng, lower, upper, A, b)
    if empty:
        assert len(x) == 0 and exact_min(np.zeros(len(lower)), lower, upper, A, b) is None
        return
    assert np.all(new_lower >= lower) and np.all(new_upper <= upper)
    assert np.all(x >= new_lower) and np.all(x <= new_upper)
    for i in range(len(lower)):   # tight: within LP tolerances of the true extremes
        e = np.eye(len(lower))[i]
        assert new_lower[i] == pytest.approx(exact_min(e, lower, upper, A, b), abs=1e-6)
        assert new_upper[i] == pytest.approx(-exact_min(-e, lower, upper, A, b), abs=1e-6)


def test_empty_region_is_certified_and_a_thin_one_is_not_declared_empty():
    lower, upper = np.full(3, -0.5), np.full(3, 0.5)
    A = np.array([[1.0, 1.0, 0.0]])
    assert deepest_point(lower, upper, A, np.array([-1.5])).empty          # x0 + x1 <= -1.5
    assert deepest_point(lower, upper, A, np.array([-1.0 - 1e-6])).empty  # misses by 1e-6
    # exactly touching the corner, and 1e-12 inside: a point exists, never "empty"
    for rhs in (-1.0, -1.0 + 1e-12):
        depth = deepest_point(lower, upper, A, np.array([rhs]))
        assert not depth.empty
    # two rows that leave only a sliver 1e-11 wide (HiGHS' tolerances are larger)
    A2 = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])
    assert not deepest_point(lower, upper, A2, np.array([0.3, -0.3 + 1e-11])).empty
    assert deepest_point(lower, upper, A2, np.array([0.3, -0.3 - 1e-6])).empty


def poly(rows, d, strict=None):
    return OutputPolytope(np.array(rows, dtype=float), np.array(d, dtype=float), strict)


@pytest.mark.parametrize("rows, d, strict, infeasible", [
    ([[0.0, 0.0]], [0.0], [True], True),                        # (< Y_0 Y_0): 0 < 0
    ([[0.0, 0.0]], [0.0], [False], False),                      # (<= Y_0 Y_0)
    ([[0.0, 0.0]], [-1.0], [False], True),                      # 0 <= -1
    ([[1.0, 0.0], [-1.0, 0.0]], [0.0, -1.0], None, True),       # Y_0 <= 0 and Y_0 >= 1
    ([[1.0, 0.0], [-1.0, 0.0]], [1.0, -1.0], None, False),      # Y_0 = 1
    ([[1.0, 0.0], [-1.0, 0.0]], [1.0, -1.0], [True, False], True),  # Y_0 < 1 and Y_0 >= 1
    ([[1.0, -1.0], [0.0, 1.0], [-1.0, 0.0]], [0.0, -2.0, 1.0], None, True),  # y0<=y1<=-2, y0>=-1
    ([[1.0, -1.0], [0.0, 1.0], [-1.0, 0.0]], [0.0, -2.0, 3.0], None, False),
    ([[0.5, 0.25], [-1.5, -0.75]], [0.1, -0.31], None, True),   # scaled rows
    # 0.1 and 0.3 are not exactly 1:3 in float64: the rows meet, very far away
    ([[0.1, 0.2], [-0.3, -0.6]], [0.1, -0.31], None, False),
    ([[1.0, 0.0]], [-5.0], None, False),
])
def test_output_polytopes_infeasible_on_their_own(rows, d, strict, infeasible):
    assert polytope_infeasible(poly(rows, d, strict)) is infeasible


@pytest.mark.parametrize("seed", range(20))
def test_output_infeasibility_is_never_claimed_for_a_feasible_polytope(seed):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(4, 3))
    y = rng.normal(size=3)
    d = C @ y + rng.uniform(0, 1e-6, 4)        # y satisfies every row
    assert not polytope_infeasible(poly(C, d))


@pytest.mark.parametrize("seed", range(12))
def test_propagation_keeps_every_point_of_the_region_and_drops_only_empty_boxes(seed):
    rng = np.random.default_rng(seed)
    lower, upper, A, b = random_region(rng, n=3, k=2)
    sub_lower = lower + rng.random((64, 3)) * (upper - lower)
    sub_upper = sub_lower + rng.random((64, 3)) * (upper - sub_lower)
    new_lower, new_upper, keep = propagate(sub_lower, sub_upper, A, b)
    assert np.all(new_lower[keep] <= new_upper[keep])
    for j in range(64):
        x = points_in(rng, sub_lower[j], sub_upper[j], A, b, count=500)
        if not keep[j]:
            assert len(x) == 0
            assert exact_min(np.zeros(3), sub_lower[j], sub_upper[j], A, b) is None
        else:
            assert np.all(x >= new_lower[j]) and np.all(x <= new_upper[j])


def test_usual_multi_row_polytopes_need_no_lp(monkeypatch):
    # acasxu-style "Y_0 is the minimum" (strict and not), and a decreasing direction:
    # so no LP (and no scipy.optimize import) is paid for them
    import verifier.search.polytope as polytope

    def no_lp(*args):
        raise AssertionError("an LP was solved")

    monkeypatch.setattr(polytope, "_linprog", no_lp)
    rows = [[-1.0, 1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0, 1.0]]
    assert not polytope_infeasible(poly(rows, [0.0] * 4, [True] * 4))
    assert not polytope_infeasible(poly(rows, [0.0] * 4))
    assert not polytope_infeasible(poly([[1.0, 1.0], [1.0, -1.0]], [-3.0, -1.0]))
    # rows on one output alone: intervals decide (touching ones go to the LP)
    assert polytope_infeasible(poly([[1.0, 0.0], [-1.0, 0.0]], [0.0, -1.0]))
    assert polytope_infeasible(poly([[0.0, 3.0], [0.0, -0.5], [1.0, 0.0]], [0.3, -0.1, 5.0]))
    assert not polytope_infeasible(poly([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]],
                                        [2.0, -1.0, -4.0]))
