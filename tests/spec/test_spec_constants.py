"""Comparisons of constants (audit 7a3fb1e B3.8): true ones drop out of their
conjunction, false ones make it empty (a row no output satisfies)."""
from __future__ import annotations

import pytest

from verifier.spec import parse_vnnlib, write_vnnlib

HEAD = ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
        "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n")


def polytopes(body):
    prop = parse_vnnlib(HEAD + body)
    assert parse_vnnlib(write_vnnlib(prop)).equals(prop)      # the writer keeps them
    return [(p.C.tolist(), p.d.tolist(), p.strict.tolist()) for p in prop.cases[0].unsafe]


@pytest.mark.parametrize("body", ["(assert (<= 0.0 1.0))", "(assert (< 0 1))",
                                  "(assert (>= 2 (+ 1 1)))", "(assert (<= 1 2 3))"])
def test_a_true_constant_comparison_drops_out(body):
    assert polytopes(body) == [([], [], [])]                   # no output constraint
    assert polytopes(body + "\n(assert (<= Y_0 Y_1))") == [([[1.0, -1.0]], [0.0], [False])]


@pytest.mark.parametrize("body, d, strict", [("(assert (<= 1.0 0.0))", -1.0, False),
                                             ("(assert (< 0 0))", 0.0, True),
                                             ("(assert (> 1 (* 2 3)))", -5.0, True)])
def test_a_false_constant_comparison_empties_its_conjunction(body, d, strict):
    assert polytopes(body + "\n(assert (<= Y_0 Y_1))") == [
        ([[0.0, 0.0], [1.0, -1.0]], [d, 0.0], [strict, False])]      # rows in text order


def test_constants_inside_or_keep_the_disjunction_semantics():
    # (or P true) is everything; (or P false) is P plus an empty disjunct
    assert ([], [], []) in polytopes("(assert (or (<= Y_0 1) (<= 1 2)))")
    assert polytopes("(assert (or (<= Y_0 1) (<= 2 1)))") == [
        ([[1.0, 0.0]], [1.0], [False]), ([[0.0, 0.0]], [-1.0], [False])]


def test_constant_comparisons_in_vnnlib_2():
    pytest.importorskip("vnnlib")
    text = ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float32 [1])\n"
            "  (declare-output Y float32 [2])\n)\n"
            "(assert (and (>= X[0] 0.0) (<= X[0] 1.0)))\n"
            "(assert (<= 0.0 1.0))\n(assert (<= Y[0] Y[1]))\n")
    prop = parse_vnnlib(text)
    assert [p.d.tolist() for p in prop.cases[0].unsafe] == [[0.0]]
    false = parse_vnnlib(text.replace("(<= 0.0 1.0)", "(<= 1.0 0.0)"))
    assert [p.d.tolist() for p in false.cases[0].unsafe] == [[-1.0, 0.0]]
