"""``BoundOptions(intersect_ibp=False)``: textbook CROWN, as the published digits tables.

Checked against a direct numpy back-substitution of a ReLU MLP (intermediate
bounds of every neuron by CROWN alone, adaptive lower slope 1 where u > -l,
else 0) and against sampled points (soundness); given bounds and splits still
constrain it.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.bounds.nets import mlp, sample_box
from verifier.bounds import BoundOptions, Box, compute_bounds
from verifier.ir import evaluate

TEXTBOOK = BoundOptions(intermediate="crown", intersect_ibp=False)


def _relax(lower, upper):
    unstable = (lower < 0) & (upper > 0)
    active = (lower >= 0) * 1.0
    up = np.where(unstable, upper / np.where(unstable, upper - lower, 1.0), active)
    return np.where(unstable, (upper > -lower) * 1.0, active), up, np.where(unstable,
                                                                           -lower * up, 0.0)


def _reference(layers, lower, upper, C):
    """Textbook CROWN lower bounds of ``C·y`` for one box (numpy, float64)."""
    center, radius = (upper + lower) / 2, (upper - lower) / 2
    relaxations = []

    def bound(A, bias, depth):  # A on the pre-activation of layer ``depth``
        for k in range(depth, -1, -1):
            W, b = layers[k]
            bias, A = bias + A @ b, A @ W
            if k:
                low_s, up_s, up_b = relaxations[k - 1]
                pos, neg = np.maximum(A, 0), np.minimum(A, 0)
                bias, A = bias + neg @ up_b, pos * low_s + neg * up_s
        return A @ center - np.abs(A) @ radius + bias

    for depth in range(len(layers) - 1):
        n = layers[depth][0].shape[0]
        eye = np.eye(n)
        value = bound(np.vstack([eye, -eye]), np.zeros(2 * n), depth)
        relaxations.append(_relax(value[:n], -value[n:]))
    return bound(C, np.zeros(len(C)), len(layers) - 1)


@pytest.mark.parametrize("seed", range(4))
def test_textbook_crown_is_the_textbook_back_substitution(seed):
    rng = np.random.default_rng(seed)
    graph = mlp(rng, (5, 12, 12, 12, 4))
    layers = [(n.weight, n.bias) for n in graph.nodes if hasattr(n, "weight")]
    center = rng.normal(size=(3, 5))
    eps = np.array([[0.05], [0.3], [0.8]])
    box = Box(center - eps, center + eps)
    C = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0], [0.5, 0.0, -2.0, 1.0]])
    textbook = compute_bounds(graph, box, method="crown", C=C, upper=False, options=TEXTBOOK)
    for b in range(3):
        expected = _reference(layers, box.lower[b], box.upper[b], C)
        np.testing.assert_allclose(textbook.lower[b], expected, rtol=1e-9, atol=1e-9)
        points = sample_box(rng, box.lower[b], box.upper[b], 2000)[0]
        values = evaluate(graph, points.reshape(-1, 1, 5)).reshape(len(points), -1) @ C.T
        assert np.all(values.min(axis=0) >= textbook.lower[b] - 1e-9)


def test_textbook_crown_keeps_given_bounds_and_splits():
    rng = np.random.default_rng(7)
    graph = mlp(rng, (4, 8, 8, 3))
    box = Box(-np.ones((1, 4)), np.ones((1, 4)))
    first = compute_bounds(graph, box, method="crown", options=TEXTBOOK)
    relu = min(first.pre_activation)
    free = (first.pre_activation[relu].lower < 0) & (first.pre_activation[relu].upper > 0)
    split = np.where(free, 1, 0).astype(np.int8)
    child = compute_bounds(graph, box, method="crown", options=TEXTBOOK,
                           splits={relu: split}, intermediate=first.pre_activation)
    assert np.all(child.pre_activation[relu].lower[free] >= 0.0)
    for k, interval in child.pre_activation.items():
        assert np.all(interval.lower >= first.pre_activation[k].lower - 1e-12)
        assert np.all(interval.upper <= first.pre_activation[k].upper + 1e-12)
