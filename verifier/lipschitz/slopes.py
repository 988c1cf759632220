"""Slope bounds of the element-wise activations, globally and on intervals.

For an activation ``s`` applied entry-wise, ``|s(a) - s(b)| <= k |a - b|``
entry-wise whenever ``|s'| <= k`` (mean value theorem; at the kink of a
piecewise-linear activation the one-sided slopes are used). So a layer's
Lipschitz factor is ``sup |s'|`` in every norm.

* :func:`global_slope`: ``sup |s'|`` over the reals.
* :func:`slope_interval`: the range ``[low, high]`` of ``s'`` over each
  pre-activation interval ``[lower, upper]`` (for the local bound; Clarke
  derivatives of ReLU/PReLU at 0 lie in the range too).

GELU: ``GELU'(x) = Phi(x) + x phi(x)`` and ``GELU''(x) = phi(x)(2 - x^2)``,
so ``GELU'`` is extremal at ``x = +-sqrt(2)``: ``sup GELU' = Phi(sqrt 2) +
sqrt(2) phi(sqrt 2) = 1.12880...`` and ``inf GELU' = -0.06827...``. For the
tanh approximation the critical points of its derivative are found by a
bracketed root search of the second derivative (to machine precision) and
:data:`SLACK` covers the rest.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

from verifier.ir import ops
from verifier.ir.evaluate import sigmoid

#: The activations with slope rules (Sign is discontinuous: no rule).
SLOPED = (ops.Relu, ops.PRelu, ops.Sigmoid, ops.Tanh, ops.Softplus, ops.Gelu)

#: Relative slack on every slope computed in floating point.
SLACK = 1e-9

_GELU_K = np.sqrt(2.0 / np.pi)
_GELU_C = 0.044715


def _phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def gelu_derivative(x, approximate: str = "none"):
    x = np.asarray(x, dtype=np.float64)
    if approximate == "tanh":
        inner = _GELU_K * (x + _GELU_C * x ** 3)
        t = np.tanh(inner)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_K * (1 + 3 * _GELU_C * x * x)
    return ndtr(x) + x * _phi(x)


@functools.lru_cache(maxsize=None)
def gelu_critical_points(approximate: str = "none") -> tuple[float, float]:
    """The points where GELU' is smallest and largest (its only critical points)."""
    if approximate != "tanh":
        return (-np.sqrt(2.0), np.sqrt(2.0))

    def second(x):  # central difference is enough to locate the root; the
        h = 1e-6    # value of GELU' there is what matters and is exact
        return float(gelu_derivative(x + h, "tanh") - gelu_derivative(x - h, "tanh"))

    return (brentq(second, -3.0, -0.5, xtol=1e-14), brentq(second, 0.5, 3.0, xtol=1e-14))


def gelu_slope_range(approximate: str = "none") -> tuple[float, float]:
    low, high = gelu_critical_points(approximate)
    return (float(gelu_derivative(low, approximate)), float(gelu_derivative(high, approximate)))


def global_slope(node: ops.Node) -> float | None:
    """``sup |s'|`` of an element-wise activation node, or None without a rule."""
    if isinstance(node, ops.Relu):
        return 1.0
    if isinstance(node, ops.PRelu):
        return float(max(1.0, np.max(np.abs(node.slope))))
    if isinstance(node, ops.Sigmoid):
        return 0.25
    if isinstance(node, (ops.Tanh, ops.Softplus)):
        return 1.0
    if isinstance(node, ops.Gelu):
        low, high = gelu_slope_range(node.approximate)
        return max(abs(low), abs(high)) * (1.0 + SLACK)
    return None


def _unimodal(derivative, lower, upper):
    """Range of a derivative that rises up to 0 and falls after (sigmoid, tanh)."""
    high = derivative(np.clip(0.0, lower, upper))
    low = np.minimum(derivative(lower), derivative(upper))
    return low, high


def slope_interval(node: ops.Node, lower: np.ndarray, upper: np.ndarray):
    """``(low, high)``: bounds of ``s'`` over ``[lower, upper]`` entry-wise.

    ``lower``/``upper`` have shape ``(B, *node.shape)`` or ``(B, n)``; the
    result has the same shape. Returns None for an op without a rule.
    """
    if isinstance(node, ops.Relu):
        return (np.where(lower >= 0, 1.0, 0.0), np.where(upper <= 0, 0.0, 1.0))
    if isinstance(node, ops.PRelu):
        slope = np.broadcast_to(node.slope, node.shape).reshape(lower.shape[1:])
        high_side = np.where(lower >= 0, 1.0, np.maximum(slope, 1.0))
        low_side = np.where(lower >= 0, 1.0, np.minimum(slope, 1.0))
        low = np.where(upper <= 0, slope, low_side)
        high = np.where(upper <= 0, slope, high_side)
        return low, high
    if isinstance(node, ops.Sigmoid):
        def derivative(x):
            s = sigmoid(x)
            return s * (1.0 - s)
        low, high = _unimodal(derivative, lower, upper)
    elif isinstance(node, ops.Tanh):
        low, high = _unimodal(lambda x: 1.0 - np.tanh(x) ** 2, lower, upper)
    elif isinstance(node, ops.Softplus):
        low, high = sigmoid(lower), sigmoid(upper)
    elif isinstance(node, ops.Gelu):
        a = node.approximate
        candidates = [gelu_derivative(lower, a), gelu_derivative(upper, a)]
        for point in gelu_critical_points(a):
            inside = (lower <= point) & (point <= upper)
            value = float(gelu_derivative(point, a))
            candidates.append(np.where(inside, value, np.nan))
        stack = np.stack(candidates)
        low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
    else:
        return None
    pad = SLACK * (1.0 + np.abs(low) + np.abs(high))
    return low - pad, high + pad
