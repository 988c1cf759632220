"""The cases as the search sees them: linear input constraints and
self-contradictory unsafe sets, decided or used before and during the search.

A case's input region is a box intersected with ``A x <= b``; its unsafe sets
are polytopes ``C y <= d``. :func:`search_plan` prepares every case once,
before falsification (the facts come from :mod:`verifier.search.polytope`,
each on a checked certificate):

* an input region that is empty is dropped: nothing in it can be unsafe;
* an unsafe polytope that is infeasible on its own is dropped (refuted before
  any bound is computed): ``(< Y_0 Y_0)``, ``Y_0 <= 0 and Y_0 >= 1``;
* the box of a region with rows in ``A`` is tightened by LP (min and max of
  each input over box ∩ {A x <= b}, in a small time share). The tightened box
  still contains the region, so bounds over it are sound: the bound engines
  work on this box, a relaxation of the region;
* falsification projects its points onto box ∩ {A x <= b - delta}, with delta
  large enough that rounding the point to float32 keeps it in the region
  (:meth:`SearchCase.project`);
* input splitting drops sub-boxes that miss ``A x <= b`` and shrinks the others
  to a box around their part of the region (:meth:`SearchCase.restrict`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.search.polytope import (
    Depth, deepest_point, dykstra, farkas_infeasible, propagate, row_scale, screen, solver,
    tighten_box,
)
from verifier.spec.property import Case, InputRegion

#: Relative shrink of ``b`` for projected points: rounding a point to float32
#: moves ``a·x`` by at most ~3 * 2^-24 * sum |a_j x_j|; this is ~16 times that.
FLOAT32_SHRINK = 1e-6


@dataclass(frozen=True, eq=False)
class SearchCase:
    """A case as the search sees it.

    ``index``: the case's index in the property (counterexamples are replayed
    against the original case); ``case``: the tightened box (a superset of the
    region, strict bounds read as their closure), the rows ``A x <= b`` and
    the unsafe polytopes that are not infeasible on their own; ``target``:
    ``b`` shrunk for float32 rounding (:data:`FLOAT32_SHRINK`) where points
    are projected; ``interior``: a point of box ∩ {A x <= target} when one is
    known (the deepest point of the depth LP), else None.
    """

    index: int
    case: Case
    target: np.ndarray
    interior: np.ndarray | None = None

    @property
    def A(self) -> np.ndarray:
        return self.case.region.A

    @property
    def b(self) -> np.ndarray:
        return self.case.region.b

    @property
    def constrained(self) -> bool:
        return self.A.shape[0] > 0

    @property
    def unconstrained_output(self) -> bool:
        """Some unsafe polytope has no row: every output is unsafe."""
        return any(p.rows == 0 for p in self.case.unsafe)

    def project(self, x, lower, upper):
        """Points of ``x`` (B, n) moved into ``[lower, upper] ∩ {A x <= target}``.

        A few rounds of Dykstra first (they cost a pass over the batch each);
        a point still outside is then moved along the segment towards
        :attr:`interior` (when that lies in its box) to the first point that
        satisfies every row, which exists because the interior point does.
        Without an interior point Dykstra runs to its full iteration count.
        """
        if not self.constrained:
            return np.clip(x, lower, upper)
        if self.interior is None:
            return dykstra(x, lower, upper, self.A, self.target, iterations=60)
        x = dykstra(x, lower, upper, self.A, self.target, iterations=2)
        values = x @ self.A.T
        bad = np.flatnonzero(np.any(values > self.target, axis=1)
                             & np.all((lower <= self.interior) & (self.interior <= upper),
                                      axis=1))
        if len(bad):
            inner = self.interior @ self.A.T
            over = values[bad] - self.target
            step = np.where(over > 0, over / np.maximum(values[bad] - inner, 1e-300), 0.0)
            theta = np.minimum(1.0, step.max(axis=1) * (1 + 1e-9) + 1e-12)
            x[bad] = x[bad] + theta[:, None] * (self.interior - x[bad])
        return x

    def restrict(self, lower, upper, lp_budget: "LpBudget | None" = None):
        """Sub-boxes (B, n) cut down to their part of ``A x <= b``.

        Returns (lower, upper) of the sub-boxes that may meet the region, each
        shrunk to a box that still contains its part of the region: one round
        of interval constraint propagation over the rows (a row's minimum
        over the box above ``b`` drops the box; otherwise each input is
        bounded by what the row leaves it), with outward rounding allowances.
        Boxes that two or more rows cut are then checked by the depth LP while
        ``lp_budget`` lasts, and dropped only on its certificate.
        """
        if not self.constrained:
            return lower, upper
        lower, upper, keep = propagate(lower, upper, self.A, self.b)
        lower, upper = lower[keep], upper[keep]
        if lp_budget is not None and len(lower):
            row_max = (np.maximum(self.A, 0) @ upper.T + np.minimum(self.A, 0) @ lower.T).T
            cut = row_max > self.b
            unsure = np.flatnonzero(cut.sum(axis=1) >= 2)
            gone = np.zeros(len(lower), dtype=bool)
            for j in unsure:
                if not lp_budget.allows():
                    break
                with lp_budget:
                    gone[j] = deepest_point(lower[j], upper[j], self.A, self.b).empty
            lower, upper = lower[~gone], upper[~gone]
        return lower, upper


class LpBudget:
    """A share of the search's time for LPs: ``allows()`` while the LP time
    stays under ``share`` of the time since the budget was made."""

    def __init__(self, share: float, floor: float = 0.05):
        self.share, self.floor = share, floor
        self.start = time.monotonic()
        self.spent = 0.0
        self._tick = None

    def allows(self) -> bool:
        return self.spent <= self.floor + self.share * (time.monotonic() - self.start)

    def __enter__(self):
        self._tick = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.spent += time.monotonic() - self._tick
        return False


@dataclass(frozen=True)
class Plan:
    """The cases left to search, and what was decided before any search."""

    cases: tuple[SearchCase, ...]
    regions: int
    empty_regions: int
    infeasible_polytopes: int

    @property
    def reason(self) -> str:
        """What was decided before the search (the whole answer when
        :attr:`cases` is empty)."""
        parts = []
        if self.empty_regions:
            which = ("the input region is empty" if self.regions == 1 else
                     f"{self.empty_regions} of {self.regions} input regions are empty")
            parts.append(f"{which}: no point of the box satisfies the linear input "
                         "constraints A x <= b (LP certificate)")
        if self.infeasible_polytopes:
            parts.append(f"{self.infeasible_polytopes} unsafe polytope(s) C y <= d have no "
                         "solution on their own (contradictory output constraints)")
        return "; ".join(parts)


def _polytope_key(poly):
    return poly.C.tobytes(), poly.C.shape, poly.d.tobytes(), poly.strict.tobytes()


def _shrunk(A, b, lower, upper, depth: Depth):
    """``b`` minus the float32 allowance, capped at half the region's depth."""
    reach = np.maximum(np.abs(lower), np.abs(upper))
    delta = FLOAT32_SHRINK * (np.abs(A) @ reach + np.abs(b))
    if np.isfinite(depth.t):
        delta = np.minimum(delta, 0.5 * max(depth.t, 0.0) * row_scale(A))
    return b - delta


def prepare(prop, budget_seconds: float, stats: dict | None = None) -> Plan:
    """Drop empty regions and infeasible polytopes, tighten boxes (see module docstring).

    ``budget_seconds`` bounds the time spent on LPs (emptiness, box
    tightening, multi-row polytopes; the cheap checks always run); what is
    left unchecked is kept as it is, which is sound.
    """
    if any(case.region.A.shape[0] for case in prop.cases):
        solver()                   # the import is not part of the LP time share
    deadline = time.monotonic() + budget_seconds
    cases, empty_regions, infeasible = [], 0, 0
    dead, undecided = screen([p for case in prop.cases for p in case.unsafe])
    ends = np.cumsum([len(case.unsafe) for case in prop.cases])
    farkas = {}                     # one LP per distinct polytope
    for index, case in enumerate(prop.cases):
        rows = slice(ends[index] - len(case.unsafe), ends[index])
        region = case.region
        lower, upper, A, b = region.lower, region.upper, region.A, region.b
        if A.shape[0] and time.monotonic() > deadline:
            depth = Depth(np.nan, None, False)      # no time left for its LP: not decided
        else:
            depth = deepest_point(lower, upper, A, b)
        if depth.empty:
            empty_regions += 1
            continue
        interior = None
        if A.shape[0]:
            share = time.monotonic() + max(0.0, deadline - time.monotonic()) / 2
            lower, upper, crossed = tighten_box(lower, upper, A, b, share)
            if crossed:
                empty_regions += 1
                continue
            if depth.x is not None and depth.t > 0:
                interior = depth.x
        gone = dead[rows].copy()
        for k in np.flatnonzero(undecided[rows]):
            if time.monotonic() > deadline:
                break               # the rest stays in the search, which is sound
            key = _polytope_key(case.unsafe[k])
            if key not in farkas:
                farkas[key] = farkas_infeasible(case.unsafe[k])
            gone[k] = farkas[key]
        infeasible += int(gone.sum())
        live = tuple(p for p, out in zip(case.unsafe, gone) if not out)
        if not live:
            continue
        if A.shape[0] or len(live) < len(case.unsafe):
            case = Case(InputRegion(lower, upper, A, b), live)
        target = _shrunk(A, b, lower, upper, depth) if A.shape[0] else b
        cases.append(SearchCase(index, case, target, interior))
    if stats is not None:
        for key, value in (("empty_input_regions", empty_regions),
                           ("infeasible_unsafe_polytopes", infeasible)):
            if value:
                stats[key] = value
    return Plan(tuple(cases), len(prop.cases), empty_regions, infeasible)


def search_plan(ctx) -> Plan:
    """The run's :class:`Plan`, made once (a twentieth of the timeout, at most 5 s)."""
    if ctx.plan is None:
        ctx.plan = prepare(ctx.prop, min(5.0, 0.05 * ctx.options.timeout), ctx.stats)
    return ctx.plan
