"""The normal form of a property: cases of (input region, unsafe output polytopes).

Semantics (GUIDE.md §4): a VNN-LIB file describes the UNSAFE set. A property
is *violated* (``sat``) iff for SOME case there is an input ``x`` in the case's
region whose output ``y = f(x)`` lies in SOME of the case's unsafe polytopes.
It *holds* (``unsat``) iff no case has such an ``x``. ``x`` and ``y`` are the
C-order (row-major) flattenings of the ONNX input and output tensors: ``X_i``
is ``x[i]`` and ``Y_j`` is ``y[j]``.

Strict inequalities
-------------------
Rows that came from ``<`` or ``>`` are kept with a ``strict`` flag; their
direction is never changed (``(> a b)`` is stored as ``b - a < 0``).

* Proofs use the closure: a strict row ``c·y < d`` is treated as
  ``c·y <= d``. The closure is a superset of the unsafe set, so showing that
  no output reaches the closure shows that none reaches the unsafe set: sound.
* Counterexamples must satisfy strict rows strictly (``c·y < d``); see
  :meth:`OutputPolytope.contains` and :meth:`Property.is_counterexample`.

The same holds on the input side (``strict_lower``, ``strict_upper``,
``strict_A``): bound propagation over the closed box is sound; a
counterexample must lie in the open side of a strict bound.

All arrays are float64 (bool for the flags) and read-only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from verifier.errors import MismatchError


def _frozen(value, dtype, ndim: int, name: str) -> np.ndarray:
    """``value`` as a read-only array of ``dtype`` with ``ndim`` axes.

    Arrays that are already read-only and of the right dtype are used as they
    are (views into one larger read-only array stay views); anything else is
    copied, so that the caller's array is never frozen behind its back.
    """
    array = np.asarray(value, dtype=dtype)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {array.shape}")
    if array.flags.writeable:
        array = array.copy()
        array.setflags(write=False)
    return array


def _flags(value, size: int, name: str) -> np.ndarray:
    if value is None:
        value = np.zeros(size, dtype=bool)
    array = _frozen(value, bool, 1, name)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {array.shape}")
    return array


def _rows_hold(values: np.ndarray, rhs: np.ndarray, strict: np.ndarray, tol: float) -> bool:
    """Every ``values[i] <= rhs[i] + tol``, strictly ``<`` where ``strict[i]``."""
    limit = rhs + tol
    return bool(np.all(np.where(strict, values < limit, values <= limit)))


@dataclass(frozen=True, eq=False)
class OutputPolytope:
    """One unsafe output set: every row of ``C @ y <= d`` holds.

    Attributes:
        C: ``(rows, n_outputs)`` coefficients.
        d: ``(rows,)`` right-hand sides.
        strict: ``(rows,)`` bool; True where the row came from ``<`` or ``>``.
            For proofs the row is read as its closure ``<=`` (sound, see the
            module docstring); a counterexample must satisfy it strictly.
    A polytope with zero rows is the whole output space.
    """

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray = None

    def __post_init__(self):
        C = _frozen(self.C, np.float64, 2, "C")
        d = _frozen(self.d, np.float64, 1, "d")
        if d.shape != (C.shape[0],):
            raise ValueError(f"d has shape {d.shape} but C has {C.shape[0]} rows")
        if not (np.all(np.isfinite(C)) and np.all(np.isfinite(d))):
            raise ValueError("C and d must be finite")
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "strict", _flags(self.strict, C.shape[0], "strict"))

    @property
    def rows(self) -> int:
        return int(self.C.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.C.shape[1])

    def contains(self, y, tol: float = 0.0) -> bool:
        """Whether output ``y`` is in this unsafe set (strict rows strictly).

        ``tol`` loosens every row to ``c·y <= d + tol`` (``< d + tol`` for
        strict rows); 0 gives the exact semantics.
        """
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        return _rows_hold(self.C @ y, self.d, self.strict, tol)


@dataclass(frozen=True, eq=False)
class InputRegion:
    """A box ``lower <= x <= upper`` intersected with ``A @ x <= b``.

    Attributes:
        lower, upper: ``(n_inputs,)``, finite, ``lower <= upper``.
        A, b: ``(k, n_inputs)`` and ``(k,)``: linear input constraints that
            are not plain bounds (k may be 0): no row has exactly one non-zero
            coefficient (such a row belongs in lower/upper; the readers put it
            there). Their feasibility is not checked here; the search
            checks it by LP (:mod:`verifier.search.plan`).
        strict_lower, strict_upper, strict_A: bool flags, True where the bound
            or row came from ``<`` or ``>`` (all False by default). Bound
            engines may ignore them (closure, sound); counterexamples must
            respect them.
    """

    lower: np.ndarray
    upper: np.ndarray
    A: np.ndarray = None
    b: np.ndarray = None
    strict_lower: np.ndarray = None
    strict_upper: np.ndarray = None
    strict_A: np.ndarray = None

    def __post_init__(self):
        lower = _frozen(self.lower, np.float64, 1, "lower")
        upper = _frozen(self.upper, np.float64, 1, "upper")
        n = lower.shape[0]
        if upper.shape != (n,):
            raise ValueError(f"lower has shape {lower.shape} but upper has {upper.shape}")
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError("input bounds must be finite")
        if np.any(lower > upper):
            raise ValueError("input region is empty: some lower bound exceeds its upper bound")
        A = np.zeros((0, n)) if self.A is None else self.A
        b = np.zeros(0) if self.b is None else self.b
        A = _frozen(A, np.float64, 2, "A")
        b = _frozen(b, np.float64, 1, "b")
        if A.shape[1] != n or b.shape != (A.shape[0],):
            raise ValueError(f"A {A.shape} and b {b.shape} do not fit {n} inputs")
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
            raise ValueError("A and b must be finite")
        single = np.flatnonzero(np.count_nonzero(A, axis=1) == 1)
        if len(single):
            raise ValueError(f"row {int(single[0])} of A has one non-zero coefficient: "
                             "a plain bound belongs in lower/upper")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "strict_lower", _flags(self.strict_lower, n, "strict_lower"))
        object.__setattr__(self, "strict_upper", _flags(self.strict_upper, n, "strict_upper"))
        object.__setattr__(self, "strict_A", _flags(self.strict_A, A.shape[0], "strict_A"))

    @property
    def n_inputs(self) -> int:
        return int(self.lower.shape[0])

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2.0

    def contains(self, x, tol: float = 0.0) -> bool:
        """Whether input ``x`` is in the region (strict constraints strictly)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return (_rows_hold(x, self.upper, self.strict_upper, tol)
                and _rows_hold(-x, -self.lower, self.strict_lower, tol)
                and _rows_hold(self.A @ x, self.b, self.strict_A, tol))


@dataclass(frozen=True, eq=False)
class Case:
    """One input region with its unsafe output sets.

    The case is violated iff some ``x`` in ``region`` has ``f(x)`` in SOME
    polytope of ``unsafe`` (a disjunction of conjunctions).
    """

    region: InputRegion
    unsafe: tuple[OutputPolytope, ...]

    def __post_init__(self):
        unsafe = tuple(self.unsafe)
        if not unsafe:
            raise ValueError("a case needs at least one unsafe polytope")
        if len({p.n_outputs for p in unsafe}) != 1:
            raise ValueError("the unsafe polytopes of a case have different output sizes")
        object.__setattr__(self, "unsafe", unsafe)

    def is_counterexample(self, x, y, tol: float = 0.0) -> bool:
        return self.region.contains(x, tol) and any(p.contains(y, tol) for p in self.unsafe)


@dataclass(frozen=True, eq=False)
class Property:
    """A property in normal form: violated iff SOME case is violated.

    Use :meth:`equals` (or :func:`properties_equal`) to compare two
    properties; ``==`` is identity because the fields hold arrays.
    """

    n_inputs: int
    n_outputs: int
    cases: tuple[Case, ...]
    path: str | None = field(default=None)

    def __post_init__(self):
        cases = tuple(self.cases)
        if not cases:
            raise ValueError("a property needs at least one case")
        for case in cases:
            if case.region.n_inputs != self.n_inputs:
                raise ValueError(f"a region has {case.region.n_inputs} inputs, "
                                 f"the property {self.n_inputs}")
            if case.unsafe[0].n_outputs != self.n_outputs:
                raise ValueError(f"a polytope has {case.unsafe[0].n_outputs} outputs, "
                                 f"the property {self.n_outputs}")
        object.__setattr__(self, "cases", cases)

    @property
    def n_disjuncts(self) -> int:
        """The number of unsafe polytopes over all cases."""
        return sum(len(case.unsafe) for case in self.cases)

    @property
    def n_rows(self) -> int:
        """The number of output rows over all polytopes of all cases."""
        return sum(p.rows for case in self.cases for p in case.unsafe)

    def check_sizes(self, n_inputs: int, n_outputs: int, model: str = "model") -> None:
        """Raise :class:`MismatchError` unless the sizes match the model's."""
        where = f"property {self.path}" if self.path else "the property"
        problems = []
        if int(n_inputs) != self.n_inputs:
            problems.append(f"{where} has {self.n_inputs} inputs (X_0..X_{self.n_inputs - 1}) "
                            f"but {model} has {_values(n_inputs, 'input')}")
        if int(n_outputs) != self.n_outputs:
            problems.append(f"{where} has {self.n_outputs} outputs (Y_0..Y_{self.n_outputs - 1}) "
                            f"but {model} has {_values(n_outputs, 'output')}")
        if problems:
            raise MismatchError("; ".join(problems))

    def is_counterexample(self, x, y, tol: float = 0.0) -> bool:
        """Whether ``(x, y)`` lies in the unsafe set (exact when ``tol == 0``).

        This checks the formula only; whether ``y == f(x)`` is the caller's
        business (replay through onnxruntime).
        """
        return any(case.is_counterexample(x, y, tol) for case in self.cases)

    def equals(self, other: "Property") -> bool:
        return properties_equal(self, other)


def _values(count, kind: str) -> str:
    """'1 output value', '3 output values'."""
    count = int(count)
    return f"{count} {kind} value{'' if count == 1 else 's'}"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def regions_equal(a: InputRegion, b: InputRegion) -> bool:
    return all(_same(getattr(a, name), getattr(b, name))
               for name in ("lower", "upper", "A", "b",
                            "strict_lower", "strict_upper", "strict_A"))


def polytopes_equal(a: OutputPolytope, b: OutputPolytope) -> bool:
    return _same(a.C, b.C) and _same(a.d, b.d) and _same(a.strict, b.strict)


def properties_equal(a: Property, b: Property) -> bool:
    """Value equality of two properties (``path`` is not compared).

    Cases, polytopes and rows are compared in order; -0.0 equals 0.0.
    """
    if (a.n_inputs, a.n_outputs, len(a.cases)) != (b.n_inputs, b.n_outputs, len(b.cases)):
        return False
    for ca, cb in zip(a.cases, b.cases):
        if not regions_equal(ca.region, cb.region) or len(ca.unsafe) != len(cb.unsafe):
            return False
        if not all(polytopes_equal(pa, pb) for pa, pb in zip(ca.unsafe, cb.unsafe)):
            return False
    return True


def robustness_label(prop: Property) -> int | None:
    """The true label ``j`` of a classification-robustness property, else None.

    Returns ``j`` when every unsafe polytope of every case is a single
    non-strict row ``y_j - y_k <= 0`` for some ``k != j`` (that is
    ``y_k >= y_j``, ``(<= Y_j Y_k)``), with one common ``j``. Strict rows
    (``y_k > y_j``) and anything else give None: the caller then knows the
    property is not a plain "the class stays j" statement.
    """
    label = None
    for case in prop.cases:
        for poly in case.unsafe:
            if poly.rows != 1 or poly.strict[0] or poly.d[0] != 0.0:
                return None
            row = poly.C[0]
            nonzero = np.flatnonzero(row)
            if len(nonzero) != 2:
                return None
            plus = [int(i) for i in nonzero if row[i] == 1.0]
            minus = [int(i) for i in nonzero if row[i] == -1.0]
            if len(plus) != 1 or len(minus) != 1:
                return None
            if label is None:
                label = plus[0]
            elif plus[0] != label:
                return None
    return label
