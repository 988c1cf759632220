"""Sound bound propagation over the core IR: IBP, CROWN and alpha-CROWN.

    compute_bounds(graph, Box(lower, upper), method="crown", C=C, d=d)
        -> BoundsResult(lower, upper, pre_activation, node_bounds, alpha, ...)

    bound_property(graph, prop, method) -> PropertyBounds   (every case, row, output)

Input sets are batched (:class:`Box`, :class:`L2Ball`); branch and bound
passes split constraints, the parent's intermediate bounds and its
alpha/beta as warm starts. Decisions go through :func:`refuted` with the one
:data:`DECISION_MARGIN`.
"""
from verifier.bounds.engine import compute_bounds
from verifier.bounds.inputs import Box, L2Ball
from verifier.bounds.margin import DECISION_MARGIN, refuted
from verifier.bounds.report import PropertyBounds, bound_property
from verifier.bounds.result import METHODS, BoundOptions, BoundsResult, Interval

__all__ = ["BoundOptions", "BoundsResult", "Box", "DECISION_MARGIN", "Interval", "L2Ball",
           "METHODS", "PropertyBounds", "bound_property", "compute_bounds", "refuted"]
