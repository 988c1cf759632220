"""The normal-form dataclasses: validation, semantics, equality, helpers."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.errors import MismatchError
from verifier.spec import (Case, InputRegion, OutputPolytope, Property, parse_vnnlib,
                           properties_equal, robustness_label)


def _box(lower, upper, **kw):
    return InputRegion(np.array(lower, float), np.array(upper, float), **kw)


def _prop(rows, strict=None, n_out=3):
    """One case over a 2-input box; each entry of rows is a (C_row, d) polytope."""
    polys = tuple(OutputPolytope(np.array([c], float), np.array([d], float),
                                 None if strict is None else np.array([strict]))
                  for c, d in rows)
    return Property(2, n_out, (Case(_box([0, 0], [1, 1]), polys),))


def test_arrays_are_float64_read_only_copies():
    lower = np.array([0, 1])          # ints, writeable
    region = _box(lower, [2, 3])
    assert region.lower.dtype == np.float64
    assert not region.lower.flags.writeable
    lower[0] = 5                       # the caller's array is not shared
    assert region.lower[0] == 0.0
    assert lower.flags.writeable       # and not frozen behind the caller's back
    assert region.A.shape == (0, 2) and region.b.shape == (0,)
    assert region.strict_lower.dtype == bool and not region.strict_lower.any()


@pytest.mark.parametrize("lower, upper, match", [
    ([0.0, 2.0], [1.0, 1.0], "empty"),
    ([0.0, -np.inf], [1.0, 1.0], "finite"),
    ([0.0], [1.0, 1.0], "shape"),
])
def test_region_validation(lower, upper, match):
    with pytest.raises(ValueError, match=match):
        _box(lower, upper)


def test_polytope_validation_and_defaults():
    poly = OutputPolytope(np.eye(2), np.zeros(2))
    assert poly.strict.tolist() == [False, False] and poly.rows == 2 and poly.n_outputs == 2
    with pytest.raises(ValueError, match="rows"):
        OutputPolytope(np.eye(2), np.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        Case(_box([0], [1]), ())
    with pytest.raises(ValueError, match="outputs"):
        Property(1, 3, (Case(_box([0], [1]), (poly,)),))


def test_strict_rows_are_strict_for_counterexamples_only():
    # unsafe: y0 - y1 < 0 (strict) and y0 <= 2
    poly = OutputPolytope(np.array([[1.0, -1.0], [1.0, 0.0]]), np.array([0.0, 2.0]),
                          np.array([True, False]))
    assert poly.contains([1.0, 1.5])
    assert not poly.contains([1.0, 1.0])        # boundary of the strict row: not unsafe
    assert poly.contains([2.0, 2.5])            # boundary of the non-strict row: unsafe
    assert not poly.contains([2.5, 3.0])
    assert poly.contains([1.0, 1.0], tol=1e-9)  # tolerance loosens every row


def test_region_contains_respects_strict_bounds_and_rows():
    region = _box([0, 0], [1, 1], A=np.array([[1.0, 1.0]]), b=np.array([1.5]),
                  strict_upper=np.array([True, False]))
    assert region.contains([0.5, 0.5])
    assert not region.contains([1.0, 0.0])      # strict upper bound of x0
    assert region.contains([0.0, 1.0])
    assert not region.contains([0.9, 0.9])      # the A row
    assert region.contains([0.75, 0.75])        # on the (non-strict) A row


def test_property_counterexample_needs_region_and_polytope_of_the_same_case():
    text = """
    (declare-const X_0 Real) (declare-const Y_0 Real)
    (assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 5))
                (and (>= X_0 2) (<= X_0 3) (<= Y_0 -5))))
    """
    prop = parse_vnnlib(text)
    assert prop.is_counterexample([0.5], [6.0])
    assert prop.is_counterexample([2.5], [-6.0])
    assert not prop.is_counterexample([0.5], [-6.0])   # region 1 with case 2's output
    assert not prop.is_counterexample([1.5], [6.0])    # between the regions


def test_check_sizes_names_both_sizes():
    prop = _prop([([1, -1, 0], 0.0)])
    prop.check_sizes(2, 3)
    with pytest.raises(MismatchError) as info:
        prop.check_sizes(784, 3, model="mnist.onnx")
    message = str(info.value)
    assert "2 inputs" in message and "784" in message and "mnist.onnx" in message
    with pytest.raises(MismatchError, match=r"3 outputs .* 10 output"):
        prop.check_sizes(2, 10)


def test_equality_compares_values_not_paths():
    a = _prop([([1, -1, 0], 0.0), ([0, -1, 1], 0.0)])
    b = _prop([([1, -1, 0], 0.0), ([0, -1, 1], 0.0)])
    object.__setattr__(b, "path", "elsewhere.vnnlib")
    assert a.equals(b) and properties_equal(a, b)
    assert a != b                                   # eq=False: identity
    assert not a.equals(_prop([([1, -1, 0], 0.0), ([0, -1, 1], 0.5)]))
    assert not a.equals(_prop([([1, -1, 0], 0.0), ([0, -1, 1], 0.0)], strict=True))
    assert not a.equals(_prop([([1, -1, 0], 0.0)]))
    assert _prop([([1, -1, 0], -0.0)]).equals(_prop([([1, -1, 0], 0.0)]))


@pytest.mark.parametrize("rows, strict, label", [
    ([([1, -1, 0], 0.0), ([1, 0, -1], 0.0)], None, 0),      # y_0 - y_k <= 0 for k = 1, 2
    ([([-1, 1, 0], 0.0), ([0, 1, -1], 0.0)], None, 1),      # y_1 <= y_0, y_1 <= y_2
    ([([0, -1, 1], 0.0)], None, 2),                         # a single k is enough
    ([([1, -1, 0], 0.0), ([0, 1, -1], 0.0)], None, None),   # two different labels
    ([([-1, 1, 0], 0.5)], None, None),                      # a margin
    ([([-2, 2, 0], 0.0)], None, None),                      # scaled
    ([([-1, 1, 1], 0.0)], None, None),                      # three outputs
    ([([-1, 1, 0], 0.0)], True, None),                      # strict: y_1 > y_0
])
def test_robustness_label(rows, strict, label):
    assert robustness_label(_prop(rows, strict)) == label


def test_robustness_label_rejects_multi_row_polytopes():
    text = """
    (declare-const X_0 Real) (declare-const Y_0 Real) (declare-const Y_1 Real)
    (declare-const Y_2 Real)
    (assert (<= 0 X_0 1))
    (assert (or (and (>= Y_1 Y_0) (>= Y_2 Y_0)) (>= Y_2 Y_0)))
    """
    assert robustness_label(parse_vnnlib(text)) is None
    assert robustness_label(parse_vnnlib(text.replace("(>= Y_2 Y_0)) (>=", ") (>="))) == 0
