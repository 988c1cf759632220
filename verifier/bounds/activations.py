"""Relaxations of the element-wise nonlinearities, as data.

Given the bounds ``[l, u]`` of its input, each nonlinearity supplies two
lines per neuron,

    lower_slope·x + lower_intercept  <=  f(x)  <=  upper_slope·x + upper_intercept
    for every x in [l, u],

and the engines do all propagation generically (:class:`Lines`).

ReLU and PRelu (the "leaky" family ``x if x >= 0 else s·x``): exact lines
for stable neurons; for unstable ones the chord on one side and a line
through the origin with a free slope in ``[min(s,1), max(s,1)]`` on the other
(the adaptive choice of CROWN: Zhang et al., "Efficient Neural Network
Robustness Certification with General Activation Functions", NeurIPS 2018;
the free slope is what alpha-CROWN optimises: Xu et al., "Fast and Complete",
ICLR 2021).

Smooth activations (sigmoid, tanh, softplus, GELU): any slope ``a`` gives a
sound line once its intercept is the exact extremum of ``f(x) - a·x`` over
``[l, u]``. That extremum is attained at ``l``, ``u`` or a critical point
(``f'(x) = a``), which we compute in closed form (sigmoid, tanh, softplus) or
by safeguarded Newton steps on the monotone pieces of ``f'`` between its
inflection points (GELU), with a sound bound on what an inexact root may
miss. Soundness therefore never depends on curvature case analysis; the
slope only decides tightness. The default slope minimises the area between
line and function (equivalently the line's value at the midpoint, a convex
function of the slope), found by golden-section search; alpha-CROWN moves it
with the gradient ``d intercept / d slope = -x*`` (Danskin's theorem, ``x*``
the touching point). Intercepts are moved outwards by
``RELAXATION_PAD·(1 + |intercept| + |slope|·max(|l|, |u|))`` to absorb the
float rounding of ``f`` and of the critical points; the chords of ReLU/PRelu
are moved out by ``RELAXATION_PAD·(|intercept| + |slope|·max(|l|, |u|))``
(their intercept is computed with cancellation).

Sign: constant lines from its interval ``[sign(l), sign(u)]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.ir import ops
from verifier.ir.evaluate import gelu, sigmoid

#: Relative outward shift of the intercepts of smooth-activation lines.
RELAXATION_PAD = 1e-12
_GOLDEN_STEPS = 16
_NEWTON_STEPS = 30
_INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass
class Lines:
    """Lower and upper lines per neuron; arrays broadcastable to ``(B, R, n)``."""

    lower_slope: np.ndarray
    lower_intercept: np.ndarray
    upper_slope: np.ndarray
    upper_intercept: np.ndarray

    def backward(self, A):
        """Coefficients on the input and the constant of a lower bound of ``A·f(x)``:
        each coefficient takes the lower line where it is positive, the upper
        one elsewhere (the same products as ``max(A,0)·lower + min(A,0)·upper``,
        in fewer passes over ``A``)."""
        up = A <= 0.0
        A_in = A * np.where(up, self.upper_slope, self.lower_slope)
        bias = np.einsum("...n,...n->...", A, np.where(up, self.upper_intercept,
                                                      self.lower_intercept))
        return A_in, bias

    def forward(self, g, A):
        """Adjoint of :meth:`backward`: the selected line evaluated at ``g``."""
        return np.where(A > 0, self.lower_slope * g + self.lower_intercept,
                        self.upper_slope * g + self.upper_intercept)


@dataclass
class Free:
    """A side whose slope alpha-CROWN may move: range and where it applies."""

    low: np.ndarray
    high: np.ndarray
    mask: np.ndarray


@dataclass
class ElementwiseRelaxation:
    """The relaxation of one element-wise nonlinear node for one run."""

    kind: "Activation"
    node: ops.Node
    lower: np.ndarray      # pre-activation bounds, (B, 1, n)
    upper: np.ndarray
    lines: Lines
    free: dict

    def backward(self, A):
        return self.lines.backward(A)

    def forward(self, g, A):
        return self.lines.forward(g, A)

    def with_slopes(self, slopes: dict):
        """Lines where the free sides take the given slopes ``(B, R, n)``.

        Returns the lines and, per side, the touching points ``x*`` (the
        intercept's derivative with respect to the slope is ``-x*``).
        """
        ls, li = self.lines.lower_slope, self.lines.lower_intercept
        us, ui = self.lines.upper_slope, self.lines.upper_intercept
        touch = {}
        for side, a in slopes.items():
            free = self.free[side]
            b, x = self.kind.intercept(self.node, side, a, self.lower, self.upper)
            if side == "lower":
                ls, li = np.where(free.mask, a, ls), np.where(free.mask, b, li)
            else:
                us, ui = np.where(free.mask, a, us), np.where(free.mask, b, ui)
            touch[side] = x
        return Lines(ls, li, us, ui), touch


class Activation:
    """The relaxation of one kind of element-wise nonlinearity."""

    def ibp(self, prep, i, lower, upper):
        raise NotImplementedError

    def relax(self, prep, i, lower, upper) -> ElementwiseRelaxation:
        raise NotImplementedError

    def intercept(self, node, side, a, lower, upper):
        raise NotImplementedError


class Leaky(Activation):
    """ReLU (slope 0) and PRelu/LeakyRelu: ``x if x >= 0 else s·x``."""

    def slope(self, prep, i):
        node = prep.nodes[i]
        return 0.0 if isinstance(node, ops.Relu) else prep.flat(i, "slope")

    def ibp(self, prep, i, lower, upper):
        node = prep.nodes[i]
        if isinstance(node, ops.Relu):
            return np.maximum(lower, 0.0), np.maximum(upper, 0.0)
        s = prep.flat(i, "slope").reshape(node.shape)
        f_l = np.where(lower >= 0, lower, s * lower)
        f_u = np.where(upper >= 0, upper, s * upper)
        low, high = np.minimum(f_l, f_u), np.maximum(f_l, f_u)
        straddle = (lower < 0) & (upper > 0)
        return (np.where(straddle, np.minimum(low, 0.0), low),
                np.where(straddle, np.maximum(high, 0.0), high))

    def relax(self, prep, i, lower, upper):
        s = self.slope(prep, i)
        s = np.asarray(s, dtype=np.float64)
        active = lower >= 0
        inactive = upper <= 0
        unstable = ~(active | inactive)
        width = np.where(unstable, upper - lower, 1.0)
        chord = np.where(unstable, (upper - s * lower) / width, 1.0)
        chord_b = lower * (s - chord)
        # the chord's intercept suffers cancellation: move it outwards by the pad
        chord_pad = RELAXATION_PAD * (np.abs(chord_b)
                                      + np.abs(chord) * np.maximum(np.abs(lower), np.abs(upper)))
        convex = np.broadcast_to(s <= 1.0, lower.shape)
        chord_b = np.where(unstable, chord_b + np.where(convex, chord_pad, -chord_pad), 0.0)
        adaptive = np.where(upper >= -lower, 1.0, s)
        exact = np.where(active, 1.0, s)
        lines = Lines(
            lower_slope=np.where(unstable, np.where(convex, adaptive, chord), exact),
            lower_intercept=np.where(unstable & ~convex, chord_b, 0.0),
            upper_slope=np.where(unstable, np.where(convex, chord, adaptive), exact),
            upper_intercept=np.where(unstable & convex, chord_b, 0.0),
        )
        low = np.broadcast_to(np.minimum(s, 1.0), lower.shape)
        high = np.broadcast_to(np.maximum(s, 1.0), lower.shape)
        # the free sides depend on the slope only (not on the bounds), so that
        # every batch element and chunk has the same alpha variables
        free = {}
        if np.any(convex):
            free["lower"] = Free(low, high, unstable & convex)
        if not np.all(convex):
            free["upper"] = Free(low, high, unstable & ~convex)
        return ElementwiseRelaxation(self, prep.nodes[i], lower, upper, lines, free)

    def intercept(self, node, side, a, lower, upper):
        # the free line passes through the origin, where it touches f
        return 0.0, 0.0


class SignAct(Activation):
    """``sign(x)``: constant lines from the interval ``[sign(l), sign(u)]``."""

    def ibp(self, prep, i, lower, upper):
        return np.sign(lower), np.sign(upper)

    def relax(self, prep, i, lower, upper):
        zero = np.zeros_like(lower)
        lines = Lines(zero, np.sign(lower), zero, np.sign(upper))
        return ElementwiseRelaxation(self, prep.nodes[i], lower, upper, lines, {})


class Smooth(Activation):
    """A smooth activation given by ``f``, ``f'``, the inflection points of
    ``f`` (where ``f'`` changes monotonicity) and the solutions of ``f'(x) = a``."""

    inflections: tuple = ()
    monotone = True

    def f(self, x):
        raise NotImplementedError

    def df(self, x):
        raise NotImplementedError

    def critical(self, a, lower, upper):
        """Points (±inf allowed, never NaN) that include every solution of
        ``f'(x) = a`` in ``[lower, upper]``, and a bound on how much the
        extremum of ``f(x) - a·x`` may be missed because a point is only an
        approximation of a solution (0 for closed forms)."""
        raise NotImplementedError

    # -- generic machinery
    def _extreme(self, side, a, lower, upper):
        """Max (upper) or min (lower) of ``f(x) - a·x`` on ``[lower, upper]``,
        its argument and the error bound of the approximate critical points."""
        roots, error = self.critical(a, lower, upper)
        # f at the end points and inflections once, at their own (smaller) shape
        fixed = [lower, upper] + [np.clip(t, lower, upper) for t in self.inflections]
        points = [(x, self.f(x)) for x in fixed]
        points += [(x, self.f(x)) for x in (np.clip(c, lower, upper) for c in roots)]
        better = np.greater if side == "upper" else np.less
        best_x, f_x = points[0]
        best = f_x - a * best_x
        best_x = np.broadcast_to(best_x, best.shape)
        for x, f_x in points[1:]:
            value = f_x - a * x
            take = better(value, best)
            best = np.where(take, value, best)
            best_x = np.where(take, x, best_x)
        return best, best_x, error

    def intercept(self, node, side, a, lower, upper):
        value, x, error = self._extreme(side, a, lower, upper)
        pad = error + RELAXATION_PAD * (1.0 + np.abs(value)
                                        + np.abs(a) * np.maximum(np.abs(lower), np.abs(upper)))
        return (value + pad if side == "upper" else value - pad), x

    def slope_range(self, lower, upper):
        X = np.stack([lower, upper] + [np.clip(t, lower, upper) for t in self.inflections])
        D = self.df(X)
        return D.min(axis=0), D.max(axis=0)

    def _area_slope(self, side, lower, upper, low, high):
        """The slope whose sound line is lowest (upper side) or highest (lower
        side) at the midpoint, i.e. encloses the least area: golden section on
        a convex function of the slope."""
        mid = 0.5 * (lower + upper)
        sign = 1.0 if side == "upper" else -1.0

        def cost(a):
            value, _, _ = self._extreme(side, a, lower, upper)
            return sign * (value + a * mid)

        a, b = low.copy(), high.copy()
        c = b - _INV_PHI * (b - a)
        d = a + _INV_PHI * (b - a)
        fc, fd = cost(c), cost(d)
        for _ in range(_GOLDEN_STEPS):
            left = fc <= fd   # the minimum lies in [a, d]
            b = np.where(left, d, b)
            a = np.where(left, a, c)
            new = np.where(left, b - _INV_PHI * (b - a), a + _INV_PHI * (b - a))
            fnew = cost(new)
            c, d, fc, fd = (np.where(left, new, d), np.where(left, c, new),
                            np.where(left, fnew, fd), np.where(left, fc, fnew))
        return 0.5 * (a + b)

    def ibp(self, prep, i, lower, upper):
        if self.monotone:
            return self.f(lower), self.f(upper)
        low, _ = self.intercept(None, "lower", 0.0, lower, upper)
        high, _ = self.intercept(None, "upper", 0.0, lower, upper)
        return low, high

    def relax(self, prep, i, lower, upper):
        low, high = self.slope_range(lower, upper)
        lines = []
        for side in ("lower", "upper"):
            a = self._area_slope(side, lower, upper, low, high)
            b, _ = self.intercept(None, side, a, lower, upper)
            lines += [a, b]
        free = {side: Free(low, high, upper > lower) for side in ("lower", "upper")}
        return ElementwiseRelaxation(self, prep.nodes[i], lower, upper, Lines(*lines), free)


class SigmoidAct(Smooth):
    inflections = (0.0,)

    def f(self, x):
        return sigmoid(x)

    def df(self, x):
        s = sigmoid(x)
        return s * (1.0 - s)

    def critical(self, a, lower, upper):
        # s(1 - s) = a  <=>  s = (1 ± sqrt(1 - 4a)) / 2; the small root without cancellation
        a = np.clip(a, 0.0, 0.25)
        s = 2.0 * a / (1.0 + np.sqrt(1.0 - 4.0 * a))
        with np.errstate(divide="ignore"):
            x = np.log(s) - np.log1p(-s)
        return [x, -x], 0.0


class TanhAct(Smooth):
    inflections = (0.0,)

    def f(self, x):
        return np.tanh(x)

    def df(self, x):
        return 1.0 - np.tanh(x) ** 2

    def critical(self, a, lower, upper):
        # 1 - tanh(x)^2 = a  <=>  x = ±atanh(t), t = sqrt(1 - a),
        # atanh(t) = log(1 + t) - log(a) / 2 (as 1 - t = a / (1 + t))
        a = np.clip(a, 0.0, 1.0)
        t = np.sqrt(1.0 - a)
        with np.errstate(divide="ignore"):
            x = np.log1p(t) - 0.5 * np.log(a)
        return [x, -x], 0.0


class SoftplusAct(Smooth):
    inflections = ()

    def f(self, x):
        return np.logaddexp(0.0, x)

    def df(self, x):
        return sigmoid(x)

    def critical(self, a, lower, upper):
        a = np.clip(a, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            return [np.log(a) - np.log1p(-a)], 0.0


class PiecewiseMonotoneDerivative(Smooth):
    """``f'`` is monotone between consecutive inflection points: the roots of
    ``f'(x) = a`` are found piece by piece by safeguarded Newton steps inside
    a bracket that always holds the root. The returned error bound is sound
    whatever the number of steps: with ``x`` in a bracket of width ``w``
    around the root ``x*`` and ``h = f' - a`` monotone between them,
    ``|(f - a·id)(x*) - (f - a·id)(x)| <= w·|h(x)|``."""

    monotone = False

    def d2f(self, x):
        raise NotImplementedError

    def critical(self, a, lower, upper):
        edges = (-np.inf,) + tuple(self.inflections) + (np.inf,)
        roots = []
        error = 0.0
        for lo_edge, hi_edge in zip(edges[:-1], edges[1:]):
            p = np.maximum(lower, lo_edge)
            q = np.minimum(upper, hi_edge)
            valid = p < q
            p = np.where(valid, p, lower)
            q = np.where(valid, q, lower)
            h_p = self.df(p) - a
            h_q = self.df(q) - a
            has = valid & (np.sign(h_p) * np.sign(h_q) <= 0)
            p, q, h_p, a_b, has = np.broadcast_arrays(p, q, h_p, a, has)
            root = p.copy()
            where = np.flatnonzero(has)
            if where.size:
                x, width, miss = self._solve(a_b.flat[where], p.flat[where], q.flat[where],
                                             np.sign(h_p.flat[where]))
                root.flat[where] = x
                piece_error = np.zeros(root.shape)
                piece_error.flat[where] = width * miss
                error = np.maximum(error, piece_error)
            roots.append(root)
        return roots, error

    def _solve(self, a, lo, hi, sign_lo, steps=_NEWTON_STEPS):
        """Roots of ``f'(x) = a`` in the brackets ``[lo, hi]`` (1-D arrays);
        iterates only on the entries that have not converged yet."""
        x = 0.5 * (lo + hi)
        lo, hi = lo.copy(), hi.copy()
        active = np.arange(x.size)
        for _ in range(steps):
            xa, la, ha = x[active], lo[active], hi[active]
            h = self.df(xa) - a[active]
            right = np.sign(h) == sign_lo[active]     # the root is in [x, hi]
            la = np.where(right, xa, la)
            ha = np.where(right, ha, xa)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                newton = xa - h / self.d2f(xa)
            inside = (newton > la) & (newton < ha)
            done = inside & (np.abs(newton - xa) <= 1e-14 * (1.0 + np.abs(xa)))
            x[active] = np.where(inside, newton, 0.5 * (la + ha))
            lo[active], hi[active] = la, ha
            active = active[~done]
            if not active.size:
                break
        # certify: a point twice the Newton step away on the other side of the
        # root shrinks the bracket to that step
        h = self.df(x) - a
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = np.clip(x - 2.0 * h / self.d2f(x), lo, hi)
        across = (np.sign(self.df(y) - a) != np.sign(h)) & np.isfinite(y)
        width = np.where(across, np.abs(y - x), hi - lo)
        return x, width, np.abs(h)


class GeluAct(PiecewiseMonotoneDerivative):
    """Exact GELU ``x·Phi(x)``: ``f'' = phi(x)(2 - x^2)``, inflections ±sqrt(2)."""

    inflections = (-np.sqrt(2.0), np.sqrt(2.0))

    def f(self, x):
        return gelu(x)

    def df(self, x):
        from scipy.special import ndtr  # on first use: scipy.special takes ~0.3 s to import

        return ndtr(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)

    def d2f(self, x):
        return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi) * (2.0 - x * x)


_K = np.sqrt(2.0 / np.pi)
_C = 0.044715


def _tanh_gelu_d2(x):
    """Sign-carrying factor of f'' for the tanh GELU: f'' = (1 - t^2)·this."""
    t = np.tanh(_K * (x + _C * x ** 3))
    du = _K * (1.0 + 3.0 * _C * x * x)
    return du + 0.5 * x * (6.0 * _K * _C * x - 2.0 * t * du * du)


def _tanh_gelu_inflections():
    grid = np.linspace(-20.0, 20.0, 40001)
    values = _tanh_gelu_d2(grid)
    changes = np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:]))
    if changes.size != 2:
        raise RuntimeError("tanh-GELU: expected two inflection points")
    points = []
    for j in changes:
        lo, hi = grid[j], grid[j + 1]
        s_lo = np.sign(_tanh_gelu_d2(lo))
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if np.sign(_tanh_gelu_d2(mid)) == s_lo:
                lo = mid
            else:
                hi = mid
        points.append(0.5 * (lo + hi))
    return tuple(points)


class TanhGeluAct(PiecewiseMonotoneDerivative):
    """GELU with ``approximate='tanh'``; inflections found numerically once."""

    inflections = _tanh_gelu_inflections()

    def f(self, x):
        return gelu(x, "tanh")

    def df(self, x):
        t = np.tanh(_K * (x + _C * x ** 3))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _K * (1.0 + 3.0 * _C * x * x)

    def d2f(self, x):
        t = np.tanh(_K * (x + _C * x ** 3))
        return (1.0 - t * t) * _tanh_gelu_d2(x)


_LEAKY = Leaky()
_ACTIVATIONS = {
    ops.Relu: _LEAKY, ops.PRelu: _LEAKY, ops.Sign: SignAct(), ops.Sigmoid: SigmoidAct(),
    ops.Tanh: TanhAct(), ops.Softplus: SoftplusAct(),
}
_GELU = {"none": GeluAct(), "tanh": TanhGeluAct()}


def activation_for(node: ops.Node) -> Activation:
    """The :class:`Activation` that relaxes an element-wise node."""
    if isinstance(node, ops.Gelu):
        try:
            return _GELU[node.approximate]
        except KeyError:
            raise ValueError(f"unknown GELU approximation {node.approximate!r}") from None
    return _ACTIVATIONS[type(node)]
