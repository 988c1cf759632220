"""Global Lipschitz bounds: soundness on random networks of every op with a
rule, exactness on linear models, errors for ops without a rule."""
from __future__ import annotations

import numpy as np
import pytest

from lip_models import (MODELS, TOLERANCE, conv_net, dual_of, lowered, margin_gradients,
                        margin_values, norm_of, relu_mlp, steepest)
from tests.bounds.onnx_models import OnnxBuilder
from verifier.errors import VerifierError
from verifier.lipschitz import NoLipschitzRuleError, certify, global_lipschitz



@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_global_bound_holds_on_sampled_pairs_and_gradients(name, norm):
    rng = np.random.default_rng(3)
    graph = lowered(MODELS[name](rng))
    bound = global_lipschitz(graph, norm)
    n, k = graph.input_size, graph.output_size
    x = rng.normal(size=(200, n))
    worst = 0.0
    for y in range(k):
        for j in range(k):
            if j == y:
                continue
            limit = bound.margin[y, j]
            gradients = margin_gradients(graph, x, y, j)
            assert np.all(dual_of(gradients, norm) <= limit * (1 + TOLERANCE)), (y, j)
            # pairs: random directions at several scales, and steepest ascent
            for step in (1e-4, 1e-2, 1.0):
                for delta in (rng.normal(size=x.shape), steepest(gradients, norm)):
                    delta = step * delta / norm_of(delta, norm)[:, None]
                    change = np.abs(margin_values(graph, x + delta, y, j)
                                    - margin_values(graph, x, y, j))
                    ratio = change / norm_of(delta, norm)
                    assert np.all(ratio <= limit * (1 + TOLERANCE) + 1e-7), (y, j, step)
                    worst = max(worst, float((ratio / limit).max()))
    assert worst > 0.01  # the samples do exercise the bound


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_logit_bounds_hold(norm):
    rng = np.random.default_rng(5)
    graph = lowered(conv_net(rng))
    bound = global_lipschitz(graph, norm)
    x = rng.normal(size=(100, graph.input_size))
    delta = rng.normal(size=x.shape) * 1e-3
    change = np.abs(_logits(graph, x + delta) - _logits(graph, x))
    ratio = change / norm_of(delta, norm)[:, None]
    assert np.all(ratio <= bound.logit * (1 + TOLERANCE))


def _logits(graph, x):
    from verifier.ir.evaluate import evaluate

    return evaluate(graph, x.reshape((len(x),) + graph.input_shape)).reshape(len(x), -1)


def linear_model(rng, n=5, k=4, binary=False):
    b = OnnxBuilder([1, n], rng)
    w = b.normal(k if not binary else 1, n)
    bias = b.normal(k if not binary else 1)
    out = b.op("Gemm", ["x", b.const(w), b.const(bias)], transB=1)
    # the float32 initializers are what the model computes with
    return b.model(out), w.astype(np.float32).astype(np.float64), \
        bias.astype(np.float32).astype(np.float64)


def test_linear_model_is_exact():
    rng = np.random.default_rng(0)
    model, w, _ = linear_model(rng)
    graph = lowered(model)
    l2 = global_lipschitz(graph, "l2")
    linf = global_lipschitz(graph, "linf")
    for y in range(4):
        for j in range(4):
            diff = w[y] - w[j]
            assert l2.margin[y, j] == pytest.approx(np.linalg.norm(diff), rel=1e-7, abs=0)
            assert linf.margin[y, j] == pytest.approx(np.abs(diff).sum(), rel=1e-7, abs=0)
            assert l2.margin[y, j] >= np.linalg.norm(diff)
    assert np.allclose(l2.logit, np.linalg.norm(w, axis=1), rtol=1e-7)


def test_binary_linear_radius_is_the_closed_form():
    rng = np.random.default_rng(1)
    model, w, bias = linear_model(rng, n=6, binary=True)
    graph = lowered(model)
    x = rng.normal(size=(50, 6))
    score = x @ w[0] + bias[0]
    labels = (score > 0).astype(np.int64)
    certificates = certify(graph, x, labels, "l2")
    expected = (np.abs(score) - 1e-6) / np.linalg.norm(w[0])  # minus the decision margin
    radius = np.array([c.radius for c in certificates])
    assert np.all(np.abs(radius - np.maximum(expected, 0.0)) <= 1e-9)
    assert all(c.correct for c in certificates)
    wrong = certify(graph, x, 1 - labels, "l2")
    assert all(c.radius == 0.0 and not c.correct for c in wrong)


def test_softmax_and_sign_are_named_errors():
    rng = np.random.default_rng(2)
    b = OnnxBuilder([1, 4], rng)
    h = b.op("Sign", [b.gemm("x", 4, 4)])
    out = b.op("Softmax", [b.gemm(h, 4, 3)], axis=1)
    graph = lowered(b.model(out))
    with pytest.raises(NoLipschitzRuleError) as info:
        global_lipschitz(graph, "l2")
    assert isinstance(info.value, VerifierError)
    assert "Softmax" in str(info.value) and "Sign" in str(info.value)
    assert len(info.value.nodes) == 2


def test_unknown_norm_is_an_error():
    graph = lowered(relu_mlp(np.random.default_rng(0)))
    with pytest.raises(VerifierError, match="unknown norm"):
        global_lipschitz(graph, "l1")


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_bounds_for_large_operators_hold_and_are_not_below_the_exact_ones(monkeypatch, norm):
    """With nothing materialised (circulant, Schur and per-node bounds), the
    global bound is still sound, and never below the exact-norm one."""
    from verifier.lipschitz import norms

    rng = np.random.default_rng(3)
    graph = lowered(conv_net(rng))
    exact = global_lipschitz(graph, norm)
    monkeypatch.setattr(norms, "DENSE_LIMIT", 0)
    large = global_lipschitz(graph, norm)
    assert np.all(large.margin >= exact.margin * (1 - 1e-12))
    x = rng.normal(size=(300, graph.input_size))
    for j in range(1, graph.output_size):
        gradients = margin_gradients(graph, x, 0, j)
        assert np.all(dual_of(gradients, norm) <= large.margin[0, j] * (1 + TOLERANCE))
