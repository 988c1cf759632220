"""Operator-norm bounds are certified upper bounds (never estimates from below),
and activation slope bounds contain every derivative."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.ir import ops
from verifier.lipschitz import norms
from verifier.lipschitz.operators import Chain
from verifier.lipschitz.slopes import gelu_derivative, global_slope, slope_interval


def _conv_chain(rng, stride, padding, dilation, groups, transpose=False):
    shape = (1, 4, 7, 6)
    if transpose:
        weight = rng.normal(size=(4, 6 // groups, 3, 2))
        node = ops.ConvTranspose(inputs=(0,), shape=(1, 6, 1, 1), weight=weight, stride=stride,
                                 padding=padding, dilation=dilation, groups=groups)
        from verifier.ir.functional import conv_transpose2d

        out = conv_transpose2d(np.zeros(shape), weight, None, stride, padding, dilation, groups)
    else:
        weight = rng.normal(size=(6, 4 // groups, 3, 2))
        node = ops.Conv(inputs=(0,), shape=(1, 6, 1, 1), weight=weight, stride=stride,
                        padding=padding, dilation=dilation, groups=groups)
        from verifier.ir.functional import conv2d

        out = conv2d(np.zeros(shape), weight, None, stride, padding, dilation, groups)
    node = type(node)(**{**{f: getattr(node, f) for f in ("inputs", "weight", "stride",
                                                            "padding", "dilation", "groups")},
                         "shape": out.shape})
    return Chain((node,), shape)


CONVS = [((1, 1), (0, 0, 0, 0), (1, 1), 1), ((2, 1), (1, 0, 2, 1), (1, 1), 2),
         ((1, 2), (1, 1, 1, 1), (2, 1), 1), ((2, 2), (0, 1, 0, 1), (1, 2), 2)]


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("stride,padding,dilation,groups", CONVS)
def test_convolution_bounds_are_above_the_exact_norm(monkeypatch, stride, padding, dilation,
                                                     groups, transpose):
    rng = np.random.default_rng(0)
    chain = _conv_chain(rng, stride, padding, dilation, groups, transpose)
    dense = chain.dense()
    exact_l2 = np.linalg.norm(dense, 2)
    exact_linf = np.abs(dense).sum(axis=1).max()
    exact_l1 = np.abs(dense).sum(axis=0).max()
    assert norms.l2_norm(chain) == pytest.approx(exact_l2, rel=1e-9)
    assert norms.linf_norm(chain) == pytest.approx(exact_linf, rel=1e-9)
    assert norms.l1_norm(chain) >= exact_l1 * (1 - 1e-12)
    monkeypatch.setattr(norms, "DENSE_LIMIT", 0)  # the path for large operators
    large_l2 = norms.l2_norm(chain)
    assert exact_l2 <= large_l2 <= 3.0 * exact_l2
    assert norms.linf_norm(chain) >= exact_linf * (1 - 1e-12)


def test_transpose_of_the_chain_is_its_adjoint():
    rng = np.random.default_rng(1)
    chain = _conv_chain(rng, (2, 1), (1, 0, 2, 1), (1, 1), 2, transpose=True)
    u = rng.normal(size=(3, chain.in_size))
    v = rng.normal(size=(3, chain.out_size))
    assert np.allclose((chain.matvec(u) * v).sum(1), (u * chain.rmatvec(v)).sum(1))


def test_gram_iteration_bounds_the_spectral_norm_from_above():
    rng = np.random.default_rng(2)
    for shape in [(30, 50), (80, 20), (64, 64)]:
        matrix = rng.normal(size=shape)
        exact = np.linalg.norm(matrix, 2)
        bound = norms.gram_iteration(matrix)
        assert exact <= bound <= exact * 1.01


def test_power_iteration_alone_would_be_below_the_bound():
    """A matrix whose top singular vector is nearly orthogonal to the start:
    a few power steps underestimate; the certified bound does not."""
    rng = np.random.default_rng(3)
    values = np.array([1.0, 0.99] + [0.1] * 38)
    q1, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    q2, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    matrix = q1 @ np.diag(values) @ q2.T
    v = q2[:, 1] + 1e-6 * q2[:, 0]
    for _ in range(3):
        v = matrix.T @ (matrix @ v)
        v /= np.linalg.norm(v)
    assert np.linalg.norm(matrix @ v) < 0.995
    assert norms.spectral_norm(matrix) >= 1.0
    assert norms.gram_iteration(matrix) >= 1.0


@pytest.mark.parametrize("kernel,stride,padding,expected",
                         [((3, 3), (1, 1), (1, 1, 1, 1), 9), ((2, 2), (2, 2), (0, 0, 0, 0), 1),
                          ((3, 3), (2, 2), (0, 0, 0, 0), 4), ((3, 1), (1, 1), (0, 0, 0, 0), 3)])
def test_max_pool_overlap(kernel, stride, padding, expected):
    x = np.zeros((1, 1, 7, 7))
    from verifier.ir.functional import max_pool2d

    out = max_pool2d(x, kernel, stride, padding)
    node = ops.MaxPool(inputs=(0,), shape=out.shape, kernel=kernel, stride=stride,
                       padding=padding)
    assert norms.max_pool_overlap(node, x.shape) == expected


ACTIVATIONS = [ops.Relu(inputs=(0,), shape=(1, 3)),
               ops.PRelu(inputs=(0,), shape=(1, 3), slope=np.array([0.2, -1.5, 0.7])),
               ops.Sigmoid(inputs=(0,), shape=(1, 3)), ops.Tanh(inputs=(0,), shape=(1, 3)),
               ops.Softplus(inputs=(0,), shape=(1, 3)), ops.Gelu(inputs=(0,), shape=(1, 3)),
               ops.Gelu(inputs=(0,), shape=(1, 3), approximate="tanh")]


def _derivative(node, x):
    from verifier.ir.evaluate import EVAL_RULES

    h = 1e-6
    f = EVAL_RULES[type(node)]
    return (f(node, [x + h]) - f(node, [x - h])) / (2 * h)


@pytest.mark.parametrize("node", ACTIVATIONS, ids=lambda n: f"{type(n).__name__}")
def test_slopes_contain_every_derivative(node):
    grid = np.linspace(-8, 8, 200001)[:, None].repeat(3, axis=1)
    derivative = _derivative(node, grid)
    slope = global_slope(node)
    assert np.abs(derivative).max() <= slope * (1 + 1e-6)
    assert np.abs(derivative).max() >= slope * (1 - 1e-3)  # and it is tight
    rng = np.random.default_rng(4)
    lower = rng.uniform(-4, 3, size=(400, 3))
    upper = lower + rng.exponential(1.0, size=(400, 3)) * (rng.uniform(size=(400, 3)) > 0.2)
    low, high = slope_interval(node, lower, upper)
    for t in np.linspace(0, 1, 21):
        inside = _derivative(node, lower + t * (upper - lower))
        assert np.all(inside >= low - 1e-6) and np.all(inside <= high + 1e-6)


def test_gelu_sup_slope_is_exact():
    expected = gelu_derivative(np.sqrt(2.0))
    assert expected == pytest.approx(1.1289, abs=1e-4)
    node = ops.Gelu(inputs=(0,), shape=(1,))
    assert global_slope(node) == pytest.approx(expected, rel=1e-8)
