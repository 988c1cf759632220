"""verifier.search.plan: the cases as the search sees them (projection,
sub-box restriction, empty regions and contradictory polytopes left out)."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.result import float32_inside
from verifier.search.plan import LpBudget, SearchCase, prepare
from verifier.spec import parse_vnnlib
from verifier.spec.property import Case, InputRegion, OutputPolytope


def poly(rows, d, strict=None):
    return OutputPolytope(np.array(rows, dtype=float), np.array(d, dtype=float), strict)


@pytest.mark.parametrize("seed", range(8))
def test_projected_points_round_to_float32_points_of_the_region(seed):
    rng = np.random.default_rng(seed)
    n = 5
    lower, upper = np.full(n, -0.5), np.full(n, 0.5)
    A = rng.normal(size=(2, n))
    A[:, :2] = [[1.0, 1.0], [1.0, -1.0]]
    b = np.array([-0.9, 0.05])
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + \
        "(declare-const Y_0 Real)\n" + "".join(
            f"(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n" for i in range(n))
    terms = [" ".join(f"(* {float(A[r, i])!r} X_{i})" for i in range(n)) for r in range(2)]
    text += "".join(f"(assert (<= (+ {t}) {float(b[r])!r}))\n" for r, t in enumerate(terms))
    text += "(assert (>= Y_0 0.0))\n"
    prop = parse_vnnlib(text)
    plan = prepare(prop, budget_seconds=5.0)
    (sc,) = plan.cases
    region = prop.cases[0].region
    lo, hi = sc.case.region.lower, sc.case.region.upper
    x = sc.project(rng.uniform(-0.5, 0.5, (300, n)), np.tile(lo, (300, 1)),
                   np.tile(hi, (300, 1)))
    inside = [region.contains(float32_inside(p, region.lower, region.upper)) for p in x]
    assert all(inside)


def test_restrict_shrinks_sub_boxes_and_drops_those_that_miss_the_polytope_by_lp():
    box = (np.full((1, 2), -0.5), np.full((1, 2), 0.5))

    def case(A, b):
        region = InputRegion(np.full(2, -0.5), np.full(2, 0.5), np.array(A), np.array(b))
        return SearchCase(0, Case(region, (poly([[1.0]], [0.0]),)), region.b)

    # x0 + x1 <= -0.9: propagation shrinks the box to [-0.5, -0.4]^2
    new_lower, new_upper = case([[1.0, 1.0]], [-0.9]).restrict(*box)
    assert np.allclose(new_lower, -0.5) and np.allclose(new_upper, -0.4)
    # and x0 + x1 >= -0.85: each row alone crosses the box, only the LP sees them miss
    both = case([[1.0, 1.0], [-1.0, -1.0]], [-0.9, 0.85])
    assert len(both.restrict(*box)[0]) == 1                    # no LP: kept (sound)
    assert len(both.restrict(*box, lp_budget=LpBudget(1.0))[0]) == 0


def test_prepare_leaves_out_empty_regions_and_contradictory_polytopes():
    base = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
    text = base + ("(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) "
                   "(<= (+ X_0 X_1) -0.5))"
                   " (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1))))\n"
                   "(assert (or (< Y_0 Y_0) (and (<= Y_0 0) (>= Y_0 1)) (>= Y_0 5)))\n")
    prop = parse_vnnlib(text)
    plan = prepare(prop, budget_seconds=5.0)
    assert plan.empty_regions == 1 and plan.infeasible_polytopes == 2
    (sc,) = plan.cases
    assert sc.index == 1 and len(sc.case.unsafe) == 1 and sc.case.unsafe[0].d[0] == -5.0
    assert "1 of 2 input regions are empty" in plan.reason


def test_prepare_without_time_for_lps_keeps_everything():
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
            "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
            "(assert (<= (+ X_0 X_1) -0.5))\n(assert (and (< Y_0 1) (> Y_0 1)))\n")
    prop = parse_vnnlib(text)
    assert not prepare(prop, budget_seconds=5.0).cases             # empty region
    (sc,) = prepare(prop, budget_seconds=-1.0).cases              # no LP: nothing decided
    assert sc.case.region.upper.tolist() == [1.0, 1.0] and len(sc.case.unsafe) == 1
