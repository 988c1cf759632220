"""VNN-LIB 2.0 through the `vnnlib` package, and why we walk its AST ourselves."""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from verifier.errors import PropertyError
from verifier.spec import load_property, parse_vnnlib, write_vnnlib

vnnlib = pytest.importorskip("vnnlib")

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"


def v2(body: str, x_shape="[2]", y_shape="[2]", dtype="float64") -> str:
    return (f"; comment before the version\n(vnnlib-version <2.0>)\n"
            f"(declare-network N\n    (declare-input X {dtype} {x_shape})\n"
            f"    (declare-output Y {dtype} {y_shape})\n)\n{body}\n")


BOX2 = "(assert (and (>= X[0] 0.0) (<= X[0] 1.0)))\n(assert (and (>= X[1] -1.0) (<= X[1] 1.0)))"


def test_the_2_0_example_equals_its_1_0_twin():
    assert load_property(EXAMPLES / "robustness_v2.vnnlib").equals(
        load_property(EXAMPLES / "robustness.vnnlib"))


def test_tensor_indices_flatten_in_c_order():
    body = "\n".join(f"(assert (<= {i - 10}.0 X[{i // 3},{i % 3}]))\n"
                     f"(assert (<= X[{i // 3},{i % 3}] {i}.5))" for i in range(6))
    prop = parse_vnnlib(v2(body + "\n(assert (>= Y[1,0] Y[0,1]))", "[2,3]", "[2,2]"))
    assert prop.n_inputs == 6 and prop.n_outputs == 4
    region = prop.cases[0].region
    assert region.lower.tolist() == [i - 10.0 for i in range(6)]
    assert region.upper.tolist() == [i + 0.5 for i in range(6)]
    assert prop.cases[0].unsafe[0].C.tolist() == [[0.0, 1.0, -1.0, 0.0]]   # Y[0,1] - Y[1,0]


def test_several_asserts_on_inputs_are_one_conjunction_and_strictness_is_kept():
    prop = parse_vnnlib(v2(BOX2 + "\n(assert (> Y[0] Y[1]))"))
    assert len(prop.cases) == 1
    region = prop.cases[0].region
    assert (region.lower.tolist(), region.upper.tolist()) == ([0.0, -1.0], [1.0, 1.0])
    poly = prop.cases[0].unsafe[0]
    assert poly.C.tolist() == [[-1.0, 1.0]] and poly.strict.tolist() == [True]


@pytest.mark.skipif(not version("vnnlib").startswith("1.0."),
                    reason="records the behaviour of vnnlib 1.0.x only")
def test_what_the_compat_transform_does_and_why_we_do_not_use_it():
    import vnnlib.compat

    # several asserts on inputs: one case per assert, each with a partial box
    cases = vnnlib.compat.transform(vnnlib.parse_query_string(v2(BOX2 + "\n(assert (> Y[0] Y[1]))")))
    boxes = sorted([list(map(tuple, case.input_box)) for case in cases])
    inf = float("inf")
    assert boxes == [[(-inf, inf), (-1.0, 1.0)], [(0.0, 1.0), (-inf, inf)]]
    # one conjunction: the box is right, but '>' has become '>=' (no strict flag exists)
    text = v2("(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] -1.0) (<= X[1] 1.0)"
              " (> Y[0] Y[1])))")
    (case,) = vnnlib.compat.transform(vnnlib.parse_query_string(text))
    assert [tuple(b) for b in case.input_box] == [(0.0, 1.0), (-1.0, 1.0)]
    (poly,) = case.output_constraints
    assert (poly.coeff_matrix, poly.rhs) == ([[-1.0, 1.0]], [0.0])
    assert parse_vnnlib(text).equals(parse_vnnlib(v2(BOX2 + "\n(assert (> Y[0] Y[1]))")))
    # a linear input constraint is refused; we keep it as a row of A
    linear = text.replace("(> Y[0] Y[1])", "(<= (+ X[0] X[1]) 1.0) (> Y[0] Y[1])")
    with pytest.raises(vnnlib.VNNLibException, match="simple bounds"):
        vnnlib.compat.transform(vnnlib.parse_query_string(linear))
    assert parse_vnnlib(linear).cases[0].region.A.tolist() == [[1.0, 1.0]]


def test_linear_terms_equality_and_not_equal():
    prop = parse_vnnlib(v2(BOX2 + "\n(assert (or (== (- Y[0] (* 2.0 Y[1])) 1.5)"
                                  " (!= (+ Y[0] (- Y[1] 0.5)) 0.0)))"))
    polys = prop.cases[0].unsafe
    assert [p.C.tolist() for p in polys] == [[[1.0, -2.0], [-1.0, 2.0]], [[1.0, 1.0]],
                                             [[-1.0, -1.0]]]
    assert [p.d.tolist() for p in polys] == [[1.5, -1.5], [0.5], [-0.5]]
    assert [p.strict.tolist() for p in polys] == [[False, False], [True], [True]]


def test_or_of_input_regions_and_the_writer():
    prop = parse_vnnlib(v2("(assert (or (and (>= X[0] 0.0) (<= X[0] 1.0) (>= Y[0] 1.0))"
                           " (and (>= X[0] 2.0) (<= X[0] 3.0) (>= Y[1] 1.0))))\n"
                           "(assert (and (<= X[1] 1.0) (>= X[1] 0.0)))"))
    assert len(prop.cases) == 2
    assert parse_vnnlib(write_vnnlib(prop)).equals(prop)


def test_the_dnf_guard_applies_to_2_0():
    body = "(assert (and " + " ".join(["(or (>= Y[0] 1.0) (>= Y[1] 1.0))"] * 5) + "))"
    assert parse_vnnlib(v2(BOX2 + "\n" + body), ).n_disjuncts == 32
    with pytest.raises(PropertyError, match="disjunctive normal form"):
        parse_vnnlib(v2(BOX2 + "\n" + body), max_disjuncts=31)


@pytest.mark.parametrize("text, message, line, column", [
    (v2("(assert (<= X[0] 1))"), "Type mismatch", 7, 18),
    (v2("(assert (<= X[2] 1.0))"), "out of bounds", 7, 13),
    (v2("(assert (<= X[0] 1.0)"), "syntax error: unexpected end of the file", 7, 21),
    (v2("(assert (<= (* X[0] X[1]) 1.0))"), "nonlinear", 7, None),
    (v2("(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= X[1] 1.0))"),
     "input X[1] has no lower bound", None, None),
    (v2(BOX2 + "\n(assert (>= X[1] 2.0))"), "empty input region: X[1] >= 2.0", 9, None),
    (v2(BOX2 + "\n(assert (<= X[1] Y[0]))"), "mixes input", 9, None),
])
def test_errors(text, message, line, column):
    with pytest.raises(PropertyError) as info:
        parse_vnnlib(text, path="q.vnnlib")
    assert message in info.value.detail
    assert "at line" not in info.value.detail and "''" not in info.value.detail  # location once
    assert (info.value.path, info.value.line, info.value.column) == ("q.vnnlib", line, column)


@pytest.mark.parametrize("declarations, message", [
    ("(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
     "(declare-network M (declare-input Z float32 [1]) (declare-output W float32 [1]))",
     "2 networks"),
    ("(declare-network N (declare-input X float32 [1]) (declare-input Z float32 [1])"
     " (declare-output Y float32 [1]))", "exactly one of each"),
    ("(declare-network N (declare-input X float32 [1]) (declare-hidden H float32 [1] \"h\")"
     " (declare-output Y float32 [1]))", "hidden"),
])
def test_unsupported_query_shapes(declarations, message):
    text = f"(vnnlib-version <2.0>)\n{declarations}\n(assert (<= X[0] 1.0))\n"
    with pytest.raises(PropertyError, match=message):
        parse_vnnlib(text)
