"""Value types of the bound engines: intervals, options and results."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The bound propagation methods, from the cheapest to the tightest.
METHODS = ("ibp", "crown", "alpha-crown")


@dataclass(frozen=True, eq=False)
class Interval:
    """Element-wise bounds ``lower <= v <= upper``; arrays ``(B, n)`` (flat C order)."""

    lower: np.ndarray
    upper: np.ndarray

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def take(self, index) -> "Interval":
        return Interval(self.lower[index], self.upper[index])


@dataclass(frozen=True)
class BoundOptions:
    """Tuning knobs of :func:`verifier.bounds.compute_bounds` (all have sound defaults).

    Attributes:
        intermediate: how the pre-activation bounds of nonlinearities are
            computed for 'crown' and 'alpha-crown': ``"auto"`` (CROWN where its
            estimated work is below ``max_crown_work``, IBP elsewhere; the
            tighter of the two is always kept), ``"crown"`` (always) or
            ``"ibp"`` (never CROWN).
        max_crown_work: work budget of one intermediate CROWN pass, in
            multiply-adds of the backward sweep (batch x rows x sizes).
        recompute_intermediate: when pre-activation bounds are passed in,
            also recompute them and keep the tighter (default: reuse them).
        chunk_elements: the largest coefficient array (in float64 entries)
            one backward sweep may hold; rows and batch are chunked to fit.
        alpha_iterations, alpha_lr, beta_lr, lr_decay: projected Adam ascent
            of alpha-CROWN on the ReLU lower slopes (and the slopes of smooth
            activations) and, where splits are given, the beta multipliers.
        optimize_smooth: let alpha-CROWN also move the lines of sigmoid,
            tanh, softplus and GELU.
        early_stop: stop alpha-CROWN once every row is refuted (only when
            no upper bounds are asked for).
    """

    intermediate: str = "auto"
    max_crown_work: float = 4e9
    recompute_intermediate: bool = False
    chunk_elements: int = 1 << 23
    alpha_iterations: int = 20
    alpha_lr: float = 0.1
    beta_lr: float = 0.05
    lr_decay: float = 0.98
    optimize_smooth: bool = True
    early_stop: bool = True

    def __post_init__(self):
        if self.intermediate not in ("auto", "crown", "ibp"):
            raise ValueError(f"intermediate must be 'auto', 'crown' or 'ibp', "
                             f"got {self.intermediate!r}")


@dataclass(frozen=True, eq=False)
class BoundsResult:
    """What :func:`verifier.bounds.compute_bounds` returns.

    Attributes:
        method: 'ibp', 'crown' or 'alpha-crown'.
        lower, upper: ``(B, R)``: bounds of ``C·y - d`` (of ``y`` without C).
            ``upper`` is None when it was not asked for. Rows of an empty
            sub-problem (see ``infeasible``) have lower +inf and upper -inf.
        pre_activation: nonlinear node index -> :class:`Interval` of that
            node's *input* (``(B, n)``), after every tightening (given bounds,
            splits, IBP, CROWN). This is the table branch and bound picks
            neurons from and passes back in to children.
        node_bounds: every node index -> :class:`Interval` of its output.
        alpha: for 'alpha-crown', the best slopes per row, for warm starts:
            node index -> {'lower' or 'upper': ``(B, R_all, n)``}, where
            ``R_all`` counts the lower rows then (if asked) the upper rows.
        beta: for 'alpha-crown' with splits, the best multipliers of the
            split constraints: Relu node index -> ``(B, R_all, n)``.
        infeasible: ``(B,)`` bool: the split constraints contradict the
            bounds, so the sub-problem's input set is empty.
        intermediate_methods: node index -> 'ibp' or 'crown' (how the input
            bounds of each nonlinearity were computed, for diagnostics).
    """

    method: str
    lower: np.ndarray
    upper: np.ndarray | None
    pre_activation: dict[int, Interval]
    node_bounds: dict[int, Interval]
    alpha: dict[int, dict[str, np.ndarray]] | None = None
    beta: dict[int, np.ndarray] | None = None
    infeasible: np.ndarray | None = None
    intermediate_methods: dict[int, str] = field(default_factory=dict)
