"""The independent check of a ``sat`` answer's counterexample.

A ``sat`` counts only if its result file's X values, run through
onnxruntime (CPU, float32), give the file's Y values within relative
``OUTPUT_RTOL`` and violate the property at tolerance ``PROPERTY_TOL``
(the VNN-COMP 2025 rules).

The X values must lie in a case's input region at that tolerance, or be
admissible for it as float32 inputs (:func:`verifier.result.float32_admissible`:
inside the float32 hull of the box, the linear constraints exactly). Where a
box pins an input to a value float32 cannot hold (``1000.1``), the float32
network only ever sees the nearest float32s, which are ``1e-5`` away: the
absolute tolerance alone would judge every counterexample there invalid.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from verifier.result import Verdict, float32_admissible

#: the file's Y values must equal the replayed outputs within this relative error
OUTPUT_RTOL = 1e-6
#: the property must be violated at this tolerance (VNN-COMP 2025)
PROPERTY_TOL = 1e-7


@dataclass(frozen=True)
class Check:
    """The outcome of checking a ``sat`` result's counterexample."""

    valid: bool
    reason: str = ""

    def __str__(self) -> str:
        return "valid" if self.valid else f"invalid: {self.reason}"

    @classmethod
    def parse(cls, text: str) -> "Check | None":
        text = (text or "").strip()
        if text == "valid":
            return cls(True)
        if text.startswith("invalid"):
            return cls(False, text.partition(":")[2].strip())
        return None


_ENTRY = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def parse_counterexample(text: str):
    """The X and Y values of a VNN-COMP result file (float64 arrays, by index).

    Raises ValueError when the first line is not ``sat`` or an index is
    missing or repeated.
    """
    import numpy as np

    lines = text.strip().splitlines()
    if not lines or lines[0].strip().lower() != Verdict.SAT.value:
        raise ValueError("the result file does not start with 'sat'")
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for name, index, number in _ENTRY.findall("\n".join(lines[1:])):
        if int(index) in values[name]:
            raise ValueError(f"{name}_{index} is given twice")
        try:
            values[name][int(index)] = float(number)
        except ValueError:
            raise ValueError(f"{name}_{index} has a value that is not a number: {number!r}") from None
    arrays = []
    for name in ("X", "Y"):
        entries = values[name]
        if not entries:
            raise ValueError(f"no {name} values")
        missing = sorted(set(range(len(entries))) - set(entries))
        if missing:
            raise ValueError(f"{name}_{missing[0]} is missing")
        arrays.append(np.array([entries[i] for i in range(len(entries))], dtype=np.float64))
    return arrays[0], arrays[1]


def check_counterexample(model, property_path, result_text: str) -> Check:
    """Replay a ``sat`` result file's counterexample independently.

    The X values run through onnxruntime (CPU, float32, the model's input
    shape, rows one at a time as a checker does); the file's Y values must
    match the outputs within relative ``OUTPUT_RTOL``, and the point must
    violate the property at tolerance ``PROPERTY_TOL``.
    """
    import numpy as np

    try:
        x, y_file = parse_counterexample(result_text)
    except ValueError as exc:
        return Check(False, str(exc))
    try:
        from verifier.runtime import open_session
        from verifier.spec import load_property

        prop = load_property(property_path)
        session = open_session(model, device="cpu", batching="loop")
        if x.size != session.input_size or x.size != prop.n_inputs:
            return Check(False, f"{x.size} X values for a model with {session.input_size} "
                                f"inputs and a property with {prop.n_inputs}")
        y = session.run(x.astype(np.float32).reshape((1,) + tuple(session.input_shape)))
    except Exception as exc:  # noqa: BLE001 - any failure means "not shown valid"
        return Check(False, f"replay failed: {exc}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.size != y_file.size or y.size != prop.n_outputs:
        return Check(False, f"{y_file.size} Y values, the model gives {y.size} outputs "
                            f"and the property has {prop.n_outputs}")
    if not np.all(np.isfinite(y)):
        return Check(False, "the model's outputs are not finite")
    deviation = np.abs(y_file - y)
    bad = np.flatnonzero(~(deviation <= OUTPUT_RTOL * np.abs(y)))
    if bad.size:
        j = int(bad[0])
        return Check(False, f"Y_{j} is {float(y_file[j])!r} in the file but the model "
                            f"gives {float(y[j])!r}")
    if not _violates(prop, x, y):
        return Check(False, f"the point does not violate the property (tolerance {PROPERTY_TOL:g})")
    return Check(True)


def _violates(prop, x, y) -> bool:
    """Whether ``x`` is in (or float32-admissible for) some case's region and
    ``y`` in one of that case's unsafe sets, at tolerance ``PROPERTY_TOL``."""
    for case in prop.cases:
        inside = case.region.contains(x, PROPERTY_TOL) or float32_admissible(case.region, x)
        if inside and any(p.contains(y, PROPERTY_TOL) for p in case.unsafe):
            return True
    return False


__all__ = ["Check", "parse_counterexample", "check_counterexample", "OUTPUT_RTOL", "PROPERTY_TOL"]
