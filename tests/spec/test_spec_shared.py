"""Real VNN-COMP properties (../shared/vnncomp): hand-counted facts, and all parse.

Skipped when ../shared is absent.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import require_shared
from verifier.spec import load_property, parse_vnnlib, robustness_label, write_vnnlib

# (benchmark, inputs, outputs) of every property in the shared benchmarks
SIZES = {"acasxu": (5, 5), "mnist_fc": (784, 10), "oval21": (3072, 10), "eran": (784, 10)}

_BOUND = re.compile(r"^\(assert \((<=|>=) X_(\d+) (\S+)\)\)$", re.M)


def test_acasxu_prop_6_has_two_input_regions():
    prop = load_property(require_shared("vnncomp", "acasxu", "vnnlib", "prop_6.vnnlib"))
    assert (prop.n_inputs, prop.n_outputs, len(prop.cases)) == (5, 5, 2)
    first, second = prop.cases
    # the two boxes differ only in X_1 (the sign of the angle), copied from the file
    assert first.region.lower.tolist() == [-0.129289109, 0.11140846, -0.499999896, -0.5, -0.5]
    assert first.region.upper.tolist() == [0.700434925, 0.499999896, -0.499204121, 0.5, 0.5]
    assert (second.region.lower[1], second.region.upper[1]) == (-0.499999896, -0.11140846)
    assert np.array_equal(np.delete(first.region.lower, 1), np.delete(second.region.lower, 1))
    # each region has the same 4 unsafe disjuncts: Y_k <= Y_0 for k = 1..4
    for case in prop.cases:
        assert [p.rows for p in case.unsafe] == [1, 1, 1, 1]
        rows = np.vstack([p.C for p in case.unsafe])
        expected = np.zeros((4, 5))
        expected[:, 0] = -1.0
        expected[np.arange(4), np.arange(1, 5)] = 1.0
        assert np.array_equal(rows, expected)
        assert all(p.d.tolist() == [0.0] and not p.strict.any() for p in case.unsafe)


def test_acasxu_prop_1_is_a_single_row_and_prop_7_two_polytopes_of_three_rows():
    folder = require_shared("vnncomp", "acasxu", "vnnlib")
    prop1 = load_property(folder / "prop_1.vnnlib")
    (case,) = prop1.cases
    (poly,) = case.unsafe
    assert poly.C.tolist() == [[-1.0, 0.0, 0.0, 0.0, 0.0]]        # Y_0 >= 3.9911...
    assert poly.d.tolist() == [-3.991125645861615]
    assert case.region.lower.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    assert case.region.upper.tolist() == [0.679857769, 0.5, 0.5, 0.5, -0.45]
    prop7 = load_property(folder / "prop_7.vnnlib")
    assert [p.rows for p in prop7.cases[0].unsafe] == [3, 3]


def test_a_mnist_fc_property_has_784_bounded_inputs_and_9_disjuncts():
    path = require_shared("vnncomp", "mnist_fc", "vnnlib", "prop_0_0.03.vnnlib")
    prop = load_property(path)
    assert (prop.n_inputs, prop.n_outputs, len(prop.cases)) == (784, 10, 1)
    region = prop.cases[0].region
    assert np.all(np.isfinite(region.lower)) and np.all(np.isfinite(region.upper))
    assert region.A.shape == (0, 784)
    # lines 801-802, 2001-2002 and 3150-3151 of the file
    assert (region.lower[0], region.upper[0]) == (0.0, 0.029999999329447746)
    assert (region.lower[400], region.upper[400]) == (0.9621568918228149, 1.0)
    assert (region.lower[783], region.upper[783]) == (0.0, 0.029999999329447746)
    assert len(prop.cases[0].unsafe) == 9 and prop.n_rows == 9
    assert robustness_label(prop) == 4                            # "label: 4" in the header


def test_an_eran_property_box():
    path = require_shared("vnncomp", "eran", "specs", "mnist",
                          "mnist_spec_idx_1013_eps_0.01500.vnnlib")
    prop = load_property(path)
    region = prop.cases[0].region
    assert (prop.n_inputs, prop.n_outputs, len(prop.cases)) == (784, 10, 1)
    assert (region.lower[0], region.upper[0]) == (0.0, 0.015)
    assert (region.lower[400], region.upper[400]) == (0.49480397, 0.52480394)
    assert region.width.max() == pytest.approx(0.03, abs=1e-7)
    assert region.width.min() == pytest.approx(0.015, abs=1e-7)
    assert robustness_label(prop) == 9 and prop.n_disjuncts == 9


def test_an_oval21_property():
    path = require_shared("vnncomp", "oval21", "vnnlib",
                          "cifar_base_kw-img876-eps0.024836601307189544.vnnlib")
    prop = load_property(path)
    region = prop.cases[0].region
    assert (prop.n_inputs, prop.n_outputs) == (3072, 10)
    assert (region.lower[0], region.upper[0]) == (-0.5230211019515991, -0.30225130915641785)
    assert (region.lower[3071], region.upper[3071]) == (-0.590210497379303, -0.3694407343864441)
    assert robustness_label(prop) == 4


def test_every_shared_property_parses_and_round_trips():
    root = require_shared("vnncomp")
    files = sorted(p for p in root.glob("*/**/*.vnnlib*")
                   if p.name.endswith((".vnnlib", ".vnnlib.gz")))
    assert len(files) >= 100
    checked_boxes = 0
    for number, path in enumerate(files):
        text = path.read_text() if path.suffix == ".vnnlib" else None
        prop = load_property(path)
        benchmark = path.relative_to(root).parts[0]
        assert (prop.n_inputs, prop.n_outputs) == SIZES[benchmark], path
        prop.check_sizes(*SIZES[benchmark])
        assert prop.n_disjuncts >= 1 and prop.n_rows >= 1, path
        if number % 10 == 0 or len(prop.cases) > 1:     # a sample, to keep this quick
            assert parse_vnnlib(write_vnnlib(prop)).equals(prop), path
        if text is not None and len(prop.cases) == 1:
            # an independent reading: every top-level "(assert (<= X_i c))" line
            lower = np.full(prop.n_inputs, -np.inf)
            upper = np.full(prop.n_inputs, np.inf)
            for op, index, value in _BOUND.findall(text):
                if op == "<=":
                    upper[int(index)] = min(upper[int(index)], float(value))
                else:
                    lower[int(index)] = max(lower[int(index)], float(value))
            region = prop.cases[0].region
            assert np.array_equal(region.lower, lower) and np.array_equal(region.upper, upper)
            checked_boxes += 1
    assert checked_boxes >= 100
