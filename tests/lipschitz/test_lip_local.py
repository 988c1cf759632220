"""Local Lipschitz bounds: sound inside their ball, never above the global bound."""
from __future__ import annotations

import numpy as np
import pytest

from lip_models import (MODELS, TOLERANCE, ball_points, dual_of, lowered,
                        margin_gradients, margin_values, norm_of, relu_mlp)
from verifier.errors import VerifierError
from verifier.lipschitz import (NoLipschitzRuleError, certify, global_lipschitz,
                                local_lipschitz)



@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_local_bound_holds_inside_its_ball(name, norm):
    rng = np.random.default_rng(7)
    graph = lowered(MODELS[name](rng))
    n, k = graph.input_size, graph.output_size
    centers = rng.normal(size=(6, n))
    eps = 0.3 if norm == "l2" else 0.1
    labels = rng.integers(0, k, size=len(centers))
    glob = global_lipschitz(graph, norm)
    local = local_lipschitz(graph, centers, labels, eps, norm, global_bound=glob)
    assert np.all(local <= glob.margin[labels])
    assert np.all(local[np.arange(len(centers)), labels] == 0.0)
    tighter = 0
    for b, center in enumerate(centers):
        y = labels[b]
        points = ball_points(rng, center, eps, norm, 300)
        partners = ball_points(rng, center, eps, norm, 300)
        for j in range(k):
            if j == y:
                continue
            limit = local[b, j]
            gradients = margin_gradients(graph, points, y, j)
            assert np.all(dual_of(gradients, norm) <= limit * (1 + TOLERANCE) + 1e-12)
            change = np.abs(margin_values(graph, points, y, j)
                            - margin_values(graph, partners, y, j))
            distance = norm_of(points - partners, norm)
            assert np.all(change <= limit * distance * (1 + TOLERANCE) + 1e-12)
            tighter += limit < glob.margin[y, j] * 0.999
    assert tighter > 0  # the local bound does improve on the global one somewhere


def test_a_zero_radius_gives_the_gradient_norm_of_a_relu_net():
    """At a point where every ReLU is stable, the radius-0 local bound is the
    exact gradient norm of the margin."""
    rng = np.random.default_rng(8)
    graph = lowered(relu_mlp(rng))
    x = rng.normal(size=(4, graph.input_size))
    labels = np.zeros(4, dtype=np.int64)
    local = local_lipschitz(graph, x, labels, 0.0, "l2")
    for b in range(4):
        gradient = margin_gradients(graph, x[b:b + 1], 0, 1)
        assert local[b, 1] == pytest.approx(np.linalg.norm(gradient), rel=1e-8)


def test_local_radius_is_never_below_the_global_radius():
    rng = np.random.default_rng(9)
    graph = lowered(relu_mlp(rng))
    x = rng.normal(size=(40, graph.input_size))
    labels = np.argmax(_logits(graph, x), axis=1)
    for norm in ("l2", "linf"):
        glob = certify(graph, x, labels, norm)
        for eps in (0.001, 0.05, 0.5):
            local = certify(graph, x, labels, norm, local_eps=eps)
            for g, lo in zip(glob, local):
                assert lo.radius >= g.radius
                assert lo.radius <= max(g.radius, eps)


def _logits(graph, x):
    from verifier.ir.evaluate import evaluate

    return evaluate(graph, x.reshape((len(x),) + graph.input_shape)).reshape(len(x), -1)


def test_bad_radius_and_missing_rules_are_errors():
    rng = np.random.default_rng(10)
    graph = lowered(relu_mlp(rng))
    x = rng.normal(size=(2, graph.input_size))
    with pytest.raises(VerifierError, match="radius"):
        local_lipschitz(graph, x, [0, 1], -1.0)
    with pytest.raises(VerifierError, match="labels must be classes"):
        certify(graph, x, [0, 3])
    with pytest.raises(VerifierError, match="shape"):
        certify(graph, x[:, :3], [0, 1])
    from tests.bounds.onnx_models import OnnxBuilder

    b = OnnxBuilder([1, 4], rng)
    signed = lowered(b.model(b.gemm(b.op("Sign", [b.gemm("x", 4, 4)]), 4, 3)))
    with pytest.raises(NoLipschitzRuleError, match="Sign"):
        local_lipschitz(signed, rng.normal(size=(1, 4)), [0], 0.1)


def test_interval_product_is_exact():
    from verifier.lipschitz.local_bound import _interval_product

    rng = np.random.default_rng(11)
    center, radius = rng.normal(size=500), np.abs(rng.normal(size=500))
    low = rng.normal(size=500)
    high = low + np.abs(rng.normal(size=500))
    mid, half = _interval_product(center, radius, low, high)
    t = rng.uniform(size=(200, 1))
    u = rng.uniform(size=(200, 1))
    products = (center - radius + 2 * radius * t) * (low + (high - low) * u)
    assert np.all(products >= mid - half - 1e-12) and np.all(products <= mid + half + 1e-12)
    corners = np.stack([(center + a * radius) * b for a in (-1, 1) for b in (low, high)])
    assert np.allclose(mid - half, corners.min(axis=0)) and np.allclose(mid + half,
                                                                        corners.max(axis=0))
