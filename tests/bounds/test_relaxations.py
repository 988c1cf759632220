"""Every relaxation against dense samples of its function, on random intervals
of every scale (tiny, ordinary, huge, degenerate), and the adjointness of the
affine backward rules."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds.activations import RELAXATION_PAD, activation_for
from verifier.bounds.affine import BACKWARD_RULES
from verifier.bounds.pooling import MaxPoolRelaxation, max_pool_ibp, softmax_ibp
from verifier.bounds.prepare import prepare
from verifier.ir import ops
from verifier.ir.evaluate import EVAL_RULES
from verifier.ir.graph import Graph

from nets import Builder


def _intervals(rng, n=400):
    """Random intervals: ordinary, tiny, huge, degenerate, around 0 and the inflections."""
    centres = np.concatenate([rng.normal(scale=3, size=n), rng.normal(scale=50, size=n // 4),
                              rng.choice([0.0, np.sqrt(2), -np.sqrt(2), -0.75, 1e-3], n // 4)])
    m = centres.size
    widths = np.concatenate([
        rng.uniform(0, 6, size=m // 4),
        10.0 ** rng.uniform(-12, -4, size=m // 4),
        10.0 ** rng.uniform(1, 4, size=m // 4),
        np.zeros(m - 3 * (m // 4)),
    ])
    rng.shuffle(widths)
    skew = rng.uniform(0, 1, size=m)
    lower = centres - skew * widths
    upper = centres + (1 - skew) * widths
    return lower, upper


def _graph_with(node_cls, n, **fields):
    return Graph((ops.Input(shape=(1, n)), node_cls(inputs=(0,), shape=(1, n), **fields)),
                 output=1)


ACTIVATIONS = [
    ("relu", ops.Relu, {}),
    ("leaky", ops.PRelu, {"slope": np.array([0.2])}),
    ("prelu_negative", ops.PRelu, {"slope": np.array([-0.3])}),
    ("prelu_steep", ops.PRelu, {"slope": np.array([1.7])}),
    ("sigmoid", ops.Sigmoid, {}),
    ("tanh", ops.Tanh, {}),
    ("softplus", ops.Softplus, {}),
    ("gelu", ops.Gelu, {}),
    ("gelu_tanh", ops.Gelu, {"approximate": "tanh"}),
    ("sign", ops.Sign, {}),
]


def _check_lines(f, lines, lower, upper, samples=1500):
    t = np.linspace(0.0, 1.0, samples)
    x = np.clip(lower[..., None] + t * (upper - lower)[..., None],
                lower[..., None], upper[..., None])                  # (..., S)
    fx = f(x)
    low = lines.lower_slope[..., None] * x + lines.lower_intercept[..., None]
    high = lines.upper_slope[..., None] * x + lines.upper_intercept[..., None]
    # the lines themselves are evaluated in float: allow their own rounding
    slack = 4e-16 * (1 + np.abs(fx) + np.abs(lines.lower_slope[..., None] * x)
                     + np.abs(lines.upper_slope[..., None] * x)
                     + np.abs(lines.lower_intercept[..., None])
                     + np.abs(lines.upper_intercept[..., None]))
    bad_low = low > fx + slack
    bad_high = high < fx - slack
    if bad_low.any() or bad_high.any():
        idx = np.argwhere(bad_low | bad_high)[0]
        j = tuple(idx[:-1])
        raise AssertionError(
            f"line not sound on [{lower[j]!r}, {upper[j]!r}] at x={x[tuple(idx)]!r}: "
            f"f={fx[tuple(idx)]!r} lower={low[tuple(idx)]!r} upper={high[tuple(idx)]!r}")


@pytest.mark.parametrize("name,cls,fields", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_lines_and_ibp_enclose_the_function(name, cls, fields):
    rng = np.random.default_rng(hash(name) % 2**32)
    lower, upper = _intervals(rng)
    n = lower.size
    if "slope" in fields:
        fields = {"slope": np.full(n, fields["slope"][0])}
    graph = _graph_with(cls, n, **fields)
    prep = prepare(graph)
    node = graph.nodes[1]

    def f(x):
        shape = x.shape
        flat = np.moveaxis(x.reshape(1, n, -1), 2, 0).reshape(-1, 1, n)
        y = EVAL_RULES[cls](node, [flat])
        return np.moveaxis(y.reshape(-1, n), 0, 1).reshape(shape)

    kind = activation_for(node)
    relaxation = kind.relax(prep, 1, lower[None, None, :], upper[None, None, :])
    _check_lines(f, relaxation.lines, lower[None, None, :], upper[None, None, :])
    # every slope in the free range gives sound lines too (alpha-CROWN's search space)
    for _ in range(3):
        slopes = {side: rng.uniform(free.low, free.high, size=(1, 2, n))
                  for side, free in relaxation.free.items()}
        lines, _ = relaxation.with_slopes(slopes)
        _check_lines(f, lines, np.broadcast_to(lower, (1, 2, n)),
                     np.broadcast_to(upper, (1, 2, n)))
    # IBP encloses the samples
    ibp_low, ibp_high = kind.ibp(prep, 1, lower[None], upper[None])
    x = np.clip(lower[:, None] + np.linspace(0, 1, 1500) * (upper - lower)[:, None],
                lower[:, None], upper[:, None])
    fx = f(x[None])[0]
    assert np.all(ibp_low[0][:, None] <= fx + 1e-15 * (1 + np.abs(fx)))
    assert np.all(ibp_high[0][:, None] >= fx - 1e-15 * (1 + np.abs(fx)))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus", "gelu", "gelu_tanh"])
def test_smooth_lines_are_tight_on_tiny_intervals(name):
    """On a tiny interval both lines hug the function (the pad is relative 1e-12)."""
    _, cls, fields = next(a for a in ACTIVATIONS if a[0] == name)
    centres = np.array([-20.0, -3.0, -1.5, -0.7, 0.0, 0.3, 1.4, 5.0, 30.0])
    lower, upper = centres - 1e-7, centres + 1e-7
    graph = _graph_with(cls, centres.size, **fields)
    relaxation = activation_for(graph.nodes[1]).relax(prepare(graph), 1, lower[None, None],
                                                      upper[None, None])
    lines = relaxation.lines
    gap = (lines.upper_slope * centres + lines.upper_intercept
           - lines.lower_slope * centres - lines.lower_intercept)
    assert np.all(gap >= 0)
    assert np.all(gap < 1e-10 + 10 * RELAXATION_PAD * (1 + np.abs(centres)))


def test_relu_relaxation_is_the_triangle_with_adaptive_lower_slope():
    graph = _graph_with(ops.Relu, 4)
    lower = np.array([[[-1.0, -3.0, 0.5, -2.0]]])
    upper = np.array([[[2.0, 1.0, 2.0, -0.5]]])
    lines = activation_for(graph.nodes[1]).relax(prepare(graph), 1, lower, upper).lines
    np.testing.assert_allclose(lines.upper_slope[0, 0], [2 / 3, 0.25, 1.0, 0.0])
    np.testing.assert_allclose(lines.upper_intercept[0, 0], [2 / 3, 0.75, 0.0, 0.0])
    np.testing.assert_allclose(lines.lower_slope[0, 0], [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(lines.lower_intercept[0, 0], 0.0)


def _maxpool_graph(shape, **fields):
    b = Builder(shape, np.random.default_rng(0))
    b.add(ops.MaxPool, [0], **fields)
    return b.graph()


@pytest.mark.parametrize("fields", [
    {"kernel": (2, 2), "stride": (2, 2)},
    {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1, 1, 1)},
    {"kernel": (2, 3), "stride": (2, 1), "padding": (0, 1, 1, 0), "dilation": (2, 1)},
])
def test_maxpool_relaxation_encloses_samples(fields):
    rng = np.random.default_rng(5)
    graph = _maxpool_graph((1, 2, 6, 5), **fields)
    prep = prepare(graph)
    n = graph.input_size
    centre = rng.normal(size=(3, n))
    width = rng.uniform(0, 1, size=(3, n)) * rng.choice([0.01, 1.0, 5.0], size=(3, n))
    lower, upper = centre - width, centre + width
    relaxation = MaxPoolRelaxation(prep, 1, lower, upper)
    x = lower[:, None] + rng.uniform(size=(3, 400, n)) * (upper - lower)[:, None]
    x = np.concatenate([x, lower[:, None], upper[:, None]], axis=1)
    y = EVAL_RULES[ops.MaxPool](graph.nodes[1], [x.reshape((-1,) + graph.input_shape)])
    y = y.reshape(3, x.shape[1], -1)
    m = y.shape[-1]
    low_line = relaxation.forward(x, np.ones((3, x.shape[1], m)))
    high_line = relaxation.forward(x, -np.ones((3, x.shape[1], m)))
    assert np.all(low_line <= y + 1e-12) and np.all(high_line >= y - 1e-12)
    ibp_low, ibp_high = max_pool_ibp(prep, 1, lower.reshape((3,) + graph.input_shape),
                                     upper.reshape((3,) + graph.input_shape))
    assert np.all(ibp_low.reshape(3, 1, -1) <= y) and np.all(ibp_high.reshape(3, 1, -1) >= y)


def test_softmax_interval_bounds_enclose_samples():
    rng = np.random.default_rng(6)
    b = Builder((1, 3, 4), rng)
    b.add(ops.Softmax, [0], axis=1)
    graph = b.graph()
    centre = rng.normal(scale=3, size=(2, 1, 3, 4))
    width = rng.uniform(0, 2, size=centre.shape)
    lower, upper = centre - width, centre + width
    low, high = softmax_ibp(prepare(graph), 1, lower, upper)
    x = lower[:, None] + rng.uniform(size=(2, 500) + centre.shape[1:]) * (upper - lower)[:, None]
    y = EVAL_RULES[ops.Softmax](graph.nodes[1], [x.reshape((-1, 1, 3, 4))]).reshape(x.shape)
    assert np.all(low[:, None] <= y + 1e-15) and np.all(high[:, None] >= y - 1e-15)


def _affine_graphs():
    rng = np.random.default_rng(7)
    graphs = []
    for groups, stride, padding, dilation in [(1, (1, 1), (0, 0, 0, 0), (1, 1)),
                                              (2, (2, 1), (1, 0, 2, 1), (1, 2)),
                                              (1, (3, 2), (2, 2, 0, 1), (2, 1))]:
        b = Builder((1, 4, 9, 8), rng)
        b.conv(0, 6, (3, 2), stride=stride, padding=padding, dilation=dilation, groups=groups)
        graphs.append(b.graph())
    for groups, stride, padding, extra in [(1, (1, 1), (0, 0, 0, 0), (0, 0)),
                                           (2, (2, 3), (1, 0, 0, 1), (1, 2))]:
        b = Builder((1, 4, 5, 4), rng)
        b.conv_transpose(0, 6, (3, 3), stride=stride, padding=padding, groups=groups, extra=extra)
        graphs.append(b.graph())
    b = Builder((2, 6), rng)
    b.add(ops.Gather, [0], shape=(3, 5), index=np.array([[0, 3, -1, 11, 3], [2, 2, 7, -1, 1],
                                                          [5, 6, 8, 9, 10]]), fill=1.5)
    graphs.append(b.graph())
    b = Builder((1, 2, 3), rng)
    b.add(ops.Concat, [0, 0], axis=2)
    graphs.append(b.graph())
    b = Builder((1, 2, 3), rng)
    b.scale(0, per_axis=-1)
    graphs.append(b.graph())
    return graphs


@pytest.mark.parametrize("graph", _affine_graphs())
def test_backward_rules_are_exact_adjoints(graph):
    """For every affine op: A·f(x) == Σ A_in·x + bias on random x and A."""
    rng = np.random.default_rng(8)
    prep = prepare(graph)
    node = graph.nodes[1]
    x = rng.normal(size=(2,) + graph.input_shape)
    y = EVAL_RULES[type(node)](node, [x] * len(node.inputs)).reshape(2, -1)
    A = rng.normal(size=(2, 3, node.size))
    contributions, bias = BACKWARD_RULES[type(node)](prep, 1, node, A)
    total = sum(np.einsum("brn,bn->br", c, x.reshape(2, -1)) for c in contributions)
    total = total + (0.0 if bias is None else bias)
    np.testing.assert_allclose(total, np.einsum("brn,bn->br", A, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_critical_points_come_with_a_small_sound_error_bound(approximate):
    """The extremum of f(x) - a·x found from the Newton roots, plus their
    error bound, is never below the extremum over dense samples."""
    rng = np.random.default_rng(12)
    n = 3000
    graph = _graph_with(ops.Gelu, n, approximate=approximate)
    kind = activation_for(graph.nodes[1])
    centre = rng.normal(scale=3, size=n)
    width = rng.uniform(0, 3, size=n) * 10.0 ** rng.uniform(-8, 2, size=n)
    lower, upper = centre - width, centre + width
    a = rng.uniform(-0.1, 1.1, size=n)
    _, error = kind.critical(a, lower, upper)
    assert np.max(error) < 1e-10
    top, _, _ = kind._extreme("upper", a, lower, upper)
    bottom, _, _ = kind._extreme("lower", a, lower, upper)
    x = np.clip(lower[:, None] + np.linspace(0, 1, 4000) * (upper - lower)[:, None],
                lower[:, None], upper[:, None])
    g = kind.f(x) - a[:, None] * x
    scale = 1e-13 * (1 + np.abs(g).max(axis=1))
    assert np.all(top + error + scale >= g.max(axis=1))
    assert np.all(bottom - error - scale <= g.min(axis=1))


CONV_CASES = [  # (c, h, w, o, kernel, stride, padding, dilation, groups)
    (3, 32, 32, 8, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (4, 9, 8, 6, (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2),
    (6, 7, 9, 6, (2, 3), (3, 2), (2, 2, 0, 1), (2, 1), 3),
    (2, 5, 5, 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_transposed_convolution_is_the_adjoint_of_convolution(case):
    from verifier.ir import functional as F

    c, h, w, o, kernel, stride, padding, dilation, groups = case
    rng = np.random.default_rng(13)
    weight = rng.normal(size=(o, c // groups) + kernel)
    x = rng.normal(size=(5, c, h, w))
    forward = F.conv2d(x, weight, None, stride, padding, dilation, groups)
    y = rng.normal(size=forward.shape)
    back = F.conv_transpose2d(y, weight, None, stride, padding, dilation, groups,
                              output_hw=(h, w))
    assert back.shape == x.shape
    np.testing.assert_allclose((forward * y).sum(), (x * back).sum(), rtol=1e-10)
    for hw in [(h + 1, w + 2), (h - 1, w)]:  # larger outputs are zero-padded, smaller cropped
        other = F.conv_transpose2d(y, weight, None, stride, padding, dilation, groups,
                                   output_hw=hw)
        rows, cols = min(h, hw[0]), min(w, hw[1])
        np.testing.assert_allclose(other[..., :rows, :cols], back[..., :rows, :cols],
                                   atol=1e-12)
