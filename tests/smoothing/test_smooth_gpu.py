"""On a machine with a CUDA GPU: sessions and smoothing really run on it."""
from __future__ import annotations

import numpy as np
import pytest

from verifier import runtime

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    ok, why = runtime.cuda_status()
    if not ok:
        pytest.skip(f"no usable CUDA GPU: {why}")


def test_cuda_provider_is_used(build):
    session = runtime.open_session(build.mlp(), device="cuda")
    assert session.provider == "CUDAExecutionProvider" and session.device == "cuda"
    auto = runtime.open_session(build.mlp(), device="auto")
    assert auto.provider == "CUDAExecutionProvider"
    x = np.random.default_rng(0).random((9,) + build.SHAPE).astype(np.float32)
    cpu = runtime.open_session(build.mlp(), device="cpu")
    np.testing.assert_allclose(session.run(x), cpu.run(x), rtol=1e-4, atol=1e-5)


def test_smoothing_on_cuda_matches_cpu(build):
    from verifier.smoothing import SmoothedClassifier

    x = np.full(build.SHAPE, 0.2)
    gpu = SmoothedClassifier(build.mlp(), 0.5, device="cuda", seed=1)
    cpu = SmoothedClassifier(build.mlp(), 0.5, device="cpu", seed=1)
    assert gpu.provider == "CUDAExecutionProvider"
    a, b = gpu.certify(x, 50, 2000), cpu.certify(x, 50, 2000)
    assert a.prediction == b.prediction and abs(a.n_a - b.n_a) <= 5  # same draws, float rounding
