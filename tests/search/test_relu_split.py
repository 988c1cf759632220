"""ReLU splitting: progress reporting and LP-refined root bounds.

These small MLPs would be decided by the MILP (verifier.search.milp) before any
split; it is turned off here so that the splitting itself runs."""
from __future__ import annotations

import numpy as np
import pytest

from tests.builders import chain_model, save
from verifier.result import Verdict
from verifier.search import bab, milp
from verifier.verify import Options, verify


@pytest.fixture(autouse=True)
def no_milp(monkeypatch):
    monkeypatch.setattr(milp, "MAX_BINARIES", -1)


def random_mlp(tmp_path, seed, n_in=20, hidden=24):
    """A 2-hidden-layer ReLU net with one output, weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(hidden, n_in)).astype(np.float32)
    b1 = (0.5 * rng.normal(size=hidden)).astype(np.float32)
    W2 = (rng.normal(size=(hidden, hidden)) / 4).astype(np.float32)
    b2 = (0.5 * rng.normal(size=hidden)).astype(np.float32)
    W3 = (rng.normal(size=(1, hidden)) / 4).astype(np.float32)
    layers = [("Gemm", [W1, b1], {"transB": 1}), ("Relu", [], {}),
              ("Gemm", [W2, b2], {"transB": 1}), ("Relu", [], {}),
              ("Gemm", [W3, np.zeros(1, np.float32)], {"transB": 1})]
    return save(chain_model(layers, (1, n_in)), tmp_path / f"mlp{seed}.onnx")


def box_property(tmp_path, n_in, threshold):
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    text += "(declare-const Y_0 Real)\n"
    for i in range(n_in):
        text += f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n"
    text += f"(assert (>= Y_0 {threshold!r}))\n"
    path = tmp_path / "p.vnnlib"
    path.write_text(text)
    return path


def test_verbose_relu_splitting_logs_progress(tmp_path, monkeypatch, capsys):
    # CROWN bounds y by ~49, PGD finds no y >= 30: ReLU splitting runs
    net = random_mlp(tmp_path, 0)
    prop = box_property(tmp_path, 20, 30.0)
    monkeypatch.setattr(bab, "PROGRESS_SECONDS", 0.0)
    result = verify(net, prop, Options(timeout=4, verbose=True))
    assert result.verdict is not Verdict.SAT
    assert result.stats["strategy"] == "relu-split"
    lines = [line for line in capsys.readouterr().err.splitlines()
             if "ReLU splitting:" in line]
    assert lines, "no progress line"
    assert all("open sub-problems" in line and "global lower bound" in line
               and "sub-problems/s" in line for line in lines)


def test_quiet_relu_splitting_logs_nothing(tmp_path, monkeypatch, capsys):
    net = random_mlp(tmp_path, 0)
    prop = box_property(tmp_path, 20, 30.0)
    monkeypatch.setattr(bab, "PROGRESS_SECONDS", 0.0)
    verify(net, prop, Options(timeout=2))
    assert "ReLU splitting:" not in capsys.readouterr().err


def test_lp_refinement_runs_at_the_root_of_relu_splitting(tmp_path, monkeypatch):
    net = random_mlp(tmp_path, 0)
    prop = box_property(tmp_path, 20, 30.0)
    monkeypatch.setattr(bab, "LP_SHARE", 0.5)
    result = verify(net, prop, Options(timeout=6))
    assert result.verdict is not Verdict.SAT
    stats = result.stats["lp_refine"]
    assert stats["lps"] > 0 and stats["root_after"] >= stats["root_before"]


def test_no_lp_refinement_when_turned_off(tmp_path, monkeypatch):
    net = random_mlp(tmp_path, 0)
    prop = box_property(tmp_path, 20, 30.0)
    monkeypatch.setattr(bab, "LP_SHARE", 0.0)
    result = verify(net, prop, Options(timeout=3))
    assert "lp_refine" not in result.stats
