"""Answers: the verdict words, counterexamples, results and the one writer of
the VNN-COMP result format.

A ``sat`` result can only be built from a :class:`Counterexample`, and a
Counterexample only by :func:`replay_counterexample`, which runs the input
through onnxruntime (float32, the model's own input shape, C order) and checks
the property on the replayed outputs with no tolerance (the input itself only
needs to lie within float32 rounding of the region's box).
"""
from __future__ import annotations

import enum
import os
import secrets
import stat
from dataclasses import dataclass, field

import numpy as np


class Verdict(str, enum.Enum):
    """The answer words of the VNN-COMP result format, one per outcome.

    ``sat``: a counterexample exists (only with one onnxruntime replayed);
    ``unsat``: proved, the property holds; ``unknown``: the search ended
    without an answer; ``timeout``: the time ran out; ``error``: bad input or
    a failure. :attr:`exit_code` maps them to the CLI's exit codes (0 unsat,
    1 sat, 2 error, 3 unknown/timeout).
    """

    SAT = "sat"          # a counterexample exists (property violated)
    UNSAT = "unsat"      # proved: no input in the region reaches the unsafe set
    UNKNOWN = "unknown"  # the search ended without an answer
    TIMEOUT = "timeout"  # the time ran out
    ERROR = "error"      # bad input or an internal failure

    def __str__(self) -> str:
        return self.value

    @property
    def exit_code(self) -> int:
        return {Verdict.UNSAT: 0, Verdict.SAT: 1, Verdict.ERROR: 2}.get(self, 3)


class _ReplayToken:
    """Only :func:`replay_counterexample` holds this; it guards the constructor."""


_TOKEN = _ReplayToken()


@dataclass(frozen=True, eq=False)
class Counterexample:
    """An input (float32, flat C order) and the outputs onnxruntime gave for it."""

    x: np.ndarray
    y: np.ndarray
    case: int
    _token: object = field(default=None, repr=False)

    def __post_init__(self):
        if self._token is not _TOKEN:
            raise TypeError("a Counterexample is only built by replay_counterexample()")


def float32_inside(x, lower, upper) -> np.ndarray:
    """Round ``x`` to float32 values in ``[lower, upper]``, or, where no
    float32 lies there (a box pinning an input to 0.1), in its float32 hull.

    A float64 point inside the box can round to a float32 just outside it;
    such entries are moved one float32 step back inside when that step stays
    in the box. The result always passes :func:`float32_admissible`.
    """
    lower, upper = np.broadcast_arrays(np.asarray(lower, dtype=np.float64),
                                       np.asarray(upper, dtype=np.float64))
    x = np.clip(np.asarray(x, dtype=np.float64), lower, upper)
    x32 = np.atleast_1d(x.astype(np.float32))
    for outside, direction in ((x32.astype(np.float64) < lower, np.inf),
                               (x32.astype(np.float64) > upper, -np.inf)):
        step = np.nextafter(x32, np.float32(direction)).astype(np.float64)
        move = outside & (step >= lower) & (step <= upper)
        x32[move] = np.nextafter(x32[move], np.float32(direction))
    return x32


def float32_admissible(region, x) -> bool:
    """Whether the float32 input ``x`` may stand for a point of ``region``:
    every coordinate within the float32 rounding of the box (inside its
    float32 hull, :func:`verifier.bounds.roundoff.float32_hull`; a strict
    bound stays strict where it is a float32 itself) and the linear input
    constraints ``A x <= b`` exactly.

    The float32 network only ever sees float32 inputs: where a box pins an
    input to a value float32 cannot hold, the nearest float32 is the input.
    """
    from dataclasses import replace

    from verifier.bounds.roundoff import float32_hull

    lower, upper = float32_hull(region.lower, region.upper)
    hull = replace(region, lower=lower, upper=upper,
                   strict_lower=region.strict_lower & (lower == region.lower),
                   strict_upper=region.strict_upper & (upper == region.upper))
    return hull.contains(x)


def replay_counterexample(session, prop, x, case: int | None = None):
    """Run ``x`` through onnxruntime and return a Counterexample if it violates
    ``prop`` exactly: ``x`` admissible for the case's region
    (:func:`float32_admissible`) and the replayed outputs in an unsafe
    polytope with no tolerance. Else None.

    ``session`` is a :class:`verifier.runtime.Session` of the model; ``x`` is
    a flat input (rounded to float32 here).
    """
    x32 = np.asarray(x).astype(np.float32).reshape(-1)
    y = session.run(x32.reshape((1,) + tuple(session.input_shape))).reshape(-1)
    x64, y64 = x32.astype(np.float64), y.astype(np.float64)
    cases = range(len(prop.cases)) if case is None else [case]
    for k in cases:
        found = prop.cases[k]
        if float32_admissible(found.region, x64) and any(p.contains(y64) for p in found.unsafe):
            return Counterexample(x32.copy(), y.copy(), k, _TOKEN)
    return None


@dataclass
class Result:
    """The outcome of one verification run."""

    verdict: Verdict
    counterexample: Counterexample | None = None
    reason: str = ""
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.verdict is Verdict.SAT) != (self.counterexample is not None):
            raise ValueError("a sat result needs a replayed counterexample, and only sat has one")

    def to_dict(self) -> dict:
        data = {"result": self.verdict.value, "reason": self.reason,
                "seconds": round(self.seconds, 4), "stats": self.stats}
        if self.counterexample is not None:
            data["counterexample"] = {"x": [float(v) for v in self.counterexample.x],
                                      "y": [float(v) for v in self.counterexample.y],
                                      "case": self.counterexample.case}
        return data


def format_result(result: Result) -> str:
    """The VNN-COMP result text: the verdict line, then for ``sat`` the
    ``((X_0 v) ... (Y_m v))`` block with float32 values at full precision."""
    lines = [result.verdict.value]
    cex = result.counterexample
    if cex is not None:
        entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(cex.x)]
        entries += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(cex.y)]
        entries[0] = "(" + entries[0]
        entries[-1] = entries[-1] + ")"
        lines.extend(entries)
    return "\n".join(lines) + "\n"


def write_result_file(path, result: Result) -> None:
    """Write the result file atomically: a temporary file next to it, renamed
    into place, so a reader never sees half an answer.

    Permissions are those of a plainly written file: a new file gets
    ``0666 & ~umask`` (the kernel applies the umask to ``os.open``'s mode),
    an overwritten file keeps its mode.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    while True:
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(format_result(result))
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
