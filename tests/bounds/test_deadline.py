"""Deadlines inside the bound engine: past ``deadline`` compute_bounds stops
tightening and returns sound bounds (audit 7a3fb1e, B2.3)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.builders import chain_model
from verifier.bounds import BoundOptions, Box, compute_bounds
from verifier.frontend import load_model
from verifier.ir import evaluate


def slow_mlp(inputs=20, width=200, depth=4, outputs=10, seed=0):
    """A ReLU MLP whose alpha-CROWN pass (with optimised intermediate bounds)
    takes seconds (4.5 s measured on a loaded 2-core machine) while CROWN
    takes ~0.15 s."""
    rng = np.random.default_rng(seed)
    layers, previous = [], inputs
    for _ in range(depth):
        weight = rng.normal(size=(width, previous)) / np.sqrt(previous)
        layers += [("Gemm", [weight.astype(np.float32),
                             (0.1 * rng.normal(size=width)).astype(np.float32)], {"transB": 1}),
                   ("Relu", [], {})]
        previous = width
    weight = rng.normal(size=(outputs, previous)) / np.sqrt(previous)
    layers.append(("Gemm", [weight.astype(np.float32), np.zeros(outputs, np.float32)],
                   {"transB": 1}))
    return chain_model(layers, (1, inputs))


@pytest.fixture(scope="module")
def problem():
    graph = load_model(slow_mlp())
    box = Box(np.full((1, 20), -0.5), np.full((1, 20), 0.5))
    C = np.zeros((9, 10))
    C[:, 0] = 1.0
    C[np.arange(9), np.arange(1, 10)] = -1.0
    return graph, box, C


def assert_sound(graph, box, C, result):
    x = np.random.default_rng(2).uniform(box.lower, box.upper, size=(3000, 20))
    y = evaluate(graph, x.reshape(-1, 1, 20)).reshape(-1, 10)
    values = y @ C.T
    assert (values >= result.lower - 1e-7).all()
    if result.upper is not None:
        assert (values <= result.upper + 1e-7).all()


def test_alpha_crown_stops_at_its_deadline_with_sound_bounds(problem):
    graph, box, C = problem
    crown = compute_bounds(graph, box, method="crown", C=C, upper=False)
    start = time.monotonic()
    result = compute_bounds(graph, box, method="alpha-crown", C=C, upper=False,
                            deadline=start + 0.3)
    elapsed = time.monotonic() - start
    assert result.cut_short
    assert elapsed < 0.3 + 1.2, elapsed  # without the deadline: seconds
    assert_sound(graph, box, C, result)
    assert (result.lower >= crown.lower - 1e-9).all()  # never looser than CROWN


@pytest.mark.parametrize("method", ["crown", "alpha-crown"])
def test_a_passed_deadline_still_gives_sound_bounds(problem, method):
    graph, box, C = problem
    result = compute_bounds(graph, box, method=method, C=C, upper=True,
                            options=BoundOptions(deadline=time.monotonic() - 1.0))
    assert result.cut_short
    assert np.isfinite(result.lower).all() and np.isfinite(result.upper).all()
    assert_sound(graph, box, C, result)
    ibp = compute_bounds(graph, box, method="ibp", C=C, upper=True)
    assert (result.lower >= ibp.lower - 1e-9).all() and (result.upper <= ibp.upper + 1e-9).all()


def test_alpha_iterations_stop_at_the_deadline_and_keep_the_best(monkeypatch):
    """The deadline passes during the final alpha-CROWN loop: the result is
    the best iterate so far, never below CROWN's."""
    import verifier.bounds.engine as engine

    graph = load_model(slow_mlp(inputs=6, width=24, depth=3))
    box = Box(np.full((1, 6), -1.0), np.full((1, 6), 1.0))
    C = np.eye(10)[:3] - np.eye(10)[3:6]
    crown = compute_bounds(graph, box, method="crown", C=C, upper=False)
    checks = {"n": 0}
    real = engine.Run.past_deadline

    def after_three(self):
        checks["n"] += 1
        if checks["n"] > 3:
            self.cut_short = True
            return True
        return real(self)

    monkeypatch.setattr(engine.Run, "past_deadline", after_three)
    result = compute_bounds(graph, box, method="alpha-crown", C=C, upper=False,
                            options=BoundOptions(alpha_intermediate=False, early_stop=False))
    assert result.cut_short
    assert (result.lower >= crown.lower - 1e-12).all()
    x = np.random.default_rng(3).uniform(-1, 1, size=(2000, 6))
    values = evaluate(graph, x.reshape(-1, 1, 6)).reshape(-1, 10) @ C.T
    assert (values >= result.lower - 1e-7).all()


def test_no_deadline_is_not_cut_short():
    graph = load_model(slow_mlp(inputs=6, width=16, depth=2))
    box = Box(np.full((1, 6), -1.0), np.full((1, 6), 1.0))
    result = compute_bounds(graph, box, method="alpha-crown",
                            deadline=time.monotonic() + 600)
    assert not result.cut_short
