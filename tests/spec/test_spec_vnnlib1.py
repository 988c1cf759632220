"""The VNN-LIB 1.0 reader and the writer: language, DNF, errors, round trips."""
from __future__ import annotations

import gzip
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from verifier.errors import InputFileError, PropertyError
from verifier.spec import load_property, parse_vnnlib, write_vnnlib

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "specs" / "examples").glob("*.vnnlib"))

HEADER = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n" \
         "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n"


def parse(body: str, header: str = HEADER + BOX, **kw):
    return parse_vnnlib(header + body, **kw)


def only_polytope(prop):
    assert len(prop.cases) == 1 and len(prop.cases[0].unsafe) == 1
    return prop.cases[0].unsafe[0]


# -- bounds and terms -----------------------------------------------------------

@pytest.mark.parametrize("atoms, lower, upper", [
    ("(<= X_0 2) (>= X_0 -1)", -1.0, 2.0),
    ("(>= 2 X_0) (<= -1 X_0)", -1.0, 2.0),                # constants on the left
    ("(<= -1 X_0 2)", -1.0, 2.0),                         # a chain
    ("(<= (* 2 X_0) 4) (<= (* -1 X_0) 3)", -3.0, 2.0),     # -x0 <= 3 means x0 >= -3
    ("(<= (- X_0) 1) (<= X_0 0.5)", -1.0, 0.5),
    ("(<= (+ X_0 1) 3) (>= (- X_0 0.5) -1)", -0.5, 2.0),
    ("(= X_0 0.25)", 0.25, 0.25),
    ("(<= X_0 2) (<= X_0 1.5) (>= X_0 -1) (>= X_0 -2)", -1.0, 1.5),   # tightest wins
])
def test_bounds_in_every_orientation(atoms, lower, upper):
    header = HEADER + "(assert (<= X_1 1))\n(assert (>= X_1 0))\n"
    prop = parse(f"(assert (and {atoms}))\n(assert (<= Y_0 0))", header)
    region = prop.cases[0].region
    assert (region.lower[0], region.upper[0]) == (lower, upper)
    assert region.A.shape == (0, 2)


def test_non_unit_coefficients_round_the_box_outwards():
    prop = parse("(assert (<= Y_0 0))", HEADER + "(assert (<= (* 3 X_0) 1))\n"
                 "(assert (>= (* 3 X_0) -1))\n(assert (<= 0 X_1 1))\n")
    region = prop.cases[0].region
    assert Fraction(region.upper[0]) >= Fraction(1, 3)
    assert Fraction(region.lower[0]) <= Fraction(-1, 3)
    assert region.upper[0] == np.nextafter(1 / 3, 1)       # one ulp, no more


@pytest.mark.parametrize("atom, row, d, strict", [
    ("(<= (+ (* 2.0 Y_0) (- Y_1)) 0.5)", [2.0, -1.0], 0.5, False),
    ("(>= (+ (* 2.0 Y_0) (- Y_1)) 0.5)", [-2.0, 1.0], -0.5, False),
    ("(< Y_0 Y_1)", [1.0, -1.0], 0.0, True),
    ("(> Y_0 Y_1)", [-1.0, 1.0], 0.0, True),
    ("(< 3 Y_0)", [-1.0, 0.0], -3.0, True),                 # never flipped: 3 < y0
    ("(> 3 Y_0)", [1.0, 0.0], 3.0, True),
    ("(<= (* Y_1 4) (+ Y_0 1))", [-1.0, 4.0], 1.0, False),  # variables on both sides
    ("(<= (- Y_0 Y_1 2 -3) 0)", [1.0, -1.0], -1.0, False),
    ("(<= (/ Y_0 4 0.5) 1)", [0.5, 0.0], 1.0, False),
    ("(<= (* 2 3 Y_1) 6)", [0.0, 6.0], 6.0, False),
    ("(<= (+ Y_0 Y_0 (* -1 Y_0)) 1e-3)", [1.0, 0.0], 0.001, False),
    ("(<= (* 0 Y_1) 1)", [0.0, 0.0], 1.0, False),           # a zero row stays a row
])
def test_output_rows(atom, row, d, strict):
    poly = only_polytope(parse(f"(assert {atom})"))
    assert poly.C.tolist() == [row]
    assert poly.d.tolist() == [d]
    assert poly.strict.tolist() == [strict]


def test_equality_gives_two_rows():
    poly = only_polytope(parse("(assert (= (- Y_0 Y_1) 2))"))
    assert poly.C.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    assert poly.d.tolist() == [2.0, -2.0]


def test_linear_input_constraints_become_rows_of_A():
    prop = parse("(assert (<= Y_0 0))\n(assert (< (+ X_0 (* -2 X_1)) 0.5))\n"
                 "(assert (>= (- X_0 X_1) (- 1)))")
    region = prop.cases[0].region
    assert region.A.tolist() == [[1.0, -2.0], [-1.0, 1.0]]
    assert region.b.tolist() == [0.5, 1.0]
    assert region.strict_A.tolist() == [True, False]
    assert (region.lower.tolist(), region.upper.tolist()) == ([0, 0], [1, 1])


def test_strict_bounds_are_kept_and_the_stricter_tie_wins():
    prop = parse("(assert (<= Y_0 0))", HEADER + "(assert (< X_0 1))\n(assert (<= X_0 1))\n"
                 "(assert (>= X_0 0))\n(assert (> X_1 0))\n(assert (<= X_1 1))\n")
    region = prop.cases[0].region
    assert region.strict_upper.tolist() == [True, False]
    assert region.strict_lower.tolist() == [False, True]


def test_comments_declare_fun_and_ignored_commands():
    text = """; a comment (with parentheses
    (set-logic QF_LRA)
    (declare-fun X_0 () Real) ; trailing ) comment
    (declare-const Y_0 Real)
    (assert (<= X_0 ; inside
        1))
    (assert (>= X_0 -1)) (assert (>= Y_0 0.5))
    (check-sat)
    (get-model)
    (exit)
    """
    prop = parse_vnnlib(text)
    assert prop.cases[0].region.lower.tolist() == [-1.0]
    assert only_polytope(prop).d.tolist() == [-0.5]


# -- DNF and grouping -----------------------------------------------------------

def test_or_of_input_regions_with_mixed_atoms_groups_by_region():
    prop = parse("""(assert (or
        (and (<= X_0 0.5) (>= Y_0 1))
        (and (<= X_0 0.5) (>= Y_1 1))
        (and (>= X_0 0.5) (>= Y_0 2))))""")
    assert len(prop.cases) == 2
    first, second = prop.cases
    assert first.region.upper.tolist() == [0.5, 1.0]
    assert [p.d.tolist() for p in first.unsafe] == [[-1.0], [-1.0]]
    assert second.region.lower.tolist() == [0.5, 0.0]
    assert [p.d.tolist() for p in second.unsafe] == [[-2.0]]


def test_equal_regions_from_different_disjuncts_merge():
    prop = parse("""(assert (or (and (<= X_0 0.5) (>= Y_0 1))
                                (and (<= X_0 0.75) (<= X_0 0.5) (>= Y_1 1))))""")
    assert len(prop.cases) == 1 and len(prop.cases[0].unsafe) == 2


def test_nested_and_or_multiply_out():
    prop = parse("""(assert (and (or (>= Y_0 1) (>= Y_0 2))
                                 (or (>= Y_1 3) (and (>= Y_1 4) (or (>= Y_0 5) (>= Y_0 6))))))""")
    assert [p.d.tolist() for p in prop.cases[0].unsafe] == [
        [-1, -3], [-1, -4, -5], [-1, -4, -6], [-2, -3], [-2, -4, -5], [-2, -4, -6]]


def test_separate_asserts_with_or_multiply_out():
    prop = parse("(assert (or (<= X_0 0.5) (>= X_0 0.5)))\n"
                 "(assert (or (>= Y_0 1) (>= Y_1 1)))\n(assert (<= Y_0 9))")
    assert len(prop.cases) == 2
    assert all(len(case.unsafe) == 2 for case in prop.cases)
    assert prop.cases[0].unsafe[1].d.tolist() == [9.0, -1.0]


def test_the_dnf_guard_names_the_expression():
    body = "(assert (and\n  " + " ".join(["(or (>= Y_0 1) (>= Y_1 1))"] * 20) + "))"
    with pytest.raises(PropertyError, match="disjunctive normal form") as info:
        parse(body)
    assert (info.value.line, info.value.column) == (9, 9)     # the 'and'
    assert "limit of 100000" in str(info.value)
    # a smaller limit, and the implicit conjunction of asserts
    body = "\n".join(["(assert (or (>= Y_0 1) (>= Y_1 1)))"] * 4)
    assert parse(body, max_disjuncts=16).n_disjuncts == 16
    with pytest.raises(PropertyError, match="asserts up to this one") as info:
        parse(body, max_disjuncts=8)
    assert info.value.line == 12                                 # the fourth assert


def test_deep_nesting_needs_no_recursion():
    depth = 20_000
    body = "(assert " + "(and " * depth + "(>= Y_0 1)" + ")" * depth + ")"
    assert only_polytope(parse(body)).d.tolist() == [-1.0]


# -- files ----------------------------------------------------------------------

def test_gzip_and_plain_files_read_the_same(tmp_path):
    text = HEADER + BOX + "(assert (>= Y_0 Y_1))\n"
    plain = tmp_path / "p.vnnlib"
    plain.write_text(text)
    packed = tmp_path / "p.vnnlib.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = load_property(plain), load_property(packed)
    assert a.equals(b) and b.path == str(packed)
    assert a.cases[0].unsafe[0].C.tolist() == [[-1.0, 1.0]]


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_property(tmp_path / "missing.vnnlib")
    bad = tmp_path / "bad.vnnlib.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(PropertyError, match="gzip"):
        load_property(bad)


# -- errors: file, line and column ------------------------------------------------

ERRORS = [
    # (text after HEADER + BOX, message part, line, column)
    ("(assert (<= Y_0 1)", "never closed", 9, 1),
    ("(assert (<= Y_0 1)))", "without a matching", 9, 20),
    ("(assert (<== Y_0 1))", "unknown operator or command '<=='", 9, 10),
    ("(assert (not (<= Y_0 1)))", "unsupported operator 'not'", 9, 10),
    ("(assert (<= Y_7 1))", "undeclared variable Y_7", 9, 13),
    ("(assert (<= (+ Y_0 Y_9) 1))", "undeclared variable Y_9", 9, 20),
    ("(assert (<= Y_0 0.5.1))", "malformed number '0.5.1'", 9, 17),
    ("(assert (<= Y_0 1,5))", "malformed number '1,5'", 9, 17),
    ("(assert (<= Y_0 abc))", "unknown symbol 'abc'", 9, 17),
    ("(assert (<= Y_0 inf))", "unknown symbol 'inf'", 9, 17),
    ("(assert (<= (+ Y_0 1_0) 1))", "malformed number '1_0'", 9, 20),
    ("(assert (<= Y_0 1e999))", "out of the range", 9, 17),
    ("(assert (<= X_0 Y_0))", "mixes input (X) and output (Y)", 9, 9),
    ("(assert (<= (* Y_0 Y_1) 1))", "nonlinear", 9, 13),
    ("(assert (<= (/ Y_0 0) 1))", "division by zero", 9, 13),
    ("(assert (or))", "at least 1 argument", 9, 9),
    ("(assert (<= Y_0))", "at least 2 arguments", 9, 9),
    ("(assert (<= Y_0 1) (<= Y_1 1))", "exactly one formula", 9, 1),
    ("(assert (and (+ Y_0 1)))", "expected a comparison", 9, 14),
    ("(assert (<= (and (<= Y_0 1)) 1))", "expected a number, a variable", 9, 13),
    ("(assert (and (assert (<= Y_0 1))))", "found a (assert ...) command", 9, 14),
    ("(<= Y_0 1)", "at the top level", 9, 1),
    ("assert", "outside parentheses", 9, 1),
    ("(assert ((<= Y_0 1)))", "expected an operator", 9, 9),
    ("(assert (>= X_0 2))", "empty input region: X_0 >= 2.0 and X_0 <= 1.0", 9, 9),
    ("(assert (< X_1 0))", "empty input region: X_1 >= 0.0 and X_1 < 0.0", 9, 9),
    ("(declare-const X_1 Real)", "declared twice (first at line 2)", 9, 16),
    ("(declare-const X_2 Int)", "unsupported sort 'Int'", 9, 20),
    ("(declare-const Z_2 Real)", "must be named X_<i>", 9, 16),
    ("(declare-const X_3 Real)", "X_3 is declared but X_2 is not", 9, 16),
    ("(declare-const X_2 Real)", "input X_2 has no lower bound", 9, 16),
    ("(declare-fun X_2 Real)", "malformed declaration", 9, 1),
    ("(declare-network N)", "must start with (vnnlib-version <2.0>)", 9, 2),
]


@pytest.mark.parametrize("body, message, line, column", ERRORS,
                         ids=[e[1][:30] for e in ERRORS])
def test_errors_point_at_file_line_and_column(body, message, line, column):
    with pytest.raises(PropertyError) as info:
        parse_vnnlib(HEADER + BOX + body, path="prop.vnnlib")
    error = info.value
    assert message in error.detail
    assert (error.path, error.line, error.column) == ("prop.vnnlib", line, column)
    assert str(error).startswith(f"prop.vnnlib:{line}:{column}: ")


def test_unbounded_input_in_one_of_several_regions():
    with pytest.raises(PropertyError, match="X_1 has no upper bound in one of the 2") as info:
        parse_vnnlib(HEADER + "(assert (>= X_0 0)) (assert (<= X_0 1)) (assert (>= X_1 0))\n"
                     "(assert (or (<= X_1 1) (>= Y_0 1)))")
    assert (info.value.line, info.value.column) == (2, 16)


def test_missing_outputs_and_non_ascii():
    with pytest.raises(PropertyError, match="no output variables"):
        parse_vnnlib("(declare-const X_0 Real)\n(assert (<= 0 X_0 1))")
    with pytest.raises(PropertyError, match="non-ASCII") as info:
        parse_vnnlib(HEADER + BOX + "(assert (<= Y_0 \u0661))")
    assert (info.value.line, info.value.column) == (9, 17)


# -- the writer -----------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_round_trip(path):
    prop = load_property(path)
    text = write_vnnlib(prop)
    again = parse_vnnlib(text)
    assert again.equals(prop)
    assert write_vnnlib(again) == text


def test_round_trip_of_zero_row_polytopes_and_strict_inputs():
    prop = parse("(assert (or (and) (< Y_0 1)))", HEADER +
                 "(assert (or (and (< X_0 1) (> X_0 0)) (and (<= X_0 3) (>= X_0 2))))\n"
                 "(assert (<= 0 X_1 1))\n")
    assert [len(case.unsafe) for case in prop.cases] == [2, 2]
    assert prop.cases[0].unsafe[0].rows == 0
    again = parse_vnnlib(write_vnnlib(prop))
    assert again.equals(prop)
    assert again.cases[0].region.strict_upper.tolist() == [True, False]
    single = parse("")                       # no output constraint: all outputs unsafe
    assert only_polytope(single).rows == 0
    assert parse_vnnlib(write_vnnlib(single)).equals(single)


def test_writer_output_is_plain_vnncomp_syntax():
    prop = load_property(ROOT / "specs" / "examples" / "linear_terms.vnnlib")
    text = write_vnnlib(prop)
    assert not re.search(r"\d[eE][-+]?\d", text)          # positional numbers only
    assert "(* 0.25 Y_2)" in text and "(- Y_1)" in text
    assert text.count("(declare-const X_") == 3 and text.count("(declare-const Y_") == 3
