"""From a property to the arguments of :func:`verifier.bounds.compute_bounds`.

    for p in bound_problems(load_property("prop.vnnlib")):
        result = compute_bounds(graph, p.box, method="crown", C=p.C, d=p.d)
        margin = decision_margins(graph, result.node_bounds, p.C, p.d)
        unreachable = refuted(result.lower, margin).any()   # p's polytope, float32 network
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.bounds.inputs import Box
from verifier.bounds.roundoff import float32_hull


@dataclass(frozen=True, eq=False)
class BoundProblem:
    """One unsafe polytope ``C·y <= d`` of one input region of a property.

    ``box`` (batch 1) is the region's box widened outward to float32 (the
    inputs onnxruntime's network can see); the region's linear input
    constraints (``constraints`` of them), if any, are not in it, so bounds
    over the box are sound (the box is a superset) but may be looser. The
    polytope is unreachable when some row's lower bound of ``C·y - d`` is
    above that row's float32 decision margin
    (:func:`verifier.bounds.decision_margins`, :func:`verifier.bounds.refuted`).
    """

    box: Box
    C: np.ndarray
    d: np.ndarray
    case: int
    polytope: int
    constraints: int = 0

    def __repr__(self) -> str:
        return (f"BoundProblem(case {self.case}, polytope {self.polytope}: box over "
                f"{self.box.size} inputs, {self.C.shape[0]} rows C·y <= d"
                + (f", {self.constraints} input constraints not in the box"
                   if self.constraints else "") + ")")


def bound_problems(prop) -> list[BoundProblem]:
    """Every (input region, unsafe polytope) pair of ``prop`` (a
    :class:`verifier.spec.Property`), in the property's order."""
    problems = []
    for k, case in enumerate(prop.cases):
        region = case.region
        lower, upper = float32_hull(region.lower, region.upper)
        box = Box(lower[None], upper[None])
        for j, polytope in enumerate(case.unsafe):
            problems.append(BoundProblem(box, polytope.C, polytope.d, k, j,
                                         int(region.A.shape[0])))
    return problems


__all__ = ["BoundProblem", "bound_problems"]
