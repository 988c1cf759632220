"""Bounds of a whole property: every unsafe row and every output, per input region.

This is the library side of ``verifier bounds``: one call bounds every case of
a :class:`verifier.spec.Property` (all input regions in one batch), says which
unsafe disjuncts the bounds already refute (each row against its own float32
margin), and whether that proves the property. Input constraints ``A x <= b`` beyond the box are not used (the box
is a superset of the region, so this is sound); strict rows are read as their
closure (sound for refutation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.engine import compute_bounds
from verifier.bounds.inputs import Box
from verifier.bounds.margin import decision_margins, refuted
from verifier.bounds.roundoff import float32_hull
from verifier.bounds.result import BoundOptions


@dataclass(frozen=True)
class DisjunctBounds:
    """Bounds of the rows ``C·y - d`` of one unsafe polytope ``C·y <= d``, and
    each row's decision margin (:func:`verifier.bounds.margin.decision_margins`)."""

    lower: np.ndarray
    upper: np.ndarray
    margin: np.ndarray

    @property
    def refuting_row(self) -> int | None:
        """A row whose lower bound is above its margin (the best one), if any."""
        if self.lower.size == 0 or not refuted(self.lower, self.margin).any():
            return None
        return int(np.argmax(self.lower - self.margin))

    @property
    def refuted(self) -> bool:
        return self.refuting_row is not None

    @property
    def slack(self) -> float:
        """The best row's lower bound minus its margin: > 0 means refuted."""
        return float((self.lower - self.margin).max()) if self.lower.size else -np.inf


@dataclass(frozen=True)
class CaseBounds:
    """One input region: bounds of every output and of every unsafe disjunct."""

    output_lower: np.ndarray
    output_upper: np.ndarray
    disjuncts: tuple[DisjunctBounds, ...]
    ignored_input_constraints: int

    @property
    def refuted(self) -> bool:
        return all(d.refuted for d in self.disjuncts)


@dataclass(frozen=True)
class PropertyBounds:
    method: str
    cases: tuple[CaseBounds, ...]
    seconds: float

    @property
    def proved(self) -> bool:
        """Every disjunct of every case refuted: the property holds (unsat)."""
        return all(case.refuted for case in self.cases)

    @property
    def unconstrained(self) -> int:
        """Disjuncts with no output row: every output is unsafe, nothing to refute."""
        return sum(d.lower.size == 0 for case in self.cases for d in case.disjuncts)

    @property
    def worst_margin(self) -> float:
        """min over disjuncts of the best row's lower bound minus its margin
        (> 0: proved)."""
        return min(d.slack for case in self.cases for d in case.disjuncts)

    @property
    def margins(self) -> np.ndarray:
        """Every row's decision margin (the float32 gap bound and the floor)."""
        return np.concatenate([d.margin for case in self.cases for d in case.disjuncts])

    def to_dict(self) -> dict:
        def floats(a):
            return [float(v) for v in a]

        return {
            "method": self.method,
            "seconds": self.seconds,
            "margin": ({"max": float(self.margins.max()),
                        "median": float(np.median(self.margins))}
                       if self.margins.size else None),  # None: no output row at all
            "proved": self.proved,
            "worst_margin": (self.worst_margin if np.isfinite(self.worst_margin)
                             else None),  # strict JSON has no -Infinity
            "disjuncts": sum(len(c.disjuncts) for c in self.cases),
            "refuted": sum(d.refuted for c in self.cases for d in c.disjuncts),
            "unconstrained_disjuncts": self.unconstrained,
            "cases": [{
                "refuted": case.refuted,
                "ignored_input_constraints": case.ignored_input_constraints,
                "outputs": {"lower": floats(case.output_lower),
                            "upper": floats(case.output_upper)},
                "disjuncts": [{"refuted": d.refuted, "refuting_row": d.refuting_row,
                               "lower": floats(d.lower), "upper": floats(d.upper),
                               "margin": floats(d.margin)}
                              for d in case.disjuncts],
            } for case in self.cases],
        }


def bound_property(graph, prop, method: str = "crown",
                   options: BoundOptions | None = None) -> PropertyBounds:
    """Bound every unsafe row ``C·y - d`` and every output of ``prop`` on ``graph``."""
    prop.check_sizes(graph.input_size, graph.output_size)
    start = time.perf_counter()
    cases = prop.cases
    n_out = graph.output_size
    counts = [[p.rows for p in case.unsafe] for case in cases]
    width = max(sum(c) for c in counts)
    # one batch: row block padded to the widest case, then the identity for the outputs
    C = np.zeros((len(cases), width + n_out, n_out))
    d = np.zeros((len(cases), width + n_out))
    for b, case in enumerate(cases):
        rows = np.concatenate([p.C for p in case.unsafe])
        C[b, :rows.shape[0]] = rows
        d[b, :rows.shape[0]] = np.concatenate([p.d for p in case.unsafe])
        C[b, width:] = np.eye(n_out)
    # the float32 network only sees float32 inputs: bound the float32 hull of each box
    box = Box(*float32_hull(np.stack([c.region.lower for c in cases]),
                            np.stack([c.region.upper for c in cases])))
    result = compute_bounds(graph, box, method=method, C=C, d=d, options=options)
    margin = decision_margins(graph, result.node_bounds, C, d, lower=result.lower)
    out = []
    for b, case in enumerate(cases):
        disjuncts, at = [], 0
        for count in counts[b]:
            rows = slice(at, at + count)
            disjuncts.append(DisjunctBounds(result.lower[b, rows], result.upper[b, rows],
                                            margin[b, rows]))
            at += count
        out.append(CaseBounds(result.lower[b, width:], result.upper[b, width:],
                              tuple(disjuncts), int(case.region.A.shape[0])))
    return PropertyBounds(method, tuple(out), time.perf_counter() - start)
