"""The bound engine: IBP, CROWN and alpha-CROWN over the core IR.

One run (:class:`Run`) owns the per-run tables (rule 5 of the guide): the
bounds of every node and the relaxation of every nonlinearity. It sweeps the
graph once in topological order:

1. IBP for every node from its inputs' (already tightened) bounds;
2. for a node that feeds nonlinearities: intersect with the bounds passed in,
   clamp by the split constraints, and (CROWN methods) run a backward CROWN
   pass for its neurons that matter (the unstable ones for ReLU/PRelu/Sign,
   all for the others) where affordable, keeping the tighter bounds; for
   alpha-CROWN, also optimise those rows' slopes where affordable;
3. for a nonlinear node: build its relaxation from its input bounds.

The final rows ``C·y - d`` are then bounded by IBP, by one backward CROWN
pass and, for alpha-CROWN, by optimising the free slopes (and the beta
multipliers of the splits) from CROWN's starting point; the tightest sound
bound is returned. When alpha-CROWN recomputes intermediate bounds, a plain
CROWN run comes first and is kept where tighter (see :func:`_compute`).

CROWN: Zhang et al., NeurIPS 2018 (backward linear bound propagation with
per-neuron linear relaxations; DeepPoly, Singh et al., POPL 2019, is the same
backward substitution). Every backward pass computes a *lower* bound of a
batch of linear functions; upper bounds are lower bounds of the negated rows.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from verifier.bounds import affine
from verifier.bounds.activations import activation_for
from verifier.bounds.inputs import Box, L2Ball
from verifier.bounds.margin import empty
from verifier.bounds.pooling import (ConstantRelaxation, MaxPoolRelaxation, max_pool_ibp,
                                     softmax_ibp)
from verifier.bounds.prepare import ELEMENTWISE, SIGN_DRIVEN, prepare
from verifier.bounds.result import METHODS, BoundOptions, BoundsResult, Interval, take_nested
from verifier.bounds.roundoff import DIRECT_SLACK, FloatRounding, paid
from verifier.errors import MismatchError, VerifierError
from verifier.ir import ops
from verifier.ir.graph import Graph


def _elementwise_ibp(prep, i, node, lowers, uppers):
    return activation_for(node).ibp(prep, i, lowers[0], uppers[0])


def _single(rule):
    def apply(prep, i, node, lowers, uppers):
        return rule(prep, i, lowers[0], uppers[0])
    return apply


#: core op -> rule(prep, i, node, input lowers, input uppers) -> (lower, upper)
IBP_RULES = dict(affine.IBP_RULES)
IBP_RULES.update({op: _elementwise_ibp for op in ELEMENTWISE})
IBP_RULES.update({ops.MaxPool: _single(max_pool_ibp), ops.Softmax: _single(softmax_ibp)})

_missing = [op.__name__ for op in ops.CORE_OPS
            if op is not ops.Input and op not in IBP_RULES]
_missing += [op.__name__ for op in ops.CORE_OPS if op is not ops.Input
             and op not in affine.BACKWARD_RULES and op not in ELEMENTWISE
             and op not in (ops.MaxPool, ops.Softmax)]
if _missing:  # pragma: no cover - a new core op without its rules
    raise ImportError(f"bound engine has no rule for core ops: {_missing}")


class Run:
    """Per-run state: input set, bounds table, relaxations, splits."""

    def __init__(self, graph, inputs, method, splits, given, options, fixed=frozenset()):
        self.prep = prepare(graph)
        self.nodes = graph.nodes
        self.inputs = inputs
        self.batch = inputs.batch
        self.method = method
        self.splits = splits
        self.given = given
        self.fixed = fixed  # nonlinear nodes whose given input bounds are not recomputed
        self.options = options
        self.bounds: list[Interval | None] = [None] * len(self.nodes)
        self.relax: dict = {}
        self.infeasible = np.zeros(self.batch, dtype=bool)
        self.intermediate_methods: dict[int, str] = {}
        self.cut_short = False  # the deadline skipped some tightening
        # float32 mode: every node's own rounding bound (None where 0), paid by
        # every backward pass at its coefficients (BoundOptions.float32)
        self.rounding = FloatRounding(graph, self.bounds, self.batch) if options.float32 \
            else None
        self.own: list = [None] * len(self.nodes)

    def past_deadline(self) -> bool:
        """Whether ``options.deadline`` has passed (and if so, note it)."""
        deadline = self.options.deadline
        if deadline is not None and time.monotonic() >= deadline:
            self.cut_short = True
            return True
        return False

    # ------------------------------------------------------------ forward sweep
    def sweep(self):
        prep = self.prep
        for i, node in enumerate(self.nodes):
            if prep.nonlinear[i]:
                self.relax[i] = self._relaxation(i)
            if i == 0:
                lower, upper = (np.array(v) for v in self.inputs.enclosure())
            else:
                lowers = [self.bounds[j].lower.reshape((self.batch,) + self.nodes[j].shape)
                          for j in node.inputs]
                uppers = [self.bounds[j].upper.reshape((self.batch,) + self.nodes[j].shape)
                          for j in node.inputs]
                lower, upper = IBP_RULES[type(node)](prep, i, node, lowers, uppers)
                lower = lower.reshape(self.batch, -1)
                upper = upper.reshape(self.batch, -1)
                if self.rounding is not None:
                    lower, upper = self._rounded(i, lower, upper)
            if i in prep.feeds:
                lower, upper = self._tighten(i, lower, upper)
            self.bounds[i] = Interval(lower, upper)

    def _rounded(self, i, lower, upper):
        """Float32 mode: the exact op's bounds on the float inputs widened by
        the node's own rounding (kept for the backward passes)."""
        # float values that may overflow have infinite bounds, whose sums
        # (inf - inf) are NaN: no bound there
        lower = np.where(np.isnan(lower), -np.inf, lower)
        upper = np.where(np.isnan(upper), np.inf, upper)
        self.bounds[i] = Interval(lower, upper)
        own = self.rounding.own(i)
        if not own.any():
            return lower, upper
        self.own[i] = own
        return lower - own, upper + own

    def _relaxation(self, k):
        node = self.nodes[k]
        bounds = self.bounds[node.inputs[0]]
        if isinstance(node, ELEMENTWISE):
            return activation_for(node).relax(self.prep, k, bounds.lower[:, None, :],
                                              bounds.upper[:, None, :])
        if isinstance(node, ops.MaxPool):
            return MaxPoolRelaxation(self.prep, k, bounds.lower, bounds.upper)
        shape = (self.batch,) + tuple(self.nodes[node.inputs[0]].shape)
        low, up = softmax_ibp(self.prep, k, bounds.lower.reshape(shape),
                              bounds.upper.reshape(shape))
        return ConstantRelaxation(bounds.lower.shape[1], low.reshape(self.batch, -1),
                                  up.reshape(self.batch, -1))

    def _clamp(self, i, lower, upper):
        for k in self.prep.feeds[i]:
            split = self.splits.get(k)
            if split is not None:
                lower = np.where(split > 0, np.maximum(lower, 0.0), lower)
                upper = np.where(split < 0, np.minimum(upper, 0.0), upper)
        return lower, upper

    def _tighten(self, i, lower, upper):
        prep, options = self.prep, self.options
        for k in prep.feeds[i]:
            interval = self.given.get(k)
            if interval is not None:
                lower = np.maximum(lower, interval.lower)
                upper = np.minimum(upper, interval.upper)
        lower, upper = self._clamp(i, lower, upper)
        how = "ibp"
        if (self.method != "ibp" and options.intermediate != "ibp"
                and not prep.tight[i]
                and not (prep.box_exact[i] and isinstance(self.inputs, Box))
                and not any(k in self.fixed for k in prep.feeds[i])
                and not self.past_deadline()):
            sign_only = all(isinstance(self.nodes[k], SIGN_DRIVEN) for k in prep.feeds[i])
            needed = (lower < 0) & (upper > 0) if sign_only else upper > lower
            if not options.intersect_ibp:  # textbook CROWN: every neuron, IBP only as a skip
                needed = upper > lower
            rows = np.flatnonzero(needed.any(axis=0))
            cone_size = sum(prep.sizes[j] for j in prep.cone(i))
            work = 2.0 * self.batch * rows.size * cone_size
            if rows.size and (options.intermediate == "crown" or work <= options.max_crown_work):
                crown_lower, crown_upper = self.crown_rows(i, rows)
                if (self.method == "alpha-crown" and options.alpha_intermediate
                        and work * options.alpha_iterations <= options.max_alpha_work):
                    crown_lower, crown_upper = self.alpha_rows(i, rows, crown_lower, crown_upper)
                    how = "alpha-crown"
                else:
                    how = "crown"
                lower, upper = lower.copy(), upper.copy()  # IBP may return views
                # fmax/fmin: a NaN bound (inf - inf where float32 may overflow) is none
                if options.intersect_ibp:
                    lower[:, rows] = np.fmax(lower[:, rows], crown_lower)
                    upper[:, rows] = np.fmin(upper[:, rows], crown_upper)
                else:
                    lower[:, rows], upper[:, rows] = self._given(i, rows, crown_lower,
                                                                 crown_upper)
                lower, upper = self._clamp(i, lower, upper)
        crossed = lower > upper
        if np.any(crossed):
            self.infeasible |= empty(lower, upper).any(axis=1)
            # crossed by rounding (or empty anyway): keep both values inside
            lower, upper = np.minimum(lower, upper), np.maximum(lower, upper)
        for k in prep.feeds[i]:
            self.intermediate_methods[k] = how
        return lower, upper

    def _given(self, i, rows, lower, upper):
        """``lower``/``upper`` of the entries ``rows`` of node ``i`` intersected
        with the bounds passed in for the nonlinearities it feeds."""
        for k in self.prep.feeds[i]:
            interval = self.given.get(k)
            if interval is not None:
                lower = np.maximum(lower, interval.lower[:, rows])
                upper = np.minimum(upper, interval.upper[:, rows])
        return lower, upper

    def _entry_bounds(self, i, rows, per_row, bound):
        """Lower and upper bounds of the entries ``rows`` of node ``i``:
        ``bound(A, chunk_slice)`` gives lower bounds ``(B, 2k)`` of the rows
        ``A = [e_j; -e_j]``; chunks keep ``per_row`` entries per row in memory."""
        n = self.prep.sizes[i]
        chunk = max(1, self.options.chunk_elements // (2 * self.batch * per_row))
        # entries left when the deadline passes keep infinite (vacuous) bounds
        lower = np.full((self.batch, rows.size), -np.inf)
        upper = np.full((self.batch, rows.size), np.inf)
        for start in range(0, rows.size, chunk):
            if start and self.past_deadline():
                break
            part = rows[start:start + chunk]
            k = part.size
            A = np.zeros((1, 2 * k, n))
            A[0, np.arange(k), part] = 1.0
            A[0, k + np.arange(k), part] = -1.0
            value = bound(A, slice(start, start + k))
            lower[:, start:start + k] = value[:, :k]
            upper[:, start:start + k] = -value[:, k:]
        return lower, upper

    def crown_rows(self, i, rows):
        """CROWN lower and upper bounds of the entries ``rows`` of node ``i``."""
        widest = max(self.prep.sizes[j] for j in self.prep.cone(i))
        return self._entry_bounds(
            i, rows, widest, lambda A, _: self.backward(i, A, np.zeros((1, A.shape[1]))))

    def alpha_rows(self, i, rows, lower, upper):
        """alpha-CROWN bounds of the entries ``rows`` of node ``i``, starting
        from (and never looser than) their CROWN bounds ``lower``/``upper``."""
        from verifier.bounds.alpha import optimize

        def bound(A, part):
            first = np.concatenate([lower[:, part], -upper[:, part]], axis=1)
            return optimize(self, i, A, np.zeros((1, A.shape[1])), first, True)[0]

        total = sum(self.prep.sizes[j] for j in self.prep.cone(i))
        optimised_lower, optimised_upper = self._entry_bounds(i, rows, total, bound)
        return np.maximum(optimised_lower, lower), np.minimum(optimised_upper, upper)

    # ----------------------------------------------------------- backward pass
    def backward(self, target, A, bias, lines=None, betas=None, record=None,
                 coefficients=None):
        """A lower bound ``(B, R)`` of ``A·v_target + bias`` over the input set.

        ``A``: ``(B or 1, R, size)``; ``bias``: ``(B or 1, R)``. ``lines``
        replaces the relaxation of some nonlinear nodes (alpha-CROWN);
        ``betas`` adds split multipliers at the inputs of Relu nodes; with
        ``record`` (a dict), the coefficients reaching every nonlinear node and
        the minimising input point are stored in it (for the adjoint pass);
        with ``coefficients`` (a dict), the coefficients reaching every node
        (node index -> ``(B or 1, R, size)``) are stored in it.
        """
        prep = self.prep
        pending = {target: A}
        cost = None  # float32 mode: sum_k |A_k|·own_k
        for k in prep.cone(target):
            A_k = pending.pop(k, None)
            if A_k is None:
                continue
            if coefficients is not None:
                coefficients[k] = A_k
            if self.own[k] is not None:
                part = paid(A_k, self.own[k])
                cost = part if cost is None else cost + part
            if k == 0:
                value, point = self.inputs.concretize(A_k, want_point=record is not None)
                if record is not None:
                    record["point"] = point
                bias = bias + value
                break
            node = self.nodes[k]
            if prep.nonlinear[k]:
                if record is not None:
                    record[k] = A_k
                relaxation = lines[k] if lines is not None and k in lines else self.relax[k]
                A_in, b = relaxation.backward(A_k)
                if betas is not None and k in betas:
                    A_in = A_in + betas[k]
                contributions = [A_in]
            else:
                contributions, b = affine.BACKWARD_RULES[type(node)](prep, k, node, A_k)
            if b is not None:
                bias = bias + b
            for j, A_j in zip(node.inputs, contributions):
                previous = pending.get(j)
                pending[j] = A_j if previous is None else previous + A_j
        if cost is not None:
            bias = bias - cost * (1.0 + DIRECT_SLACK)
        return np.broadcast_to(bias, (self.batch, bias.shape[-1]))

    def adjoint(self, target, record, lines, needed):
        """The adjoint of :meth:`backward` (see :mod:`verifier.bounds.alpha`):
        per node, the derivative of the bound with respect to the coefficients
        on that node, which is the linearised network evaluated at the
        minimising input point. Only the ``needed`` nodes (and what they
        depend on) are evaluated."""
        prep = self.prep
        wanted = set()
        for j in needed:
            wanted.update(prep.cone(j))
        values = {0: record["point"]}
        for k in reversed(prep.cone(target)):
            if k == 0 or k not in wanted:
                continue
            node = self.nodes[k]
            args = [values[j] for j in node.inputs]
            if prep.nonlinear[k]:
                relaxation = lines[k] if k in lines else self.relax[k]
                values[k] = relaxation.forward(args[0], record[k])
            else:
                values[k] = affine.forward(prep, k, node, args)
        return values


# ------------------------------------------------------------------ the API


def _as_batch(value, batch, width, name, dtype=np.float64):
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] not in (1, batch) or array.shape[1] != width:
        raise MismatchError(f"{name} must have shape ({batch} or 1, {width}), got {array.shape}")
    return np.broadcast_to(array, (batch, width))


def _spec(graph, batch, C, d):
    n_out = graph.output_size
    if C is None:
        C = np.eye(n_out)[None]
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 2:
        C = C[None]
    if C.ndim != 3 or C.shape[0] not in (1, batch) or C.shape[2] != n_out:
        raise MismatchError(f"C must have shape (B or 1, rows, {n_out}), got {C.shape}")
    rows = C.shape[1]
    d = np.zeros((1, rows)) if d is None else np.asarray(d, dtype=np.float64)
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[0] not in (1, batch) or d.shape[1] != rows:
        raise MismatchError(f"d must have shape (rows,) or (B, rows) with rows={rows}, "
                            f"got {d.shape}")
    return C, d


def float32_supported(graph, inputs=None) -> bool:
    """Whether ``BoundOptions(float32=True)`` applies: Box inputs, no Softmax."""
    return (inputs is None or isinstance(inputs, Box)) and \
        not any(isinstance(node, ops.Softmax) for node in graph.nodes)


def _check(graph, inputs, method, splits, intermediate):
    if method not in METHODS:
        raise VerifierError(f"unknown bound method {method!r}; use one of {', '.join(METHODS)}")
    if not isinstance(inputs, (Box, L2Ball)):
        raise VerifierError("inputs must be a Box or an L2Ball")
    if inputs.size != graph.input_size:
        raise MismatchError(f"the input set has {inputs.size} entries but the model's "
                            f"input has {graph.input_size}")
    batch = inputs.batch
    checked_splits = {}
    for k, split in (splits or {}).items():
        node = graph.nodes[k] if 0 <= k < len(graph.nodes) else None
        if not isinstance(node, (ops.Relu, ops.PRelu)):
            raise VerifierError(f"splits are only for Relu/PRelu nodes; node {k} is "
                                f"{type(node).__name__ if node else 'missing'}")
        checked_splits[k] = _as_batch(split, batch, node.size, f"splits[{k}]", np.int8)
    given = {}
    for k, interval in (intermediate or {}).items():
        node = graph.nodes[k] if 0 <= k < len(graph.nodes) else None
        if node is None or not isinstance(node, ELEMENTWISE + (ops.MaxPool, ops.Softmax)):
            raise VerifierError(f"intermediate bounds are keyed by nonlinear node; node {k} "
                                f"is {type(node).__name__ if node else 'missing'}")
        lower, upper = (interval.lower, interval.upper) if isinstance(interval, Interval) \
            else interval
        size = graph.nodes[node.inputs[0]].size
        given[k] = Interval(_as_batch(lower, batch, size, f"intermediate[{k}].lower"),
                            _as_batch(upper, batch, size, f"intermediate[{k}].upper"))
    return checked_splits, given


def compute_bounds(graph: Graph, inputs, *, method: str = "crown", C=None, d=None,
                   upper: bool = True, splits=None, intermediate=None, alpha=None,
                   beta=None, options: BoundOptions | None = None,
                   deadline: float | None = None) -> BoundsResult:
    """Sound bounds of ``C·y - d`` for ``y = graph(x)``, ``x`` in each input set.

    Args:
        graph: the IR graph.
        inputs: a :class:`Box` or :class:`L2Ball` of batch ``B`` over the
            flat input (``graph.input_size`` entries).
        method: 'ibp', 'crown' or 'alpha-crown'.
        C: ``(rows, n_out)`` or ``(B or 1, rows, n_out)``; None bounds the raw
            outputs (C = identity).
        d: ``(rows,)`` or ``(B, rows)``; None is 0.
        upper: also compute upper bounds (lower bounds are always computed).
        splits: Relu (or PRelu) node index -> int array ``(B or 1, n)``:
            -1 forces the pre-activation <= 0, +1 forces it >= 0, 0 is free.
            The bounds then hold on the sub-domain where the constraints hold.
        intermediate: nonlinear node index -> :class:`Interval` (or a pair) of
            previously computed sound bounds of that node's input (e.g. the
            parent's ``pre_activation`` in branch and bound): they are
            intersected in and, unless ``options.recompute_intermediate``
            (and the node is not in ``options.keep_intermediate``), not
            recomputed by CROWN.
        alpha, beta: warm starts for alpha-CROWN, as returned in
            :class:`BoundsResult` (entries whose shape does not match are
            ignored).
        options: :class:`BoundOptions`.
        deadline: a ``time.monotonic()`` value; overrides ``options.deadline``.
            Past it, the call stops tightening and returns the sound bounds
            reached so far (``cut_short`` tells).

    Guarantees: every bound is sound (up to float rounding, which the
    decision margin covers); CROWN's rows are never looser than IBP's, and
    alpha-CROWN's never looser than CROWN's (the best iterate, started from
    CROWN's slopes, and with optimised intermediate bounds also a plain CROWN
    pass, kept where tighter). Large batches are processed in chunks of at
    most ``options.chunk_elements`` coefficients.

    Returns:
        :class:`BoundsResult`. All arrays are float64.
    """
    options = options or BoundOptions()
    if deadline is not None:
        options = dataclasses.replace(options, deadline=deadline)
    splits, given = _check(graph, inputs, method, splits, intermediate)
    if options.float32 and not float32_supported(graph, inputs):
        raise VerifierError("float32 bounds need a Box input set and a graph without Softmax")
    C, d = _spec(graph, inputs.batch, C, d)
    batch = inputs.batch
    prep = prepare(graph)
    rows = C.shape[1] * (2 if upper else 1)
    per_element = rows * sum(prep.sizes)  # alpha-CROWN keeps a value per node and row
    step = max(1, options.chunk_elements // max(1, per_element))
    if batch > step:
        parts = []
        for start in range(0, batch, step):
            s = slice(start, min(batch, start + step))
            parts.append(compute_bounds(
                graph, inputs.take(s), method=method, C=C[s] if C.shape[0] > 1 else C,
                d=d[s] if d.shape[0] > 1 else d, upper=upper,
                splits={k: v[s] for k, v in splits.items()},
                intermediate={k: v.take(s) for k, v in given.items()},
                alpha=take_nested(alpha, s), beta=take_nested(beta, s), options=options))
        return concatenate(parts)
    return _compute(graph, inputs, method, C, d, upper, splits, given, alpha, beta, options)


def _compute(graph, inputs, method, C, d, upper, splits, given, alpha, beta, options):
    fixed = frozenset(given)
    if options.recompute_intermediate:
        fixed = fixed & frozenset(options.keep_intermediate)
    if method != "alpha-crown" or not options.alpha_intermediate:
        return _single(graph, inputs, method, C, d, upper, splits, given, fixed, alpha, beta,
                       options)
    # alpha-CROWN with optimised intermediate bounds: tighter intermediate
    # bounds do not always give a tighter final CROWN bound, so a plain CROWN
    # pass comes first; its bounds (intermediate and final) are kept where tighter
    prep = prepare(graph)
    if all(k in fixed for j in prep.feeds for k in prep.feeds[j]):
        return _single(graph, inputs, method, C, d, upper, splits, given, fixed, alpha, beta,
                       options)
    crown = _single(graph, inputs, "crown", C, d, upper, splits, given, fixed, None, None,
                    options)
    if options.deadline is not None and time.monotonic() >= options.deadline:
        return dataclasses.replace(crown, method=method, cut_short=True)
    tight = _single(graph, inputs, method, C, d, upper, splits, crown.pre_activation, fixed,
                    alpha, beta, options)
    lower = np.maximum(crown.lower, tight.lower)
    high = None if not upper else np.minimum(crown.upper, tight.upper)
    return dataclasses.replace(tight, lower=lower, upper=high,
                               infeasible=crown.infeasible | tight.infeasible,
                               cut_short=crown.cut_short or tight.cut_short)


def _single(graph, inputs, method, C, d, upper, splits, given, fixed, alpha, beta, options):
    """One run: the forward sweep, then IBP/CROWN/alpha-CROWN on the final rows."""
    run = Run(graph, inputs, method, splits, given, options, fixed)
    run.sweep()
    out = graph.output
    n_rows = C.shape[1]
    y = run.bounds[out]
    C_pos, C_neg = np.maximum(C, 0.0), np.minimum(C, 0.0)
    with np.errstate(invalid="ignore"):
        lower = ((C_pos @ y.lower[:, :, None]) + (C_neg @ y.upper[:, :, None]))[..., 0] - d
        high = ((C_pos @ y.upper[:, :, None]) + (C_neg @ y.lower[:, :, None]))[..., 0] - d
    lower = np.where(np.isnan(lower), -np.inf, lower)  # 0 * inf: infinite output bounds
    high = np.where(np.isnan(high), np.inf, high)
    best_alpha = best_beta = points = None
    scores = {}
    if method != "ibp":
        A = np.concatenate([C, -C], axis=1) if upper else C
        bias = np.concatenate([-d, d], axis=1) if upper else -d
        record = {}
        value = run.backward(out, A, bias, record=record)
        scores = _split_scores(run, record, n_rows)
        if record.get("point") is not None:
            points = np.broadcast_to(record["point"][:, :n_rows],
                                     (run.batch, n_rows, record["point"].shape[-1]))
        if method == "alpha-crown":
            from verifier.bounds.alpha import optimize

            value, best_alpha, best_beta = optimize(run, out, A, bias, value, upper,
                                                    alpha, beta)
        if options.intersect_ibp:
            lower = np.fmax(lower, value[:, :n_rows])
            if upper:
                high = np.fmin(high, -value[:, n_rows:])
        else:
            lower = value[:, :n_rows]
            if upper:
                high = -value[:, n_rows:]
    if np.any(run.infeasible):
        lower = np.where(run.infeasible[:, None], np.inf, lower)
        high = np.where(run.infeasible[:, None], -np.inf, high)
    pre = {k: run.bounds[node.inputs[0]] for k, node in enumerate(graph.nodes)
           if run.prep.nonlinear[k]}
    return BoundsResult(
        method=method, lower=np.ascontiguousarray(lower),
        upper=np.ascontiguousarray(high) if upper else None,
        pre_activation=pre, node_bounds=dict(enumerate(run.bounds)), alpha=best_alpha,
        beta=best_beta, infeasible=run.infeasible,
        intermediate_methods=dict(run.intermediate_methods), split_scores=scores,
        cut_short=run.cut_short, points=points)


def _split_scores(run, record, n_rows):
    """Per lower row and neuron of a Relu/PRelu node, ``(B, R, n)``, the
    bound lost to its upper (chord) line in the CROWN pass: ``-min(A_r,
    0)·intercept`` (>= 0; 0 for stable neurons). Splitting the neuron removes
    that term: the BaBSR-style estimate of Bunel et al., "Branch and Bound for
    Piecewise Linear Neural Network Verification", JMLR 2020.

    Per neuron of a Sigmoid/Tanh node (:data:`SMOOTH_SPLIT`), the same idea
    for a relaxation that no split makes exact: the mean vertical gap between
    the selected line and the function over the neuron's input interval,
    times the coefficient's magnitude, per lower row (the bound the
    relaxation loses on average; splitting the interval shrinks it)."""
    scores = {}
    for k, A in record.items():
        if not isinstance(k, int):
            continue
        node = run.nodes[k]
        A = A[:, :n_rows]
        if isinstance(node, (ops.Relu, ops.PRelu)):
            lines = run.relax[k].lines
            lost = -(np.minimum(A, 0.0) * lines.upper_intercept
                     + np.maximum(A, 0.0) * lines.lower_intercept)
        elif isinstance(node, SMOOTH_SPLIT):
            below, above = _mean_gaps(run.relax[k])
            lost = np.maximum(A, 0.0) * below + np.maximum(-A, 0.0) * above
        else:
            continue
        scores[k] = np.broadcast_to(lost, (run.batch,) + A.shape[1:]).copy()
    return scores


#: smooth activations whose neurons branch and bound may split (their input
#: interval cut in two; :mod:`verifier.search.bab`), and so get split scores
SMOOTH_SPLIT = (ops.Sigmoid, ops.Tanh)

#: Gauss-Legendre nodes and weights on [0, 1] (4 points): the mean of f over an interval
_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
_GL_X, _GL_W = 0.5 * (_GL_X + 1.0), 0.5 * _GL_W


def _mean_gaps(relaxation):
    """Per neuron ``(B or 1, 1, n)``: the mean over its input interval of
    ``f - lower line`` and of ``upper line - f`` (>= 0 up to rounding)."""
    lower, upper = relaxation.lower, relaxation.upper
    width = upper - lower
    f = relaxation.kind.f
    with np.errstate(invalid="ignore"):  # an infinite bound (float32 overflow): no score
        mean = sum(w * f(lower + x * width) for x, w in zip(_GL_X, _GL_W))
        mid = lower + 0.5 * width
        lines = relaxation.lines
        below = mean - (lines.lower_slope * mid + lines.lower_intercept)
        above = lines.upper_slope * mid + lines.upper_intercept - mean
    finite = np.isfinite(width)
    return (np.where(finite, np.fmax(below, 0.0), 0.0),
            np.where(finite, np.fmax(above, 0.0), 0.0))


def concatenate(parts):
    """One :class:`BoundsResult` of the batches of ``parts`` (results of the
    same graph, method and rows, in order)."""
    first = parts[0]

    def cat_intervals(key):
        return {k: Interval(np.concatenate([getattr(p, key)[k].lower for p in parts]),
                            np.concatenate([getattr(p, key)[k].upper for p in parts]))
                for k in getattr(first, key)}

    def cat_nested(key):
        if getattr(first, key) is None:
            return None
        out = {}
        for k, value in getattr(first, key).items():
            if isinstance(value, dict):
                out[k] = {side: np.concatenate([getattr(p, key)[k][side] for p in parts])
                          for side in value}
            else:
                out[k] = np.concatenate([getattr(p, key)[k] for p in parts])
        return out

    methods = {}
    for p in parts:
        for k, how in p.intermediate_methods.items():
            methods[k] = max(how, methods.get(k, how), key=METHODS.index)
    return BoundsResult(
        method=first.method, lower=np.concatenate([p.lower for p in parts]),
        upper=None if first.upper is None else np.concatenate([p.upper for p in parts]),
        pre_activation=cat_intervals("pre_activation"), node_bounds=cat_intervals("node_bounds"),
        alpha=cat_nested("alpha"), beta=cat_nested("beta"),
        infeasible=np.concatenate([p.infeasible for p in parts]),
        intermediate_methods=methods,
        split_scores={k: np.concatenate([p.split_scores[k] for p in parts])
                      for k in first.split_scores},
        cut_short=any(p.cut_short for p in parts),
        points=None if first.points is None else np.concatenate([p.points for p in parts]))
