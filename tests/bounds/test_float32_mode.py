"""Bounds of the float32 network itself (``BoundOptions(float32=True)``), as
ReLU splitting uses them: IBP widened by each node's own rounding, every
backward pass paying ``sum_k |A_k|·own_k``, splits about the *float32*
pre-activations. They must hold for onnxruntime's float32 values with no
tolerance beyond the comparison floor, in every sub-problem for the points
whose float32 pre-activations lie in it, and be about as tight as the
real-valued bounds."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from onnx import ModelProto, TensorProto, helper

from verifier.bounds import Box, compute_bounds
from verifier.bounds.margin import COMPARISON, MARGIN_FLOOR
from verifier.bounds.inputs import L2Ball
from verifier.bounds.result import BoundOptions
from verifier.bounds.roundoff import float32_hull
from verifier.errors import VerifierError
from verifier.frontend import load_model
from verifier.ir import ops
from verifier.runtime import open_session

from test_roundoff_direct import deep_net

FLOAT32 = BoundOptions(float32=True)


def _with_pre_activations(model):
    """The model with the input of every Relu also a graph output (in order)."""
    augmented = ModelProto()
    augmented.CopyFrom(model)
    for node in augmented.graph.node:
        if node.op_type == "Relu":
            augmented.graph.output.append(
                helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, None))
    return augmented


def _float32_values(model, X):
    """onnxruntime's float32 output and the float32 input of every Relu at X."""
    session = open_session(_with_pre_activations(model), device="cpu", batching="loop")
    values = session.run_all(np.asarray(X, dtype=np.float32))
    flat = [np.asarray(v, dtype=np.float64).reshape(len(X), -1) for v in values]
    return flat[0], flat[1:]


def _points(rng, lo, hi, n, count=600):
    X = np.vstack([rng.uniform(lo, hi, size=(count, n)),
                   np.where(rng.integers(0, 2, size=(64, n)) == 1, hi, lo)])
    return X.astype(np.float32).astype(np.float64)


FLOOR = lambda y: MARGIN_FLOOR + COMPARISON * np.abs(y).sum(axis=1, keepdims=True)  # noqa


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("seed", range(3))
def test_float32_bounds_hold_for_onnxruntime_values(activation, seed):
    rng = np.random.default_rng(seed)
    model = deep_net(rng, activation, 5 + 2 * seed, width=24)
    graph = load_model(model)
    centre = rng.normal(size=graph.input_size) * 2
    lo, hi = float32_hull(centre - 0.05, centre + 0.05)
    X = _points(rng, lo, hi, graph.input_size)
    y32, _ = _float32_values(model, X)
    for method in ("ibp", "crown", "alpha-crown"):
        result = compute_bounds(graph, Box(lo[None], hi[None]), method=method, options=FLOAT32)
        floor = FLOOR(y32)
        assert np.all(result.lower <= y32 + floor), method
        assert np.all(result.upper >= y32 - floor), method
        real = compute_bounds(graph, Box(lo[None], hi[None]), method=method)
        width = real.upper - real.lower
        # the rounding costs a small fraction of the real bounds' width
        assert np.all(result.lower >= real.lower - 1e-3 * (1 + width)), method


#: how ReLU splitting bounds its children (verifier.search.bab): the parent's
#: intermediate bounds passed in, recomputed by CROWN under the splits
CHILD = BoundOptions(float32=True, alpha_iterations=10, recompute_intermediate=True,
                     alpha_intermediate=False)


@pytest.mark.parametrize("child", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_every_float32_point_lies_in_a_sub_problem_whose_bound_holds(seed, child):
    """Split 3 unstable ReLUs into all 8 sign patterns of their float32
    pre-activations: each sampled point lies in the sub-problems its float32
    values select (both sides where a value is exactly 0), and every bound of
    such a sub-problem holds there (an 'empty' one would be a bug). ``child``:
    bounded as ReLU splitting bounds a child (the root's intermediate bounds
    passed in and recomputed by CROWN under the splits); its recomputed
    pre-activation bounds also hold at the points of each sub-problem."""
    rng = np.random.default_rng(seed)
    model = deep_net(rng, "Relu", 4 + seed, width=16, n_in=6)
    graph = load_model(model)
    centre = rng.normal(size=graph.input_size)
    lo, hi = float32_hull(centre - 0.4, centre + 0.4)
    box = Box(lo[None], hi[None])
    root = compute_bounds(graph, box, method="crown", upper=False, options=FLOAT32)
    relus = [k for k, n in enumerate(graph.nodes) if isinstance(n, ops.Relu)]
    unstable = [(index, j) for index, k in enumerate(relus)
                for j in np.flatnonzero((root.pre_activation[k].lower[0] < 0)
                                        & (root.pre_activation[k].upper[0] > 0))]
    picks = [unstable[i] for i in rng.permutation(len(unstable))[:3]]
    patterns = np.array(list(itertools.product((-1, 1), repeat=len(picks))))
    splits = {k: np.zeros((len(patterns), graph.nodes[graph.nodes[k].inputs[0]].size),
                          np.int8) for k in relus}
    for column, (index, j) in enumerate(picks):
        splits[relus[index]][:, j] = patterns[:, column]
    X = _points(rng, lo, hi, graph.input_size)
    y32, pre = _float32_values(model, X)
    C = rng.normal(size=(5, graph.output_size))
    d = (y32 @ C.T).min(axis=0) - 0.05
    batch = Box(np.repeat(lo[None], len(patterns), 0), np.repeat(hi[None], len(patterns), 0))
    given = {k: v for k, v in root.pre_activation.items()} if child else None
    result = compute_bounds(graph, batch, method="alpha-crown", C=C, d=d, upper=False,
                            splits=splits, intermediate=given,
                            options=CHILD if child else FLOAT32)
    values = y32 @ C.T - d
    floor = FLOOR(y32)
    member = np.ones((len(X), len(patterns)), dtype=bool)
    for column, (index, j) in enumerate(picks):
        z = pre[index][:, j]
        member &= patterns[None, :, column] * z[:, None] >= 0
    assert member.any(axis=1).all()
    checked = 0
    for leaf in range(len(patterns)):
        inside = member[:, leaf]
        if inside.any():
            assert np.all(result.lower[leaf] <= values[inside] + floor[inside]), leaf
            for index, k in enumerate(relus):
                interval = result.pre_activation[k]
                z = pre[index][inside]
                assert np.all(interval.lower[leaf] <= z) and np.all(z <= interval.upper[leaf])
            checked += 1
    assert checked >= 2
    # the splits pay: some sub-problem's bound is above the unsplit root's
    unsplit = compute_bounds(graph, box, method="alpha-crown", C=C, d=d, upper=False,
                             intermediate=given, options=CHILD if child else FLOAT32)
    assert np.any(result.lower.min(axis=0) >= unsplit.lower[0] - 1e-9)


def test_float32_bounds_refuse_what_they_do_not_cover():
    rng = np.random.default_rng(0)
    graph = load_model(deep_net(rng, "Relu", 2))
    ball = L2Ball(np.zeros((1, graph.input_size)), np.full(1, 0.1))
    with pytest.raises(VerifierError, match="float32 bounds"):
        compute_bounds(graph, ball, method="crown", options=FLOAT32)


@pytest.mark.parametrize("seed", range(3))
def test_children_keep_the_layers_their_newest_split_cannot_change(seed, monkeypatch):
    """ReLU splitting bounds a batch of children in groups of the same newest
    split node, reusing the parent's input bounds of every nonlinearity
    upstream of that node (``BoundOptions.keep_intermediate``). The reuse is
    lossless (the same intermediate bounds as recomputing every layer), the
    layers after the split are recomputed (some tighter than the parent's),
    and every bound holds at the onnxruntime float32 points of each child."""
    from verifier.search import bab
    from verifier.search.rows import CaseRows

    monkeypatch.setattr(bab, "MIN_GROUP", 1)  # one group per newest split node
    rng = np.random.default_rng(50 + seed)
    model = deep_net(rng, "Relu", 5, width=16, n_in=6)
    graph = load_model(model)
    centre = rng.normal(size=graph.input_size)
    lo, hi = float32_hull(centre - 0.4, centre + 0.4)
    C = rng.normal(size=(4, graph.output_size))
    X = _points(rng, lo, hi, graph.input_size)
    y32, pre = _float32_values(model, X)
    d = (y32 @ C.T).min(axis=0) - 0.05
    rows = CaseRows(C, d, np.zeros(len(d), np.intp), 1, np.zeros(1, np.intp))
    root = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", C=C, d=d,
                          upper=False, options=FLOAT32)
    relus = [k for k, n in enumerate(graph.nodes) if isinstance(n, ops.Relu)]
    parent = bab._Domain({k: np.zeros(graph.nodes[graph.nodes[k].inputs[0]].size, np.int8)
                          for k in relus}, dict(root.pre_activation), None,
                         float(root.lower.min()), None, np.arange(len(d)), root.lower[0])
    children = []
    for index in (0, 2, len(relus) - 1):  # neurons the samples see on both sides
        z = pre[index]
        both = np.flatnonzero((z.min(axis=0) < 0) & (z.max(axis=0) > 0))
        assert both.size, "the test net needs a ReLU of each chosen layer unstable"
        children += bab._children(graph, parent, relus[index], int(both[0]))
    children.sort(key=lambda c: c.newest)
    assert len(bab._groups(children)) == 3
    grouped, _ = bab._bound_batch(graph, children, relus, rows, (lo, hi), CHILD, None)
    every = dataclasses.replace(CHILD, keep_intermediate=frozenset())
    monkeypatch.setattr(bab, "_unchanged", lambda graph, domains: frozenset())
    full, _ = bab._bound_batch(graph, children, relus, rows, (lo, hi), every, None)
    tighter = 0
    for index, k in enumerate(relus):
        mine, all_of = grouped.pre_activation[k], full.pre_activation[k]
        np.testing.assert_allclose(mine.lower, all_of.lower, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(mine.upper, all_of.upper, rtol=1e-9, atol=1e-9)
        tighter += np.sum(mine.upper < root.pre_activation[k].upper - 1e-9)
    assert tighter, "no child tightened a layer after its split"
    values = y32 @ C.T - d
    floor = FLOOR(y32)
    for leaf, child in enumerate(children):
        k = child.newest
        j = int(np.flatnonzero(child.splits[k])[0])
        z = pre[relus.index(k)][:, j]
        inside = child.splits[k][j] * z >= 0
        assert inside.any()
        assert np.all(grouped.lower[leaf] <= values[inside] + floor[inside])
        for index, node in enumerate(relus):
            interval = grouped.pre_activation[node]
            z = pre[index][inside]
            assert np.all(interval.lower[leaf] <= z) and np.all(z <= interval.upper[leaf])
