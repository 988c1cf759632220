"""Value types of the bound engines: intervals, options and results."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The bound propagation methods, from the cheapest to the tightest.
METHODS = ("ibp", "crown", "alpha-crown")


def take_nested(table, index):
    """Index the batch axis of every array of an alpha/beta table (or None)."""
    if table is None:
        return None
    return {k: ({side: v[index] for side, v in value.items()} if isinstance(value, dict)
                else value[index]) for k, value in table.items()}


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
        keep_intermediate: nonlinear nodes whose given input bounds are
            reused even with ``recompute_intermediate`` (branch and bound
            passes the nodes a child's newest split cannot change: those
            whose input does not depend on the split neuron's output).
        chunk_elements: the largest coefficient array (in float64 entries)
            one backward sweep may hold; rows and batch are chunked to fit.
        alpha_iterations, alpha_lr, beta_lr, lr_decay: projected Adam ascent
            of alpha-CROWN on the ReLU lower slopes (and the slopes of smooth
            activations) and, where splits are given, the beta multipliers.
        optimize_smooth: let alpha-CROWN also move the lines of sigmoid,
            tanh, softplus and GELU.
        alpha_intermediate: alpha-CROWN also optimises the bounds of the
            intermediate nodes it computes by CROWN (each with its own slopes,
            as in the alpha-CROWN paper), not only the final rows, where
            ``alpha_iterations`` times the CROWN work of that node is at most
            ``max_alpha_work`` (the large conv layers of oval21 gain little
            from it for a high price).
        early_stop: stop alpha-CROWN once every row is refuted (only when
            no upper bounds are asked for).
        float32: bound the float32 network onnxruntime runs instead of the
            real-valued one (see :mod:`verifier.bounds.roundoff`): every
            node's bounds hold for its float32 value at every float32 point
            of the input box (which must be a :class:`Box`; pass its
            :func:`~verifier.bounds.roundoff.float32_hull`): IBP widened by
            the node's own rounding, each backward pass paying
            ``sum_k |A_k|·own_k``. Split constraints are then about the float
            values (sub-problems of a split still cover every float32 input)
            and a final bound refutes a row with no float32 gap in its
            margin. Not for graphs with Softmax.
        intersect_ibp: keep, for every intermediate bound and every final
            row, the tighter of IBP and CROWN (default). False gives textbook
            CROWN (Zhang et al. 2018): the input bounds of each nonlinearity
            from CROWN back-substitution alone (over every neuron, not only
            the ones IBP leaves unstable, with ``intermediate="crown"``) and
            the final rows from the backward pass alone. Both are sound and
            neither is always the tighter (the default also skips CROWN for
            the neurons IBP finds stable); textbook CROWN can be much looser
            than IBP, typically on IBP-trained networks. Bounds passed in
            and splits constrain both.
        deadline: a ``time.monotonic()`` value (None: none). Once it has
            passed, no further intermediate CROWN or alpha-CROWN pass and no
            further alpha-CROWN iteration is started: the bounds returned are
            the sound ones reached so far (IBP where CROWN was skipped, the
            CROWN pass, the best alpha iterate), and ``cut_short`` is set.
            The final rows still get their one CROWN pass.
    """

    intermediate: str = "auto"
    max_crown_work: float = 4e9
    recompute_intermediate: bool = False
    keep_intermediate: frozenset = frozenset()
    chunk_elements: int = 1 << 23
    alpha_iterations: int = 20
    alpha_lr: float = 0.1
    beta_lr: float = 0.05
    lr_decay: float = 0.98
    optimize_smooth: bool = True
    early_stop: bool = True
    alpha_intermediate: bool = True
    max_alpha_work: float = 5e7
    float32: bool = False
    intersect_ibp: bool = True
    deadline: float | None = None

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
        intermediate_methods: node index -> 'ibp', 'crown' or 'alpha-crown'
            (how the input bounds of each nonlinearity were computed).
        split_scores: for 'crown' and 'alpha-crown', Relu/PRelu (and
            Sigmoid/Tanh) node index -> ``(B, R, n)``: how much the CROWN
            lower bound of each row loses to each neuron's relaxation
            (>= 0, 0 when a ReLU is stable); a branching heuristic
            (BaBSR-like).
        cut_short: the deadline of :class:`BoundOptions` stopped some
            tightening or optimisation; the bounds are sound but may be
            looser than without a deadline.
        points: for 'crown' and 'alpha-crown', ``(B, R, n_in)``: per lower
            row, the input of the set where the final CROWN pass's linear
            lower bound is smallest (a candidate where the row may be low,
            e.g. for branch and bound to try as a counterexample).
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
    split_scores: dict[int, np.ndarray] = field(default_factory=dict)
    cut_short: bool = False
    points: np.ndarray | None = None

    @property
    def batch(self) -> int:
        return self.lower.shape[0]

    def take(self, index) -> "BoundsResult":
        """The result restricted to the batch elements ``index`` (a slice, an
        integer array or a boolean mask), e.g. to hand a parent's
        ``pre_activation``, ``alpha`` and ``beta`` to its children."""
        if isinstance(index, (int, np.integer)):
            index = [index]
        return BoundsResult(
            method=self.method, lower=self.lower[index],
            upper=None if self.upper is None else self.upper[index],
            pre_activation={k: v.take(index) for k, v in self.pre_activation.items()},
            node_bounds={k: v.take(index) for k, v in self.node_bounds.items()},
            alpha=take_nested(self.alpha, index), beta=take_nested(self.beta, index),
            infeasible=None if self.infeasible is None else self.infeasible[index],
            intermediate_methods=dict(self.intermediate_methods),
            split_scores={k: v[index] for k, v in self.split_scores.items()},
            cut_short=self.cut_short,
            points=None if self.points is None else self.points[index])
