"""LP-refined intermediate bounds: sound on sampled points, never looser than CROWN."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.builders import chain_model, save
from verifier.bounds.engine import compute_bounds
from verifier.bounds.inputs import Box
from verifier.bounds.lp_refine import _dual_bound, mlp_layers, refine
from verifier.frontend import load_model
from verifier.ir import evaluate


def mlp(tmp_path, seed, sizes=(6, 16, 16, 16, 3)):
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n, m) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = (rng.normal(size=(m, n)) / np.sqrt(n)).astype(np.float32)
        b = (0.3 * rng.normal(size=m)).astype(np.float32)
        layers.append(("Gemm", [W, b], {"transB": 1}))
        if k < len(sizes) - 2:
            layers.append(("Relu", [], {}))
    return load_model(save(chain_model(layers, (1, sizes[0])), tmp_path / f"m{seed}.onnx"))


@pytest.mark.parametrize("seed,binary", [(0, 0), (1, 0), (2, 0), (3, 0), (0, 4), (1, 16),
                                         (2, 16), (3, 4)])
def test_refined_bounds_contain_sampled_pre_activations_and_are_tighter(tmp_path, seed,
                                                                        binary):
    graph = mlp(tmp_path, seed)
    rng = np.random.default_rng(100 + seed)
    center = rng.uniform(-1, 1, 6)
    lo, hi = center - 0.5, center + 0.5
    crown = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", upper=False)
    table, stats = refine(graph, lo, hi, crown.pre_activation, binary=binary)
    assert stats["lps"] > 0
    _, relus = mlp_layers(graph)
    x = rng.uniform(lo, hi, size=(20000, 6))
    x = np.vstack([x, lo + (hi - lo) * rng.integers(0, 2, size=(256, 6))])  # corners
    values = evaluate(graph, x.reshape(-1, 1, 6), all_values=True)
    gained = 0.0
    for k in relus:
        z = values[graph.nodes[k].inputs[0]].reshape(len(x), -1)
        new, old = table[k], crown.pre_activation[k]
        assert (z >= new.lower - 1e-9).all() and (z <= new.upper + 1e-9).all()
        assert (new.lower >= old.lower).all() and (new.upper <= old.upper).all()
        gained += float((old.upper - old.lower).sum() - (new.upper - new.lower).sum())
    assert gained > 0  # the LP is tighter than CROWN somewhere on these nets


def test_the_dual_bound_is_valid_for_any_multipliers():
    # min v0 + v1 s.t. -v0 - v1 <= -1 on [0, 2]^2 has value 1; every lam >= 0
    # (and negative ones, clipped) gives a bound <= 1, lam = 1 gives 1
    A = sp.csr_matrix(np.array([[-1.0, -1.0]]))
    c, g = np.array([-1.0]), np.array([1.0, 1.0])
    lb, ub = np.zeros(2), np.full(2, 2.0)
    for lam in (-3.0, 0.0, 0.5, 1.0, 2.0, 10.0):
        assert _dual_bound(g, A, c, lb, ub, np.array([lam])) <= 1.0
    assert _dual_bound(g, A, c, lb, ub, np.array([1.0])) == pytest.approx(1.0, abs=1e-12)


def test_only_plain_relu_chains_are_refined(tmp_path):
    layers = [("Gemm", [np.ones((2, 2), np.float32), np.zeros(2, np.float32)], {"transB": 1}),
              ("Sigmoid", [], {}),
              ("Gemm", [np.ones((1, 2), np.float32), np.zeros(1, np.float32)], {"transB": 1})]
    graph = load_model(save(chain_model(layers, (1, 2)), tmp_path / "s.onnx"))
    assert mlp_layers(graph) is None
    assert refine(graph, np.zeros(2), np.ones(2), {}) is None


def test_milp_bounds_are_at_least_as_tight_as_lp_bounds(tmp_path):
    graph = mlp(tmp_path, 5)
    lo, hi = np.full(6, -1.0), np.full(6, 1.0)
    crown = compute_bounds(graph, Box(lo[None], hi[None]), method="crown", upper=False)
    lp, _ = refine(graph, lo, hi, crown.pre_activation)
    exact, _ = refine(graph, lo, hi, crown.pre_activation, binary=16)
    _, relus = mlp_layers(graph)
    width = lambda t: sum(float((t[k].upper - t[k].lower).sum()) for k in relus)
    assert width(exact) < width(lp) - 1e-6
