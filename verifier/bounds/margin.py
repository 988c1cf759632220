"""The decision margin: the one place where a bound is compared with 0 to decide.

A row ``c·y - d <= 0`` of a property's unsafe set is *refuted* when a sound
lower bound of ``c·y - d`` exceeds :data:`DECISION_MARGIN`; an unsafe polytope
(a conjunction of rows) is refuted when one of its rows is.

Why a margin, and why this value:

* The bounds are computed in float64. Their own rounding error is of the
  order of 1e-12 relative on the networks we meet (dot products of a few
  thousand terms), far below the margin.
* The network the user cares about runs in float32 in onnxruntime, which
  differs from the float64 semantics by up to ~1e-6 relative on the outputs
  of the benchmark networks. A float64 proof that holds by 1e-9 says nothing
  about the float32 network; one that holds by more than the margin is
  robust to that difference on outputs of magnitude ~1.
* The margin is absolute, in the units of ``c·y - d`` (logit differences for
  classifiers). Callers with outputs of very large magnitude can pass their
  own margin to :func:`refuted`.

Every decision taken from bounds (the ``bounds`` command, the benchmark
script, the branch and bound driver) must go through :func:`refuted`.

The engines take one more decision themselves: a sub-problem is *empty* (its
split constraints contradict the bounds) only when some lower bound exceeds
its upper bound by more than :data:`EMPTY_TOLERANCE` (relative). Bounds of
the same quantity computed two ways (e.g. a constant entry bounded by IBP and
by a parent's CROWN pass) may cross by a few ulps; that is rounding, not a
contradiction.
"""
from __future__ import annotations

import numpy as np

#: A lower bound of ``c·y - d`` above this value refutes the row ``c·y <= d``.
DECISION_MARGIN = 1e-6


#: Relative slack before crossing bounds declare a sub-problem empty.
EMPTY_TOLERANCE = 1e-9


def empty(lower, upper, tolerance: float = EMPTY_TOLERANCE) -> np.ndarray:
    """Where ``lower > upper`` beyond rounding: the constrained set is empty."""
    lower, upper = np.asarray(lower), np.asarray(upper)
    return lower > upper + tolerance * (1.0 + np.abs(lower) + np.abs(upper))


def refuted(lower, margin: float = DECISION_MARGIN) -> np.ndarray:
    """Where the lower bounds ``lower`` of ``c·y - d`` refute ``c·y <= d``."""
    return np.asarray(lower, dtype=np.float64) > margin
