"""Properties: VNN-LIB 1.0 and 2.0 readers, a writer, one normal form.

The normal form (:mod:`verifier.spec.property`)::

    Property(n_inputs, n_outputs, cases)       violated iff SOME case is
      Case(region, unsafe)                     x in region and f(x) in SOME polytope
        InputRegion(lower, upper, A, b)        lower <= x <= upper and A x <= b
        OutputPolytope(C, d, strict)           C y <= d (all rows)

Strict inequalities keep a ``strict`` flag and their direction; proofs use
the closure (sound), counterexamples must satisfy them strictly (see
:mod:`verifier.spec.property`). Nested and/or are multiplied out into DNF
with a guard on the number of disjuncts (see :mod:`verifier.spec._build`,
``max_disjuncts``).

Entry points::

    load_property(path) -> Property          .vnnlib / .vnnlib.gz, 1.0 or 2.0
    parse_vnnlib(text, path=None) -> Property
    write_vnnlib(prop) -> str                VNN-LIB 1.0; parse(write(p)) equals p
    properties_equal(a, b) / Property.equals
    robustness_label(prop) -> int | None
    summarize(prop) -> dict                  what ``verifier spec`` prints
"""
from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from verifier.errors import InputFileError, PropertyError
from verifier.spec._build import MAX_DISJUNCTS
from verifier.spec.property import (Case, InputRegion, OutputPolytope, Property,
                                    properties_equal, robustness_label)
from verifier.spec.writer import write_vnnlib

__all__ = [
    "Case", "InputRegion", "OutputPolytope", "Property", "MAX_DISJUNCTS",
    "load_property", "parse_vnnlib", "write_vnnlib", "properties_equal",
    "robustness_label", "summarize",
]

# a VNN-LIB 2.0 file starts (after comments) with (vnnlib-version <2.0>)
_VERSION_2 = re.compile(r"(?:\s|;[^\n]*)*\(\s*vnnlib-version\b")


def parse_vnnlib(text: str, path=None, *, max_disjuncts: int = MAX_DISJUNCTS) -> Property:
    """Parse VNN-LIB text; 2.0 when it starts with ``(vnnlib-version ...)``.

    Raises PropertyError (with path, line and column) on malformed input,
    including nested and/or that multiply out to more than ``max_disjuncts``
    disjuncts.
    """
    if _VERSION_2.match(text):
        from verifier.spec.vnnlib2 import parse_vnnlib2

        return parse_vnnlib2(text, path, max_disjuncts)
    from verifier.spec.vnnlib1 import parse_vnnlib1

    return parse_vnnlib1(text, path, max_disjuncts)


def load_property(path, *, max_disjuncts: int = MAX_DISJUNCTS) -> Property:
    """Read a ``.vnnlib`` (or gzip-compressed ``.vnnlib.gz``) file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"property file not found: {path}") from None
    except IsADirectoryError:
        raise InputFileError(f"property path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise InputFileError(f"cannot read property file {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise PropertyError(f"corrupt gzip data: {exc}", str(path)) from None
    try:
        text = data.decode("utf-8-sig")          # a byte-order mark is not an error
    except UnicodeDecodeError as exc:
        raise PropertyError(f"not UTF-8 text (byte {exc.start})", str(path)) from None
    return parse_vnnlib(text, str(path), max_disjuncts=max_disjuncts)


def summarize(prop: Property) -> dict:
    """Counts and ranges of a property (what ``verifier spec`` shows)."""
    widths = np.concatenate([case.region.width for case in prop.cases])
    return {
        "path": prop.path,
        "inputs": prop.n_inputs,
        "outputs": prop.n_outputs,
        "input_regions": len(prop.cases),
        "input_constraints": sum(case.region.A.shape[0] for case in prop.cases),
        "disjuncts": prop.n_disjuncts,
        "disjuncts_per_region": [len(case.unsafe) for case in prop.cases],
        "rows": prop.n_rows,
        "strict_rows": int(sum(int(p.strict.sum()) for case in prop.cases
                               for p in case.unsafe)),
        "box_width_min": float(widths.min()),
        "box_width_max": float(widths.max()),
        "robustness_label": robustness_label(prop),
    }
