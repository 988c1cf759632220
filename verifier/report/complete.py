"""The ``complete`` column: the verifier's own falsify + branch-and-bound per image.

Each open image (not certified by a bound method, not broken by PGD) becomes
the L-infinity robustness property :func:`verifier.spec.generate.robustness_property`
and goes through :func:`verifier.verify.verify` (falsification, then branch
and bound, or for small ReLU MLPs the exact MILP of
:mod:`verifier.search.milp`) with a per-image time budget:
``unsat`` is certified, ``sat`` (a counterexample replayed through
onnxruntime) is broken, anything else is undecided. L2 balls are not boxes,
so the column exists for ``linf`` only.

When the report's PGD (10 restarts of 50 steps) has already failed on the
image (``attacked``), the verifier's own falsification is cut to
:data:`ATTACKED_RESTARTS` PGD restarts, so that the budget goes to the proof
(on the digits MLP it took 0.63 s of each image otherwise); a counterexample
can still come from the proof (branch and bound, or the MILP of small ReLU
MLPs, :mod:`verifier.search.milp`).
"""
from __future__ import annotations

import time

import numpy as np

from verifier.report.problem import Images
from verifier.spec.generate import robustness_property

CERTIFIED, BROKEN, UNDECIDED = "certified", "broken", "undecided"
#: PGD restarts of the verifier's falsification on an image the report's PGD already failed on
ATTACKED_RESTARTS = 8


def complete_one(model, x: np.ndarray, label: int, eps: float, n_outputs: int, clip,
                 timeout: float, seed: int = 0, attacked: bool = False) -> tuple[str, float]:
    """(certified | broken | undecided, seconds) for one image; ``attacked``: the
    report's PGD already failed on it."""
    from verifier.result import Verdict
    from verifier.verify import Options, verify

    start = time.perf_counter()
    prop = robustness_property(x, label, eps, n_outputs, clip)
    options = Options(timeout=timeout, seed=seed,
                      pgd_restarts=ATTACKED_RESTARTS if attacked else 0)
    result = verify(model, prop, options)
    status = {Verdict.UNSAT: CERTIFIED, Verdict.SAT: BROKEN}.get(result.verdict, UNDECIDED)
    return status, time.perf_counter() - start


def complete_many(model, images: Images, eps: float, n_outputs: int, clip, timeout: float,
                  seed: int = 0, on_done=None, attacked: bool = False
                  ) -> tuple[list[str], list[float]]:
    """:func:`complete_one` on every image; ``on_done(status)`` after each."""
    statuses, seconds = [], []
    for x, label in zip(images.x, images.y):
        status, spent = complete_one(model, x, int(label), eps, n_outputs, clip, timeout, seed,
                                     attacked)
        statuses.append(status)
        seconds.append(spent)
        if on_done is not None:
            on_done(status)
    return statuses, seconds
