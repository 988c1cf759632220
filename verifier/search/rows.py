"""A case's unsafe polytopes as one stacked table of rows, for batched decisions.

The rows of polytope k are contiguous (``starts[k]`` to ``starts[k+1]``), so
per-polytope reductions are single ``reduceat`` calls: no Python loop per
box, row or polytope. Every refutation goes through
:func:`verifier.bounds.margin.refuted`, each row against its own float32
decision margin on that box (:meth:`CaseRows.margins`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.bounds.margin import decision_margins, refuted


@dataclass(frozen=True)
class CaseRows:
    """All rows of a case's polytopes stacked: C (R, n_out), d (R,), owner (R,),
    starts (P,) the first row of each polytope."""

    C: np.ndarray
    d: np.ndarray
    owner: np.ndarray
    count: int
    starts: np.ndarray

    @classmethod
    def of(cls, case):
        C = np.vstack([p.C for p in case.unsafe])
        d = np.concatenate([p.d for p in case.unsafe])
        owner = np.concatenate([np.full(p.rows, k) for k, p in enumerate(case.unsafe)])
        starts = np.concatenate([[0], np.cumsum([p.rows for p in case.unsafe])[:-1]])
        return cls(C, d, owner, len(case.unsafe), starts.astype(np.intp))

    def margins(self, graph, node_bounds, lower=None, float32=False):
        """(B, R) decision margins of the rows from a bound result's node bounds;
        ``lower``: the rows' lower bounds there, so that the direct float32
        bound only runs where it can change a decision; ``float32``: the
        bounds are about the float32 network (``BoundOptions.float32``)."""
        return decision_margins(graph, node_bounds, self.C, self.d, lower=lower,
                                float32=float32)

    def open_polytopes(self, lower, margin):
        """(B, P) bool: polytopes not refuted by row lower bounds (B, R) given
        the rows' decision margins (B, R)."""
        return ~np.logical_or.reduceat(refuted(lower, margin), self.starts, axis=1)

    def best_rows(self, lower):
        """(B, P) the largest row lower bound of each polytope, and (B, P) its row."""
        best = np.maximum.reduceat(lower, self.starts, axis=1)
        hit = lower == best[:, self.owner]
        # the first row of each polytope reaching its best: reduceat on masked row indices
        index = np.where(hit, np.arange(lower.shape[1]), lower.shape[1])
        return best, np.minimum.reduceat(index, self.starts, axis=1)

    def worst_open(self, lower, open_poly=None):
        """(B,) per element the smallest 'best row' lower bound over open polytopes."""
        best = np.maximum.reduceat(lower, self.starts, axis=1)
        if open_poly is not None:
            best = np.where(open_poly, best, np.inf)
        return best.min(axis=1)

    def worst_margin(self, y):
        """(B,) min over polytopes of max over its rows of C y - d (<= 0: y is
        inside a polytope, up to strictness), and the row attaining it."""
        values = y @ self.C.T - self.d
        best, row = self.best_rows(values)
        k = best.argmin(axis=1)
        pick = np.arange(len(y))
        return best[pick, k], row[pick, k]


    def margins_at(self, graph, x):
        """(B,) :meth:`worst_margin` of the IR's float64 outputs at the inputs
        ``x`` (B, n_in) of ``graph``."""
        from verifier.ir import evaluate

        y = evaluate(graph, x.reshape((len(x),) + tuple(graph.input_shape)))
        return self.worst_margin(y.reshape(len(x), -1))[0]


def record_root_margins(stats, margin):
    """Record the largest and median row margins of the root (first case's) in the stats."""
    if "margin_max" not in stats:
        stats["margin_max"] = float(margin.max())
        stats["margin_median"] = float(np.median(margin))
    return margin
