"""Splitting sigmoid/tanh neurons as branch and bound does
(verifier.search.bab): a child is the parent's intermediate bounds with one
neuron's input interval cut in the middle and the later intermediate
bounds recomputed under that clamp, on the float32 network (the children
made by ``bab._children``). Every float32
point must lie in a child whose pre-activation intervals hold its float32
pre-activations (onnxruntime's), and there each child's bound must hold for
onnxruntime's float32 outputs (up to the comparison floor only)."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper

from verifier.bounds import Box, compute_bounds
from verifier.bounds.engine import SMOOTH_SPLIT
from verifier.bounds.margin import COMPARISON, MARGIN_FLOOR
from verifier.bounds.result import BoundOptions, Interval
from verifier.bounds.roundoff import float32_hull
from verifier.frontend import load_model
from verifier.runtime import open_session
from verifier.search import bab

from onnx_models import OnnxBuilder
from test_roundoff_direct import deep_net

FLOAT32 = BoundOptions(float32=True)
#: how branch and bound bounds a child (verifier.search.bab)
CHILD = BoundOptions(float32=True, alpha_iterations=10, recompute_intermediate=True,
                     alpha_intermediate=False)


def mixed_net(rng, width=10, n_in=6, n_out=4):
    """Shared operands: x feeds two Gemms, the sigmoid layer feeds a Gemm and
    the final Add; Sigmoid then Tanh."""
    b = OnnxBuilder([1, n_in], rng, opset=17)
    h1 = b.op("Sigmoid", [b.gemm("x", n_in, width)])
    h2 = b.op("Tanh", [b.op("Add", [b.gemm(h1, width, width), b.gemm("x", n_in, width)])])
    return b.model(b.gemm(b.op("Add", [h2, h1]), width, n_out))


NETS = [("sigmoid", lambda rng: deep_net(rng, "Sigmoid", 3, width=12, n_in=6)),
        ("tanh", lambda rng: deep_net(rng, "Tanh", 3, width=12, n_in=6)),
        ("mixed", mixed_net)]


def _float32_run(model, X):
    """onnxruntime's float32 output and the float32 input of every Sigmoid/Tanh at X."""
    augmented = ModelProto()
    augmented.CopyFrom(model)
    for node in augmented.graph.node:
        if node.op_type in ("Sigmoid", "Tanh"):
            augmented.graph.output.append(
                helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
    session = open_session(augmented, device="cpu", batching="loop")
    values = session.run_all(np.asarray(X, dtype=np.float32))
    flat = [np.asarray(v, dtype=np.float64).reshape(len(X), -1) for v in values]
    return flat[0], flat[1:]


def _points(rng, lo, hi, count=800):
    n = lo.size
    X = np.vstack([rng.uniform(lo, hi, size=(count, n)),
                   np.where(rng.integers(0, 2, size=(64, n)) == 1, hi, lo)])
    return X.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("name,build", NETS, ids=[n for n, _ in NETS])
@pytest.mark.parametrize("seed", range(3))
def test_every_float32_point_lies_in_a_child_whose_bounds_hold(name, build, seed):
    rng = np.random.default_rng(seed)
    model = build(rng)
    graph = load_model(model)
    smooth = [k for k, n in enumerate(graph.nodes) if isinstance(n, SMOOTH_SPLIT)]
    centre = rng.normal(size=graph.input_size)
    lo, hi = float32_hull(centre - 0.5, centre + 0.5)
    box = Box(lo[None], hi[None])
    root = compute_bounds(graph, box, method="alpha-crown", upper=False, options=FLOAT32)
    # three neurons to split, from different nodes where possible: the widest
    picks = []
    for k in itertools.islice(itertools.cycle(smooth), 3):
        width = root.pre_activation[k].width[0].copy()
        for taken_k, taken_j in picks:
            if taken_k == k:
                width[taken_j] = -1
        picks.append((k, int(np.argmax(width))))
    # every pick splits every leaf so far, as branch and bound's _children does
    leaves = [bab._Domain({}, dict(root.pre_activation), None, 0.0)]
    for k, j in picks:
        leaves = [child for dom in leaves for child in bab._children(graph, dom, k, j)]
        for first, second in zip(leaves[::2], leaves[1::2]):
            low, cut = first.intermediate[k].lower[0, j], first.intermediate[k].upper[0, j]
            assert second.intermediate[k].lower[0, j] == cut
            assert low < cut < second.intermediate[k].upper[0, j]
    leaves = [dom.intermediate for dom in leaves]
    n = len(leaves)
    C = rng.normal(size=(5, graph.output_size))
    X = _points(rng, lo, hi)
    y32, pre = _float32_run(model, X)
    d = (y32 @ C.T).min(axis=0) - 0.05
    given = {k: Interval(np.vstack([t[k].lower for t in leaves]),
                         np.vstack([t[k].upper for t in leaves])) for k in smooth}
    result = compute_bounds(graph, Box(np.repeat(lo[None], n, 0), np.repeat(hi[None], n, 0)),
                            method="alpha-crown", C=C, d=d, upper=False, intermediate=given,
                            options=CHILD)
    values = y32 @ C.T - d
    floor = MARGIN_FLOOR + COMPARISON * (np.abs(y32).sum(axis=1, keepdims=True) + np.abs(d))
    z = {k: pre[index] for index, k in enumerate(smooth)}
    member = np.ones((len(X), n), dtype=bool)
    for leaf, table in enumerate(leaves):
        for (k, j) in picks:
            member[:, leaf] &= (table[k].lower[0, j] <= z[k][:, j]) \
                & (z[k][:, j] <= table[k].upper[0, j])
    assert member.any(axis=1).all(), "a float32 point in no child"
    checked = 0
    for leaf in range(n):
        inside = member[:, leaf]
        if not inside.any():
            continue
        assert not result.infeasible[leaf], leaf
        assert np.all(result.lower[leaf] <= values[inside] + floor[inside]), leaf
        for k in smooth:
            interval = result.pre_activation[k]
            assert np.all(interval.lower[leaf] <= z[k][inside]), (leaf, k)
            assert np.all(z[k][inside] <= interval.upper[leaf]), (leaf, k)
        table = leaves[leaf]
        for k, j in picks:  # the clamp holds in the recomputed table
            assert result.pre_activation[k].upper[leaf, j] <= table[k].upper[0, j]
            assert result.pre_activation[k].lower[leaf, j] >= table[k].lower[0, j]
        checked += 1
    assert checked >= 2


def _warm_children(graph, smooth, parent, per_node, lo, hi, C, d, options):
    """The children of splitting each of the ``per_node`` widest neurons of
    every sigmoid/tanh node of ``parent`` (``bab._children``), the (node,
    neuron) cut for each, and their bounds warm-started from the parent's
    slopes as branch and bound does."""
    root = bab._Domain({}, dict(parent.pre_activation), None, 0.0)
    children, cuts = [], []
    for k in smooth:
        for j in np.argsort(-parent.pre_activation[k].width[0])[:per_node]:
            children += bab._children(graph, root, k, int(j))
            cuts += [(k, int(j))] * 2
    n = len(children)
    given = {k: Interval(np.vstack([c.intermediate[k].lower for c in children]),
                         np.vstack([c.intermediate[k].upper for c in children]))
             for k in smooth}
    warm = {k: {side: np.repeat(v, n, 0) for side, v in sides.items()}
            for k, sides in parent.alpha.items()}
    result = compute_bounds(graph, Box(np.repeat(lo[None], n, 0), np.repeat(hi[None], n, 0)),
                            method="alpha-crown", C=C, d=d, upper=False, intermediate=given,
                            alpha=warm, options=options)
    return children, cuts, result


@pytest.mark.parametrize("name,build", NETS, ids=[n for n, _ in NETS])
def test_a_child_with_its_parents_slopes_is_never_below_its_parent(name, build):
    """The same slopes on narrower intervals give tighter lines, so a child
    warm-started from its parent's slopes starts at least at the parent's
    bound (clipping a smooth slope to the child's narrower range of f' lost
    up to 0.5 on eran's sigmoid MLP)."""
    rng = np.random.default_rng(5)
    model = build(rng)
    graph = load_model(model)
    smooth = [k for k, n in enumerate(graph.nodes) if isinstance(n, SMOOTH_SPLIT)]
    lo, hi = float32_hull(np.full(graph.input_size, -1.0), np.full(graph.input_size, 1.0))
    C = rng.normal(size=(4, graph.output_size))
    options = BoundOptions(float32=True, alpha_intermediate=False)
    parent = compute_bounds(graph, Box(lo[None], hi[None]), method="alpha-crown", C=C,
                            upper=False, options=options)
    _, _, result = _warm_children(graph, smooth, parent, 3, lo, hi, C, None,
                                  dataclasses.replace(options, alpha_iterations=0))
    assert np.all(result.lower >= parent.lower - 1e-9 * (1 + np.abs(parent.lower)))
    assert np.any(result.lower > parent.lower + 1e-6)


@pytest.mark.parametrize("name,build", NETS, ids=[n for n, _ in NETS])
@pytest.mark.parametrize("seed", range(2))
def test_children_optimised_from_their_parents_slopes_hold_on_float32_points(name, build,
                                                                             seed):
    """A child's warm slopes may lie outside the range of f' on its narrower
    interval (alpha-CROWN keeps them, see verifier.bounds.alpha): its bounds,
    optimised from there as branch and bound does, must still hold for
    onnxruntime's float32 outputs at every point of the child."""
    rng = np.random.default_rng(10 + seed)
    model = build(rng)
    graph = load_model(model)
    smooth = [k for k, n in enumerate(graph.nodes) if isinstance(n, SMOOTH_SPLIT)]
    centre = rng.normal(size=graph.input_size)
    lo, hi = float32_hull(centre - 0.7, centre + 0.7)
    C = rng.normal(size=(4, graph.output_size))
    X = _points(rng, lo, hi)
    y32, pre = _float32_run(model, X)
    d = (y32 @ C.T).min(axis=0) - 0.05
    parent = compute_bounds(graph, Box(lo[None], hi[None]), method="alpha-crown", C=C, d=d,
                            upper=False, options=dataclasses.replace(CHILD,
                                                                     recompute_intermediate=False))
    children, cuts, result = _warm_children(graph, smooth, parent, 2, lo, hi, C, d, CHILD)
    n = len(children)
    values = y32 @ C.T - d
    floor = MARGIN_FLOOR + COMPARISON * (np.abs(y32).sum(axis=1, keepdims=True) + np.abs(d))
    z = {k: pre[index] for index, k in enumerate(smooth)}
    checked = 0
    for child, (dom, (k, j)) in enumerate(zip(children, cuts)):
        interval = dom.intermediate[k]
        inside = (interval.lower[0, j] <= z[k][:, j]) & (z[k][:, j] <= interval.upper[0, j])
        if not inside.any():
            continue
        assert np.all(result.lower[child] <= values[inside] + floor[inside]), (child, k, j)
        checked += 1
    assert checked >= n // 2


def test_sigmoid_and_tanh_neurons_get_split_scores():
    rng = np.random.default_rng(1)
    graph = load_model(mixed_net(rng))
    lo, hi = float32_hull(np.full(6, -1.0), np.full(6, 1.0))
    result = compute_bounds(graph, Box(lo[None], hi[None]), method="crown",
                            C=rng.normal(size=(3, 4)), upper=False)
    smooth = [k for k, n in enumerate(graph.nodes) if isinstance(n, SMOOTH_SPLIT)]
    assert sorted(result.split_scores) == smooth
    for k in smooth:
        scores = result.split_scores[k]
        assert scores.shape == (1, 3, graph.nodes[k].size)  # per row
        assert np.all(scores >= 0) and scores.max() > 0
