"""Soundness of every method on random networks built from every core op:
sampled points and box corners (and points on L2 spheres) evaluated exactly
lie inside the bounds; CROWN is never looser than IBP, alpha-CROWN never
looser than CROWN."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds import METHODS, BoundOptions, Box, L2Ball, compute_bounds
from verifier.ir import evaluate, ops

from nets import (assert_inside, branchy_net, conv_net, mlp, residual_relu_net, sample_box,
                  sample_sphere)

NETWORKS = {
    "relu_mlp": lambda rng: mlp(rng, [5, 12, 12, 4]),
    "sigmoid_mlp": lambda rng: mlp(rng, [5, 10, 10, 4], ops.Sigmoid),
    "tanh_mlp": lambda rng: mlp(rng, [5, 10, 10, 4], ops.Tanh),
    "softplus_mlp": lambda rng: mlp(rng, [5, 10, 10, 4], ops.Softplus),
    "gelu_mlp": lambda rng: mlp(rng, [5, 10, 10, 4], ops.Gelu),
    "conv_pool_net": conv_net,
    "branchy_net": branchy_net,
    "residual_net": residual_relu_net,
}
COVERED = {type(node) for make in NETWORKS.values()
           for node in make(np.random.default_rng(0)).nodes}


def test_the_networks_cover_every_core_op():
    assert set(ops.CORE_OPS) <= COVERED


def _outputs(graph, X, C, d):
    """``C·f(x) - d`` for samples ``X`` (B, S, n) -> (B, S, R)."""
    batch, count = X.shape[:2]
    y = evaluate(graph, X.reshape((-1,) + graph.input_shape)).reshape(batch, count, -1)
    return np.einsum("brn,bsn->bsr", np.broadcast_to(C, (batch,) + C.shape[1:]), y) - d[:, None]


def _random_boxes(rng, graph, batch, scale):
    n = graph.input_size
    centre = rng.normal(size=(batch, n))
    width = rng.uniform(0.0, scale, size=(batch, n))
    width[:, rng.random(n) < 0.1] = 0.0   # some fixed coordinates
    return centre - width, centre + width


def _spec(rng, graph, batch):
    rows = 3
    C = rng.normal(size=(batch, rows, graph.output_size))
    d = rng.normal(size=(batch, rows))
    return C, d


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("seed", [0, 1])
def test_box_bounds_contain_samples_and_corners(name, seed):
    rng = np.random.default_rng(seed)
    graph = NETWORKS[name](rng)
    batch = 3
    lower, upper = _random_boxes(rng, graph, batch, scale=[0.05, 0.5][seed])
    box = Box(lower, upper)
    C, d = _spec(rng, graph, batch)
    X = sample_box(rng, lower, upper, 150)
    values = _outputs(graph, X, C, d)
    raw = _outputs(graph, X, np.eye(graph.output_size)[None], np.zeros((batch, 1)))
    results = {}
    for method in METHODS:
        result = compute_bounds(graph, box, method=method, C=C, d=d)
        assert_inside(values, result.lower, result.upper, what=f"{name} {method}")
        results[method] = result
        plain = compute_bounds(graph, box, method=method)
        assert_inside(raw, plain.lower, plain.upper, what=f"{name} {method} outputs")
    tol = 1e-9
    for looser, tighter in [("ibp", "crown"), ("crown", "alpha-crown")]:
        assert np.all(results[tighter].lower >= results[looser].lower - tol)
        assert np.all(results[tighter].upper <= results[looser].upper + tol)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_intermediate_bounds_contain_the_pre_activations(name):
    rng = np.random.default_rng(11)
    graph = NETWORKS[name](rng)
    lower, upper = _random_boxes(rng, graph, 2, scale=0.3)
    X = sample_box(rng, lower, upper, 200)
    values = evaluate(graph, X.reshape((-1,) + graph.input_shape), all_values=True)
    result = compute_bounds(graph, Box(lower, upper), method="crown")
    for k, interval in result.node_bounds.items():
        v = values[k].reshape(2, X.shape[1], -1)
        assert_inside(v, interval.lower, interval.upper, what=f"{name} node {k}")


@pytest.mark.parametrize("name", ["relu_mlp", "sigmoid_mlp", "gelu_mlp", "conv_pool_net",
                                  "branchy_net"])
@pytest.mark.parametrize("clip", [False, True])
def test_l2_ball_bounds_contain_points_on_the_sphere(name, clip):
    rng = np.random.default_rng(3)
    graph = NETWORKS[name](rng)
    n = graph.input_size
    centre = rng.normal(size=(2, n))
    radius = np.array([0.2, 0.6])
    kwargs = {}
    points = sample_sphere(rng, centre, radius, 300)
    if clip:
        kwargs = {"lower": centre - 0.1, "upper": centre + 0.3}
        points = np.clip(points, kwargs["lower"][:, None], kwargs["upper"][:, None])
    ball = L2Ball(centre, radius, **kwargs)
    C, d = _spec(rng, graph, 2)
    values = _outputs(graph, points, C, d)
    previous = None
    for method in METHODS:
        result = compute_bounds(graph, ball, method=method, C=C, d=d)
        assert_inside(values, result.lower, result.upper, what=f"{name} {method} L2")
        if previous is not None:
            assert np.all(result.lower >= previous.lower - 1e-9)
        previous = result


def _pre_activation_values(graph, X, k):
    values = evaluate(graph, X.reshape((-1,) + graph.input_shape), all_values=True)
    return values[graph.nodes[k].inputs[0]].reshape(X.shape[0], X.shape[1], -1)


@pytest.mark.parametrize("name", ["relu_mlp", "residual_net", "conv_pool_net"])
def test_split_constraints_bound_the_sub_domain(name):
    """Points whose pre-activations satisfy the splits lie inside the bounds,
    for CROWN and for alpha/beta-CROWN."""
    rng = np.random.default_rng(4)
    graph = NETWORKS[name](rng)
    lower, upper = _random_boxes(rng, graph, 4, scale=0.6)
    box = Box(lower, upper)
    base = compute_bounds(graph, box, method="crown")
    X = sample_box(rng, lower, upper, 2000)
    keep = np.ones(X.shape[:2], dtype=bool)
    splits = {}
    for k, interval in base.pre_activation.items():
        if not isinstance(graph.nodes[k], (ops.Relu, ops.PRelu)):
            continue
        unstable = (interval.lower < 0) & (interval.upper > 0)
        split = np.zeros(interval.lower.shape, dtype=np.int8)
        z = _pre_activation_values(graph, X, k)
        for b in range(split.shape[0]):
            # split up to three unstable neurons the way a reference sample
            # (the first point) goes, so that the sub-domain is not empty
            picked = rng.permutation(np.flatnonzero(unstable[b]))[:3]
            split[b, picked] = np.where(z[b, 0, picked] >= 0, 1, -1)
        splits[k] = split
        keep &= np.all((split[:, None] >= 0) | (z <= 0), axis=-1)
        keep &= np.all((split[:, None] <= 0) | (z >= 0), axis=-1)
    assert keep.sum(axis=1).min() >= 1 and keep.sum() >= 100, "too few points satisfy the splits"
    C, d = _spec(rng, graph, 4)
    values = _outputs(graph, X, C, d)
    values = np.where(keep[..., None], values, np.nan)
    for method in METHODS:
        result = compute_bounds(graph, box, method=method, C=C, d=d, splits=splits)
        ok = ~np.isnan(values)
        feasible = ~result.infeasible
        assert np.all(keep[~feasible] == False), "a non-empty sub-domain was declared empty"  # noqa: E712
        v = np.where(ok, values, np.where(np.isfinite(result.lower[:, None]),
                                          result.lower[:, None], 0.0))
        assert_inside(v[feasible], result.lower[feasible], result.upper[feasible],
                      what=f"{name} {method} with splits")
        for k, interval in result.pre_activation.items():
            if k in splits:
                s = splits[k]
                assert np.all(interval.lower[(s > 0) & feasible[:, None]] >= 0)
                assert np.all(interval.upper[(s < 0) & feasible[:, None]] <= 0)


def test_beta_crown_tightens_split_sub_problems():
    """With splits, beta multipliers give bounds at least as tight as alpha alone."""
    rng = np.random.default_rng(5)
    graph = mlp(rng, [4, 16, 16, 3])
    lower, upper = _random_boxes(rng, graph, 6, scale=1.0)
    box = Box(lower, upper)
    base = compute_bounds(graph, box, method="crown")
    splits = {}
    for k, interval in base.pre_activation.items():
        unstable = (interval.lower < 0) & (interval.upper > 0)
        split = np.zeros(interval.lower.shape, dtype=np.int8)
        split[unstable] = rng.choice([-1, 1], size=unstable.sum())
        splits[k] = split
    C, d = _spec(rng, graph, 6)
    with_beta = compute_bounds(graph, box, method="alpha-crown", C=C, d=d, splits=splits)
    crown = compute_bounds(graph, box, method="crown", C=C, d=d, splits=splits)
    assert with_beta.beta is not None
    feasible = ~with_beta.infeasible
    assert np.all(with_beta.lower[feasible] >= crown.lower[feasible] - 1e-9)


@pytest.mark.parametrize("name", ["relu_mlp", "sigmoid_mlp", "conv_pool_net"])
def test_batch_elements_are_independent_and_chunking_changes_nothing(name):
    rng = np.random.default_rng(6)
    graph = NETWORKS[name](rng)
    lower, upper = _random_boxes(rng, graph, 4, scale=0.4)
    C, d = _spec(rng, graph, 4)
    quick = BoundOptions(alpha_iterations=3)
    small = BoundOptions(alpha_iterations=3, chunk_elements=256)
    for method in METHODS:
        whole = compute_bounds(graph, Box(lower, upper), method=method, C=C, d=d, options=quick)
        chunked = compute_bounds(graph, Box(lower, upper), method=method, C=C, d=d,
                                 options=small)
        np.testing.assert_allclose(chunked.lower, whole.lower, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(chunked.upper, whole.upper, rtol=1e-9, atol=1e-9)
        for b in (0, 3):
            one = compute_bounds(graph, Box(lower[b:b + 1], upper[b:b + 1]), method=method,
                                 C=C[b:b + 1], d=d[b:b + 1], options=quick)
            np.testing.assert_allclose(one.lower[0], whole.lower[b], rtol=1e-9, atol=1e-9)


def test_passing_intermediate_bounds_back_is_sound_and_never_looser():
    rng = np.random.default_rng(7)
    graph = mlp(rng, [4, 12, 12, 12, 3])
    lower, upper = _random_boxes(rng, graph, 2, scale=0.8)
    box = Box(lower, upper)
    first = compute_bounds(graph, box, method="crown")
    X = sample_box(rng, lower, upper, 300)
    raw = _outputs(graph, X, np.eye(3)[None], np.zeros((2, 1)))
    for recompute in (False, True):
        again = compute_bounds(graph, box, method="alpha-crown",
                               intermediate=first.pre_activation,
                               options=BoundOptions(recompute_intermediate=recompute))
        assert_inside(raw, again.lower, again.upper, what="reused intermediate bounds")
        assert np.all(again.lower >= first.lower - 1e-9)
        for k, interval in again.pre_activation.items():
            assert np.all(interval.lower >= first.pre_activation[k].lower - 1e-12)
            assert np.all(interval.upper <= first.pre_activation[k].upper + 1e-12)
    # and a warm start from the optimised slopes is never worse
    best = compute_bounds(graph, box, method="alpha-crown")
    warm = compute_bounds(graph, box, method="alpha-crown", alpha=best.alpha)
    assert np.all(warm.lower >= best.lower - 1e-9)


def test_a_branch_and_bound_step_through_the_api():
    """Parent bounds -> branch on the best-scored neuron -> two children that
    reuse the parent's intermediate bounds and slopes; each child is sound on
    its half of the domain."""
    rng = np.random.default_rng(8)
    graph = mlp(rng, [4, 16, 16, 2])
    lower, upper = _random_boxes(rng, graph, 2, scale=1.0)
    C = np.array([[[1.0, -1.0]]])
    parent = compute_bounds(graph, Box(lower, upper), method="alpha-crown", C=C, upper=False)
    assert parent.upper is None and parent.lower.shape == (2, 1)
    k = max(parent.split_scores, key=lambda key: parent.split_scores[key][0].max())
    scores = parent.split_scores[k][:, 0]  # the one row
    interval = parent.pre_activation[k]
    stable = (interval.lower >= 0) | (interval.upper <= 0)
    assert np.all(scores >= 0) and np.all(scores[stable] == 0) and scores[0].max() > 0
    neuron = int(np.argmax(scores[0]))
    both = parent.take(np.array([0, 0]))  # the first parent, twice: one child per side
    split = np.zeros((2, graph.nodes[k].size), dtype=np.int8)
    split[0, neuron], split[1, neuron] = -1, 1
    children = compute_bounds(graph, Box(lower[[0, 0]], upper[[0, 0]]), method="alpha-crown",
                              C=C, upper=False, splits={k: split},
                              intermediate=both.pre_activation, alpha=both.alpha)
    X = sample_box(rng, lower[:1], upper[:1], 3000)[0]
    z = _pre_activation_values(graph, X[None], k)[0, :, neuron]
    values = _outputs(graph, X[None], C, np.zeros((1, 1)))[0, :, 0]
    for side, chosen in ((0, z <= 0), (1, z >= 0)):
        if chosen.any() and not children.infeasible[side]:
            assert values[chosen].min() >= children.lower[side, 0] - 1e-9
    assert children.pre_activation[k].upper[0, neuron] <= 0
    assert children.pre_activation[k].lower[1, neuron] >= 0
