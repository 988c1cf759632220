"""Sound bound propagation over the core IR: IBP, CROWN and alpha-CROWN.

    compute_bounds(graph, Box(lower, upper), method="crown", C=C, d=d)
        -> BoundsResult(lower, upper, pre_activation, node_bounds, alpha, ...)

    bound_property(graph, prop, method) -> PropertyBounds   (every case, row, output)

Input sets are batched (:class:`Box`, :class:`L2Ball`); branch and bound
passes split constraints, the parent's intermediate bounds and its
alpha/beta as warm starts. Decisions go through :func:`refuted` with the
per-row margins of :func:`decision_margins` (the float32 rounding gap of
:mod:`verifier.bounds.roundoff`).
"""
from verifier.bounds.engine import compute_bounds
from verifier.bounds.inputs import Box, L2Ball
from verifier.bounds.margin import MARGIN_FLOOR, decision_margins, refuted
from verifier.bounds.report import PropertyBounds, bound_property
from verifier.bounds.result import METHODS, BoundOptions, BoundsResult, Interval

__all__ = ["BoundOptions", "BoundsResult", "Box", "Interval", "L2Ball", "MARGIN_FLOOR",
           "METHODS", "PropertyBounds", "bound_property", "compute_bounds", "decision_margins",
           "refuted"]
