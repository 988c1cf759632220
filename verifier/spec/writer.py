"""Write the normal form as VNN-LIB 1.0 text (VNN-COMP dialect).

The output reads back to an equal property (``parse_vnnlib(write_vnnlib(p))``
equals ``p``), with one caveat: cases whose regions are equal by value are
merged into one case by the reader.

Layout: declarations; with one case, one assert per input bound / input row
and the outputs as ``(assert (or (and rows...) ...))`` (or plain asserts for
a single polytope); with several cases, a single
``(assert (or (and <region> (or (and rows...) ...)) ...))``. Numbers are
written in positional notation with the shortest digits that read back to
the same float64.
"""
from __future__ import annotations

import numpy as np

from verifier.spec.property import InputRegion, OutputPolytope, Property


def _number(value: float) -> str:
    return np.format_float_positional(float(value) + 0.0, unique=True, trim="0")


def _linear(row: np.ndarray, letter: str) -> str:
    parts = []
    for index in np.flatnonzero(row):
        coef = float(row[index])
        name = f"{letter}_{index}"
        if coef == 1.0:
            parts.append(name)
        elif coef == -1.0:
            parts.append(f"(- {name})")
        else:
            parts.append(f"(* {_number(coef)} {name})")
    if not parts:          # an all-zero row still names a variable of its kind
        return f"(* 0.0 {letter}_0)"
    if len(parts) == 1:
        return parts[0]
    return f"(+ {' '.join(parts)})"


def _rows(C: np.ndarray, d: np.ndarray, strict: np.ndarray, letter: str) -> list[str]:
    return [f"({'<' if s else '<='} {_linear(row, letter)} {_number(rhs)})"
            for row, rhs, s in zip(C, d, strict)]


def _region(region: InputRegion) -> list[str]:
    atoms = []
    for i, (lo, hi, s_lo, s_hi) in enumerate(zip(region.lower, region.upper,
                                                  region.strict_lower, region.strict_upper)):
        atoms.append(f"({'<' if s_hi else '<='} X_{i} {_number(hi)})")
        atoms.append(f"({'>' if s_lo else '>='} X_{i} {_number(lo)})")
    atoms.extend(_rows(region.A, region.b, region.strict_A, "X"))
    return atoms


def _polytope(poly: OutputPolytope) -> list[str]:
    return _rows(poly.C, poly.d, poly.strict, "Y")


def write_vnnlib(prop: Property) -> str:
    """The property as VNN-LIB 1.0 text (see the module docstring)."""
    lines = ["; VNN-LIB 1.0 property written by verifier",
             f"; {prop.n_inputs} inputs, {prop.n_outputs} outputs, "
             f"{len(prop.cases)} input region(s), {prop.n_disjuncts} unsafe polytope(s)", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(prop.n_inputs)]
    lines.append("")
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs)]
    lines.append("")
    if len(prop.cases) == 1:
        case = prop.cases[0]
        lines += [f"(assert {atom})" for atom in _region(case.region)]
        lines.append("")
        if len(case.unsafe) == 1:
            lines += [f"(assert {atom})" for atom in _polytope(case.unsafe[0])]
        else:
            lines.append("(assert (or")
            lines += [f"    (and {' '.join(_polytope(poly))})" for poly in case.unsafe]
            lines.append("))")
    else:
        lines.append("(assert (or")
        for case in prop.cases:
            unsafe = " ".join(f"(and {' '.join(_polytope(poly))})" for poly in case.unsafe)
            lines.append(f"    (and {' '.join(_region(case.region))}")
            lines.append(f"        (or {unsafe}))")
        lines.append("))")
    return "\n".join(lines) + "\n"
