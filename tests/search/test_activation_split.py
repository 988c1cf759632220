"""Sigmoid/tanh splitting in branch and bound (verifier.search.bab): on small
MLPs it proves thresholds that alpha-CROWN at the root leaves open (the
children's soundness is tested against onnxruntime in
tests/bounds/test_activation_split.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.builders import relu_mlp_model, run_onnxruntime, save
from tests.search.test_relu_split import box_property
from verifier.bounds import Box, compute_bounds
from verifier.bounds.result import BoundOptions
from verifier.bounds.roundoff import float32_hull
from verifier.frontend import load_model
from verifier.result import Verdict
from verifier.search import bab
from verifier.verify import Options, verify

N_IN = 20


def _case(tmp_path, activation, seed, share):
    """The MLP, a property ``y >= t`` with ``t`` at ``share`` of the way from
    the largest sampled output to alpha-CROWN's upper bound, and that bound."""
    model = relu_mlp_model(seed, N_IN, 16, 1, bias=0.5, divisor=2.0, activation=activation)
    net = save(model, tmp_path / f"{activation}{seed}.onnx")
    graph = load_model(model)
    lo, hi = float32_hull(np.full(N_IN, -1.0), np.full(N_IN, 1.0))
    upper = compute_bounds(graph, Box(lo[None], hi[None]), method="alpha-crown",
                           options=BoundOptions(float32=True)).upper[0, 0]
    X = np.random.default_rng(seed).uniform(-1, 1, size=(4000, 1, N_IN))
    sampled = run_onnxruntime(model, X).max()
    threshold = float(sampled + share * (upper - sampled))
    return net, box_property(tmp_path, N_IN, threshold), sampled, threshold


@pytest.mark.parametrize("activation,seed", [("Sigmoid", 0), ("Sigmoid", 2), ("Tanh", 3)])
def test_activation_splitting_proves_what_alpha_crown_leaves_open(tmp_path, monkeypatch,
                                                                  activation, seed):
    monkeypatch.setattr(bab, "ROOT_SHARE", 0.0)  # no longer root pass: splitting decides
    net, prop, sampled, threshold = _case(tmp_path, activation, seed, 0.85)
    assert threshold > sampled
    result = verify(net, prop, Options(timeout=30))
    assert result.stats["strategy"] == "activation-split"
    assert result.verdict is Verdict.UNSAT, result.reason
    assert "activation splitting" in result.reason and result.stats["domains"] > 1


def test_sigmoid_networks_get_a_longer_root_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(bab, "ROOT_SHARE", 0.5)
    net, prop, _, _ = _case(tmp_path, "Sigmoid", 0, 0.85)
    result = verify(net, prop, Options(timeout=30))
    assert result.verdict is Verdict.UNSAT, result.reason
    assert result.stats["root_iterations"] > 20
