"""Property-based tests: random formulas against their normal form, round trips.

Random VNN-LIB 1.0 formulas with nested and/or, linear terms in many
spellings, constants on either side and strict comparisons are parsed; the
normal form must agree with a direct evaluation of the formula at random
points (small integers and halves, so that points often lie exactly on a
boundary and strictness matters). Then parse(write(p)) must equal p.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.spec import (Case, InputRegion, OutputPolytope, Property, parse_vnnlib,
                           write_vnnlib)

OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
       ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "=": lambda a, b: a == b}


class FormulaGen:
    """Random formulas as (text, evaluate(x, y) -> bool) pairs."""

    def __init__(self, rng: np.random.Generator, n_in: int, n_out: int):
        self.rng, self.n_in, self.n_out = rng, n_in, n_out

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def num(self, value: float) -> str:
        """A number in one of the spellings VNN-COMP files use."""
        if float(value).is_integer() and self.rng.random() < 0.5:
            return str(int(value))
        return self.choice([repr(float(value)), f"{value:.3f}", f"{value:e}"])

    def term(self, depth: int):
        """(text, fn(y), has_var) for a random linear term over Y."""
        rng = self.rng
        kind = self.choice(["var", "var", "const"] if depth == 0 else
                           ["var", "const", "scale", "neg", "minus", "plus", "div"])
        if kind == "var":
            j = int(rng.integers(self.n_out))
            return f"Y_{j}", lambda y, j=j: y[j], True
        if kind == "const":
            c = self.choice([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
            return self.num(c), lambda y, c=c: c, False
        if kind in ("scale", "div"):
            text, fn, has = self.term(depth - 1)
            c = self.choice([-2.0, -1.0, 0.5, 2.0, 4.0])
            if kind == "div":
                return f"(/ {text} {self.num(c)})", lambda y: fn(y) / c, has
            if rng.random() < 0.5:
                return f"(* {self.num(c)} {text})", lambda y: c * fn(y), has
            return f"(* {text} {self.num(c)})", lambda y: fn(y) * c, has
        if kind == "neg":
            text, fn, has = self.term(depth - 1)
            return f"(- {text})", lambda y: -fn(y), has
        parts = [self.term(depth - 1) for _ in range(int(rng.integers(2, 4)))]
        texts = " ".join(p[0] for p in parts)
        has = any(p[2] for p in parts)
        if kind == "minus":
            return (f"(- {texts})", lambda y: parts[0][1](y) - sum(p[1](y) for p in parts[1:]),
                    has)
        return f"(+ {texts})", lambda y: sum(p[1](y) for p in parts), has

    def output_atom(self):
        op = self.choice(["<=", "<", ">=", ">", "<=", ">=", "="])
        lhs, lf, lhas = self.term(int(self.rng.integers(3)))
        rhs, rf, rhas = self.term(int(self.rng.integers(3)))
        if not (lhas or rhas):
            j = int(self.rng.integers(self.n_out))
            lhs, lf = f"(+ Y_{j} {lhs})", (lambda y, j=j, f=lf: y[j] + f(y))
        check = OPS[op]
        return f"({op} {lhs} {rhs})", lambda x, y: check(lf(y), rf(y))

    def input_atom(self):
        """An input bound that 0 satisfies strictly (regions never empty) or a row."""
        rng = self.rng
        i = int(rng.integers(self.n_in))
        if self.n_in > 1 and rng.random() < 0.3:         # a linear row: A x <= b
            k = (i + 1 + int(rng.integers(self.n_in - 1))) % self.n_in
            a, b = self.choice([-2.0, -1.0, 1.0, 3.0]), self.choice([-1.0, 0.5, 1.0])
            c = self.choice([-1.0, 0.0, 1.0, 2.0])
            op = self.choice(["<=", "<", ">=", ">"])
            text = f"({op} (+ (* {self.num(a)} X_{i}) (* X_{k} {self.num(b)})) {self.num(c)})"
            check = OPS[op]
            return text, lambda x, y: check(a * x[i] + b * x[k], c)
        a = self.choice([1.0, 1.0, -1.0, 2.0, -3.0])
        op = self.choice(["<=", "<", ">=", ">"])
        # a*x OP c with 0 strictly on the satisfied side
        c = self.choice([0.5, 1.0, 2.0]) * (1.0 if op in ("<=", "<") else -1.0)
        var = f"X_{i}" if a == 1.0 else f"(* {self.num(a)} X_{i})"
        check = OPS[op]
        if rng.random() < 0.5:
            text = f"({op} {var} {self.num(c)})"
        else:                                             # constant on the left
            flipped = {"<=": ">=", "<": ">", ">=": "<=", ">": "<"}[op]
            text = f"({flipped} {self.num(c)} {var})"
        return text, lambda x, y: check(a * x[i], c)

    def formula(self, depth: int, width: int):
        if depth == 0 or self.rng.random() < 0.25:
            return self.input_atom() if self.rng.random() < 0.3 else self.output_atom()
        op = "and" if self.rng.random() < 0.5 else "or"
        count = int(self.rng.integers(1, (2 if op == "and" else width) + 1))
        parts = [self.formula(depth - 1, width) for _ in range(count)]
        text = f"({op} {' '.join(p[0] for p in parts)})"
        combine = all if op == "and" else any
        return text, lambda x, y: combine(p[1](x, y) for p in parts)

    def property(self):
        lines = [f"(declare-const X_{i} Real)" for i in range(self.n_in)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(self.n_out)]
        checks = []
        for i in range(self.n_in):                       # a box for every input
            lo, hi = -float(self.rng.integers(1, 4)), float(self.rng.integers(1, 4))
            form = int(self.rng.integers(3))
            if form == 0:
                lines.append(f"(assert (<= X_{i} {self.num(hi)}))\n"
                             f"(assert (>= X_{i} {self.num(lo)}))")
            elif form == 1:
                lines.append(f"(assert (<= {self.num(lo)} X_{i} {self.num(hi)}))")
            else:                                        # strict lower bound lo - 1
                lines.append(f"(assert (and (>= {self.num(hi)} X_{i}) "
                             f"(> X_{i} {self.num(lo - 1)})))")
            checks.append(lambda x, y, i=i, lo=lo, hi=hi, form=form:
                          (lo - 1 < x[i] if form == 2 else lo <= x[i]) and x[i] <= hi)
        for _ in range(int(self.rng.integers(1, 3))):
            text, check = self.formula(3, 3)
            lines.append(f"(assert {text}) ; a random formula")
            checks.append(check)
        return "\n".join(lines), lambda x, y: all(c(x, y) for c in checks)


def _points(rng, count, size, span):
    return rng.integers(-2 * span, 2 * span + 1, size=(count, size)) / 2.0


def _unsafe(prop, X, Y):
    """Vectorised normal-form semantics at many points (strict rows strictly)."""
    def rows(values, rhs, strict):
        return np.where(strict, values < rhs, values <= rhs).all(axis=1)

    result = np.zeros(len(X), dtype=bool)
    for case in prop.cases:
        r = case.region
        inside = (rows(X, r.upper, r.strict_upper) & rows(-X, -r.lower, r.strict_lower)
                  & rows(X @ r.A.T, r.b, r.strict_A))
        hit = np.zeros(len(X), dtype=bool)
        for poly in case.unsafe:
            hit |= rows(Y @ poly.C.T, poly.d, poly.strict)
        result |= inside & hit
    return result


def test_random_formulas_agree_with_their_normal_form_and_round_trip():
    rng = np.random.default_rng(20240611)
    outcomes = np.zeros(2, dtype=int)
    for trial in range(250):
        n_in, n_out = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        text, formula = FormulaGen(rng, n_in, n_out).property()
        prop = parse_vnnlib(text)
        assert (prop.n_inputs, prop.n_outputs) == (n_in, n_out)
        X, Y = _points(rng, 60, n_in, 3), _points(rng, 60, n_out, 3)
        expected = np.array([formula(x, y) for x, y in zip(X, Y)])
        got = _unsafe(prop, X, Y)
        bad = np.flatnonzero(expected != got)
        assert not len(bad), (f"trial {trial}: at x={X[bad[0]]}, y={Y[bad[0]]} the formula "
                              f"says {expected[bad[0]]}\n{text}")
        for x, y, e in list(zip(X, Y, expected))[:8]:   # the library's own check agrees
            assert prop.is_counterexample(x, y) == e
        outcomes += np.bincount(expected.astype(int), minlength=2)
        again = parse_vnnlib(write_vnnlib(prop))
        assert again.equals(prop), f"trial {trial}: round trip changed\n{text}"
    # the points must exercise both answers, or the comparison proves little
    print("unsafe / safe points:", outcomes[::-1])
    assert outcomes.min() > 0.05 * outcomes.sum(), outcomes


# -- round trip of arbitrary normal forms (hypothesis) -------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False,
                   allow_subnormal=True)


@st.composite
def properties(draw):
    n_in = draw(st.integers(1, 3))
    n_out = draw(st.integers(1, 3))

    def matrix(rows, cols):
        return np.array(draw(st.lists(st.lists(finite, min_size=cols, max_size=cols),
                                      min_size=rows, max_size=rows)), dtype=float
                        ).reshape(rows, cols)

    def flags(size):
        return np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), bool)

    cases = []
    for shift in range(draw(st.integers(1, 3))):
        bounds = np.sort(matrix(n_in, 2), axis=1)
        bounds[0] += 3e6 * shift            # regions differ, so no two cases merge
        k = draw(st.integers(0, 2)) if n_in > 1 else 0
        A = matrix(k, n_in)
        A[A == 0.0] = 1.0                   # rows with one non-zero entry are bounds
        if k and draw(st.booleans()):
            A[0] = 0.0                      # an all-zero row is a (constant) row
        region = InputRegion(bounds[:, 0], bounds[:, 1], A, matrix(1, k)[0],
                             flags(n_in) & (bounds[:, 0] < bounds[:, 1]),
                             flags(n_in) & (bounds[:, 0] < bounds[:, 1]), flags(k))
        polys = []
        for _ in range(draw(st.integers(1, 3))):
            rows = draw(st.integers(0, 3))
            polys.append(OutputPolytope(matrix(rows, n_out), matrix(1, rows)[0], flags(rows)))
        cases.append(Case(region, tuple(polys)))
    return Property(n_in, n_out, tuple(cases))


@settings(max_examples=60, deadline=None)
@given(properties())
def test_write_then_parse_gives_the_same_property(prop):
    again = parse_vnnlib(write_vnnlib(prop))
    assert again.equals(prop)


def test_random_formulas_hit_the_dnf_guard_cleanly():
    from verifier.errors import PropertyError

    body = " ".join(f"(or (<= Y_0 {i}) (>= Y_0 {i + 1}) (< Y_0 {-i}))" for i in range(12))
    text = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= 0 X_0 1))\n" \
           f"(assert (and {body}))"
    with pytest.raises(PropertyError, match="limit of 100000") as info:
        parse_vnnlib(text)
    assert (info.value.line, info.value.column) == (4, 9)
