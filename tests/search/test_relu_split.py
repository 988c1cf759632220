"""ReLU splitting: progress reporting and LP-refined root bounds.

These small MLPs would be decided by the MILP (verifier.search.milp) before any
split; it is turned off here so that the splitting itself runs."""
from __future__ import annotations

import numpy as np
import pytest

from tests.builders import relu_mlp_model, save
from verifier.result import Verdict
from verifier.search import bab, milp, progress
from verifier.verify import Options, verify


@pytest.fixture(autouse=True)
def no_milp(monkeypatch):
    monkeypatch.setattr(milp, "MAX_BINARIES", -1)


def random_mlp(tmp_path, seed, n_in=20, hidden=24):
    """A 2-hidden-layer ReLU net with one output, weights drawn from ``seed``."""
    return save(relu_mlp_model(seed, n_in, hidden, 1, bias=0.5, divisor=4.0),
                tmp_path / f"mlp{seed}.onnx")


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
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)
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
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.0)
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


def test_scatter_rows_keeps_the_parent_bound_and_marks_unbounded_rows_refuted():
    lower = np.array([[-1.0, 2.0], [0.5, 0.5]])
    index = np.array([[0, 2], [1, 1]])  # the second child bounded row 1 twice (padding)
    parent = np.array([[-3.0, np.inf, 3.0], [-2.0, -1.0, np.inf]])
    full = bab._scatter_rows(lower, index, 3, parent)
    assert full.tolist() == [[-1.0, np.inf, 3.0], [np.inf, 0.5, np.inf]]


def multi_output_mlp(tmp_path, seed, n_in=6, hidden=16):
    return save(relu_mlp_model(seed, n_in, hidden, 3, bias=0.5, divisor=3.0),
                tmp_path / f"multi{seed}.onnx")


@pytest.mark.parametrize("candidates", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 3])  # seeds where ReLU splitting proves a case
def test_relu_splitting_over_several_polytopes_agrees_with_sampled_outputs(
        tmp_path, monkeypatch, seed, candidates):
    """Children bound only the rows of the polytopes their parent left open, and
    keep the parent's row bounds where tighter: every unsat answer is checked
    against onnxruntime's float32 outputs on dense samples and box corners
    (branching by the split score alone, and by filtered smart branching)."""
    monkeypatch.setattr(bab, "FSB_CANDIDATES", candidates)
    import onnx

    from tests.builders import run_onnxruntime

    n_in = 6
    net = multi_output_mlp(tmp_path, seed, n_in)
    rng = np.random.default_rng(100 + seed)
    x = rng.uniform(-1, 1, size=(5000, n_in)).astype(np.float32)
    corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * n_in)).reshape(n_in, -1).T
    x = np.vstack([x, corners.astype(np.float32)])
    y = run_onnxruntime(onnx.load(net), x[:, None]).reshape(len(x), -1)
    splits = 0
    span = y.max(axis=0) - y.min(axis=0)
    for q in (0.0, 0.05, 0.15, 0.3):  # thresholds at and above the sampled maxima
        t1, t2 = (float(y[:, j].max() + q * span[j]) for j in (1, 2))
        t0 = float(np.median(y[:, 0]))
        text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
        text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
        text += "".join(f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n"
                        for i in range(n_in))
        text += (f"(assert (or (and (>= Y_1 {t1!r})) "
                 f"(and (>= Y_2 {t2!r}) (<= Y_0 {t0!r}))))\n")
        prop = tmp_path / f"p{q}.vnnlib"
        prop.write_text(text)
        result = verify(net, prop, Options(timeout=4, input_split_max_dim=0))
        if result.verdict is Verdict.UNSAT:
            hit = (y[:, 1] >= t1) | ((y[:, 2] >= t2) & (y[:, 0] <= t0))
            assert not hit.any(), f"unsat, but onnxruntime reaches the unsafe set (q={q})"
            splits += result.stats.get("domains", 0) > 1
    assert splits, "no case was proved by ReLU splitting"


def test_relu_splitting_replays_the_minimisers_of_its_bounds(tmp_path):
    """With (almost) no falsification, a reachable threshold is found sat by
    ReLU splitting itself, from the inputs minimising the sub-problems' CROWN
    bounds; the counterexample is onnxruntime-replayed as every sat is."""
    import onnx

    from tests.builders import run_onnxruntime

    n_in = 6
    net = multi_output_mlp(tmp_path, 2, n_in)
    text = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in))
    text += "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
    text += "".join(f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n" for i in range(n_in))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2000, 1, n_in)).astype(np.float32)
    y = run_onnxruntime(onnx.load(net), x).reshape(len(x), -1)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(text + f"(assert (>= Y_1 {float(y[:, 1].max())!r}))\n")
    result = verify(net, prop, Options(timeout=5, samples=1, pgd_steps=0, pgd_restarts=1,
                                       input_split_max_dim=0))
    assert result.verdict is Verdict.SAT
    assert "ReLU splitting" in result.reason


def test_branching_weighs_rows_by_how_far_their_polytope_is_from_refuted(monkeypatch):
    """The neuron is chosen by the split scores of the rows weighted by
    ``(bound_p / bound_worst) ** FOCUS_POWER`` of their polytope (its best row):
    the worst open polytope counts most; with power 0 every row the same."""
    from verifier.search.rows import CaseRows

    rows = CaseRows(np.zeros((5, 2)), np.zeros(5), np.array([0, 0, 1, 2, 2]), 3,
                    np.array([0, 2, 3]))
    lower = np.array([-3.0, -0.5, -1.0, -2.0, 0.1])  # polytope bests: -0.5, -1.0, 0.1
    scores = {7: np.array([[0.0, 5.0], [0.0, 5.0], [2.0, 0.0], [0.0, 5.0], [0.0, 5.0]])}
    interval = bab.Interval(np.full((1, 2), -1.0), np.ones((1, 2)))
    dom = bab._Domain({7: np.zeros(2, np.int8)}, {7: interval}, None, -1.0, scores,
                      np.arange(5), lower)
    monkeypatch.setattr(bab, "FOCUS_POWER", 4.0)
    focus = bab._focus(dom, rows)
    np.testing.assert_allclose(focus, [0.5 ** 4, 0.5 ** 4, 1.0, 0.0, 0.0])
    assert bab._candidates(dom, [7], [], 1, focus) == [(7, 0)]  # 2 against 0.625
    assert bab._candidates(dom, [7], [], 1) == [(7, 1)]  # all rows alike: the other neuron
    monkeypatch.setattr(bab, "FOCUS_POWER", 0.0)
    np.testing.assert_allclose(bab._focus(dom, rows), np.ones(5))
