"""The ``complete`` column: the verifier's own falsify + branch-and-bound per image.

Each open image (not certified by a bound method, not broken by PGD) becomes
the L-infinity robustness property :func:`verifier.spec.generate.robustness_property`
and goes through :func:`verifier.verify.verify` with a per-image time budget:
``unsat`` is certified, ``sat`` (a counterexample replayed through
onnxruntime) is broken, anything else is undecided. L2 balls are not boxes,
so the column exists for ``linf`` only.
"""
from __future__ import annotations

import time

import numpy as np

from verifier.report.problem import Images
from verifier.spec.generate import robustness_property

CERTIFIED, BROKEN, UNDECIDED = "certified", "broken", "undecided"


def complete_one(model, x: np.ndarray, label: int, eps: float, n_outputs: int, clip,
                 timeout: float, seed: int = 0) -> tuple[str, float]:
    """(certified | broken | undecided, seconds) for one image."""
    from verifier.result import Verdict
    from verifier.verify import Options, verify

    start = time.perf_counter()
    prop = robustness_property(x, label, eps, n_outputs, clip)
    result = verify(model, prop, Options(timeout=timeout, seed=seed))
    status = {Verdict.UNSAT: CERTIFIED, Verdict.SAT: BROKEN}.get(result.verdict, UNDECIDED)
    return status, time.perf_counter() - start


def complete_many(model, images: Images, eps: float, n_outputs: int, clip, timeout: float,
                  seed: int = 0, on_done=None) -> tuple[list[str], list[float]]:
    """:func:`complete_one` on every image; ``on_done(status)`` after each."""
    statuses, seconds = [], []
    for x, label in zip(images.x, images.y):
        status, spent = complete_one(model, x, int(label), eps, n_outputs, clip, timeout, seed)
        statuses.append(status)
        seconds.append(spent)
        if on_done is not None:
            on_done(status)
    return statuses, seconds
