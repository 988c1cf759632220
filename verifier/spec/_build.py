"""From linear atoms under and/or to the normal form (shared by both readers).

A reader turns every comparison into an :class:`Atom` ``sum(c_k v_k) <= rhs``
(``<`` when strict) and every ``and``/``or`` into a formula in disjunctive
normal form (DNF) with :func:`conjoin` and :func:`disjoin`, bottom-up as the
expressions close, so no recursion is needed at any nesting depth.

DNF and its guard
-----------------
A formula in DNF is a list of *terms* (conjunctions). A term is a tuple of
:class:`Chunk` objects, lists of atoms that are shared, not copied, between
the terms they occur in: ``(and BOX (or P1 P2))`` gives the terms
``(BOX, P1)`` and ``(BOX, P2)`` with one BOX. ``or`` concatenates term lists,
``and`` takes their cartesian product, whose size is the product of the
sizes: nested alternations of ``and``/``or`` grow exponentially. Every
``and``/``or`` (and the implicit ``and`` of the top-level asserts) checks the
number of terms it would produce against ``max_disjuncts``
(:data:`MAX_DISJUNCTS` by default) *before* building them and raises a
:class:`PropertyError` at that expression otherwise.

Grouping
--------
Each final term is split into its input atoms (the input region: atoms with
one non-zero coefficient become box bounds, the rest rows of ``A x <= b``) and its
output atoms (one unsafe polytope). Terms with the same input region, by
value, form one :class:`Case`; cases keep the order in which their regions
first occur and polytopes the order of their terms. Within a conjunction the
rows of the children with a single disjunct come first (in text order), then
those of the multiplied-out children.

Variables are integers: input ``X_i`` is ``i``, output ``Y_j`` is ``~j``
(``-j - 1``), so the sign tells the kind.
"""
from __future__ import annotations

from fractions import Fraction
from itertools import chain, product

import numpy as np

from verifier.errors import PropertyError
from verifier.spec.property import Case, InputRegion, OutputPolytope, Property

#: Default limit on the number of disjuncts (DNF terms) of a property.
MAX_DISJUNCTS = 100_000


class Source:
    """Where atoms came from: turns a location into a PropertyError.

    Readers subclass it; ``loc`` is whatever the reader stores in atoms
    (a token index, a line number). Larger ``loc`` means later in the text.
    """

    path: str | None = None

    @staticmethod
    def order(loc):
        """A sort key for locations (later in the text is larger)."""
        return loc

    def error(self, message: str, loc=None) -> PropertyError:
        return PropertyError(message, self.path)


class Atom:
    """``sum(coefs[k] * v[vars[k]]) <= rhs`` (``<`` if ``strict``).

    An input atom with exactly one non-zero coefficient is a plain bound:
    ``bound_var`` is its variable and ``bound_value`` the bound it implies
    (``bound_upper`` tells which side); otherwise ``bound_var`` is -1 and the
    atom becomes a row of ``A x <= b`` (rows with two or more non-zero
    coefficients, or none).
    """

    __slots__ = ("vars", "coefs", "rhs", "strict", "loc", "is_input",
                 "bound_var", "bound_upper", "bound_value")

    def __init__(self, vars_, coefs, rhs, strict, loc, is_input):
        self.vars = vars_
        self.coefs = coefs
        self.rhs = rhs
        self.strict = strict
        self.loc = loc
        self.is_input = is_input
        self.bound_var = -1
        if is_input:
            if len(vars_) == 1:
                var, coef = vars_[0], coefs[0]
            else:
                nonzero = [(v, c) for v, c in zip(vars_, coefs) if c != 0.0]
                var, coef = nonzero[0] if len(nonzero) == 1 else (-1, 0.0)
            if coef != 0.0:
                self.bound_var = var
                self.bound_upper = coef > 0.0
                self.bound_value = (rhs if coef == 1.0 else -rhs if coef == -1.0
                                    else _divide_outward(rhs, coef))


def _divide_outward(rhs: float, coef: float) -> float:
    """``rhs / coef`` rounded away from the feasible side when inexact.

    ``coef * x <= rhs`` gives ``x <= rhs/coef`` (coef > 0) or
    ``x >= rhs/coef`` (coef < 0). With ``coef = ±1`` the quotient is exact;
    otherwise it is checked with rationals and, when rounded, moved one ulp
    outwards so that the box always contains the true region (sound for
    proofs; a counterexample found in the extra ulp fails replay, it is never
    reported as a proof). An overflowing quotient is no bound at all (±inf).
    """
    value = rhs / coef
    if value - value != 0.0:         # overflow: the bound is beyond float64
        return value
    if Fraction(value) != Fraction(rhs) / Fraction(coef):
        value = float(np.nextafter(value, np.inf if coef > 0 else -np.inf))
    return value


def constant_holds(rhs: float, strict: bool) -> bool:
    """The truth of the comparison of constants ``0 <= rhs`` (``0 < rhs`` if strict)."""
    return 0.0 < rhs if strict else 0.0 <= rhs


def make_atom(coefs: dict, rhs: float, strict: bool, loc, source: Source) -> Atom:
    """An atom from ``{var: coef}``; errors on mixed kinds.

    A comparison of constants (no variable) becomes an output-side atom with
    no variable: a true one drops out of every conjunction (:class:`Chunk`),
    a false one stays as the row ``0 <= rhs`` (``0 < rhs``), which no output
    satisfies, so its conjunction is empty (the search refutes such a
    polytope before bounding anything).
    """
    if not coefs:
        return Atom((), (), rhs, strict, loc, False)
    vars_ = tuple(coefs)
    inputs = [v >= 0 for v in vars_]
    if all(inputs):
        is_input = True
    elif not any(inputs):
        is_input = False
    else:
        raise source.error("comparison mixes input (X) and output (Y) variables; "
                           "the normal form keeps input and output constraints apart", loc)
    return Atom(vars_, tuple(coefs.values()), rhs, strict, loc, is_input)


def compare(left_coefs: dict, left_const: float, right_coefs: dict, right_const: float,
            strict: bool, upper: bool, loc, source: Source) -> Atom:
    """The atom of ``left OP right`` with OP ``<=``/``<`` (``upper``) or ``>=``/``>``.

    ``a <= b`` becomes ``a - b <= 0`` and ``a >= b`` becomes ``b - a <= 0``:
    the direction is never changed, and ``strict`` is kept as it is.
    """
    if upper:
        small, small_const, big, big_const = left_coefs, left_const, right_coefs, right_const
    else:
        small, small_const, big, big_const = right_coefs, right_const, left_coefs, left_const
    coefs = dict(small)
    for v, c in big.items():
        coefs[v] = coefs.get(v, 0.0) - c
    return make_atom(coefs, big_const - small_const, strict, loc, source)


class Chunk:
    """A list of atoms of one conjunction, split by kind (order kept); true
    comparisons of constants are left out."""

    __slots__ = ("inputs", "outputs")

    def __init__(self, atoms):
        self.inputs = [a for a in atoms if a.is_input]
        self.outputs = [a for a in atoms if not a.is_input
                        and (a.vars or not constant_holds(a.rhs, a.strict))]


class Dnf:
    """A formula in DNF: ``terms`` is a list of tuples of chunks."""

    __slots__ = ("terms", "loc")

    def __init__(self, terms, loc):
        self.terms = terms
        self.loc = loc


def _too_many(count: int, limit: int, what: str, loc, source: Source):
    return source.error(
        f"{what} gives at least {count} disjuncts in disjunctive normal form, more than "
        f"the limit of {limit} (nested and/or multiply out); split the property or "
        "raise max_disjuncts", loc)


def conjoin(children, loc, source: Source, limit: int) -> Dnf:
    """``(and children...)`` in DNF; children are Atoms or Dnfs."""
    atoms = []
    multi = []
    count = 1
    for child in children:
        if type(child) is Atom:
            atoms.append(child)
            continue
        terms = child.terms
        if len(terms) == 1:
            for chunk in terms[0]:
                atoms.extend(chunk.inputs)
                atoms.extend(chunk.outputs)
            continue
        count *= len(terms)
        if count > limit:
            if loc is None:    # the implicit conjunction of the top-level asserts
                raise _too_many(count, limit, "the conjunction of the asserts up to this one",
                                child.loc, source)
            raise _too_many(count, limit, "this conjunction", loc, source)
        multi.append(terms)
    prefix = (Chunk(atoms),) if atoms else ()
    if not multi:
        return Dnf([prefix], loc)
    if len(multi) == 1:
        return Dnf([prefix + term for term in multi[0]], loc)
    return Dnf([prefix + tuple(chain.from_iterable(combo)) for combo in product(*multi)], loc)


def disjoin(children, loc, source: Source, limit: int) -> Dnf:
    """``(or children...)`` in DNF; children are Atoms or Dnfs."""
    terms = []
    for child in children:
        if type(child) is Atom:
            terms.append((Chunk((child,)),))
        else:
            terms.extend(child.terms)
        if len(terms) > limit:
            raise _too_many(len(terms), limit, "this disjunction", loc, source)
    return Dnf(terms, loc)


class Variables:
    """What the builder needs to know about the declared variables."""

    def __init__(self, n_inputs: int, n_outputs: int, input_name, input_loc):
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.input_name = input_name    # i -> "X_3" / "X[0,3]"
        self.input_loc = input_loc      # i -> location of its declaration


def _region(atoms, variables: Variables, source: Source, n_regions: int):
    n = variables.n_inputs
    # side 0: upper bounds; side 1: lower bounds stored negated (-x <= -lower),
    # so that "tighter" means "smaller" for both
    best = ([float("inf")] * n, [float("inf")] * n)
    strict = ([False] * n, [False] * n)
    where = ([None] * n, [None] * n)
    rows = []
    for atom in atoms:
        v = atom.bound_var
        if v < 0:
            rows.append(atom)
            continue
        side = 0 if atom.bound_upper else 1
        value = atom.bound_value if side == 0 else -atom.bound_value
        old = best[side][v]
        if value < old:
            best[side][v] = value
            strict[side][v] = atom.strict
            where[side][v] = atom.loc
        elif value == old and atom.strict and not strict[side][v]:
            strict[side][v] = True
            where[side][v] = atom.loc
    hi = np.array(best[0], dtype=np.float64) + 0.0   # + 0.0 turns -0.0 into 0.0
    lo = -np.array(best[1], dtype=np.float64) + 0.0
    s_hi = np.array(strict[0], dtype=bool)
    s_lo = np.array(strict[1], dtype=bool)
    upper_loc, lower_loc = where
    several = (f" in one of the {n_regions} input regions (disjuncts of an 'or')"
               if n_regions > 1 else "")
    for values, side in ((lo, "lower"), (hi, "upper")):
        missing = np.flatnonzero(~np.isfinite(values))
        if len(missing):
            i = int(missing[0])
            more = f" (and {len(missing) - 1} more inputs)" if len(missing) > 1 else ""
            raise source.error(
                f"input {variables.input_name(i)} has no {side} bound{several}{more}; "
                "every input needs a finite lower and upper bound", variables.input_loc(i))
    empty = np.flatnonzero((lo > hi) | ((lo == hi) & (s_lo | s_hi)))
    if len(empty):
        i = int(empty[0])
        locs = [x for x in (lower_loc[i], upper_loc[i]) if x is not None]
        lo_op = ">" if s_lo[i] else ">="
        hi_op = "<" if s_hi[i] else "<="
        raise source.error(
            f"empty input region: {variables.input_name(i)} {lo_op} {float(lo[i])!r} and "
            f"{variables.input_name(i)} {hi_op} {float(hi[i])!r}{several}",
            max(locs, key=source.order) if locs else None)
    A = np.zeros((len(rows), n))
    for k, atom in enumerate(rows):
        A[k, list(atom.vars)] = atom.coefs
    b = np.array([atom.rhs for atom in rows], dtype=np.float64) + 0.0
    strict_A = np.array([atom.strict for atom in rows], dtype=bool)
    for array in (lo, hi, s_lo, s_hi, A, b, strict_A):
        array.setflags(write=False)
    return InputRegion(lo, hi, A, b, s_lo, s_hi, strict_A)


def _region_key(region: InputRegion):
    return tuple(getattr(region, name).tobytes()
                 for name in ("lower", "upper", "A", "b",
                              "strict_lower", "strict_upper", "strict_A"))


def _polytopes(output_lists, n_outputs: int):
    """One OutputPolytope per list of output atoms, sharing one array."""
    total = sum(len(atoms) for atoms in output_lists)
    C = np.zeros((total, n_outputs))
    rhs = []
    strict = []
    rows = []
    cols = []
    vals = []
    r = 0
    for atoms in output_lists:
        for atom in atoms:
            for v, c in zip(atom.vars, atom.coefs):
                rows.append(r)
                cols.append(~v)
                vals.append(c)
            rhs.append(atom.rhs)
            strict.append(atom.strict)
            r += 1
    if vals:
        np.add.at(C, (np.array(rows), np.array(cols)), np.array(vals, dtype=np.float64))
    d = np.array(rhs, dtype=np.float64) + 0.0
    s = np.array(strict, dtype=bool)
    for array in (C, d, s):
        array.setflags(write=False)
    result = []
    start = 0
    for atoms in output_lists:
        stop = start + len(atoms)
        result.append(OutputPolytope(C[start:stop], d[start:stop], s[start:stop]))
        start = stop
    return result


def build_property(formula, variables: Variables, source: Source, path=None) -> Property:
    """Group the DNF terms of the whole property into cases."""
    if type(formula) is Atom:
        formula = conjoin([formula], None, source, MAX_DISJUNCTS)
    groups: dict = {}        # key of input chunks -> [input chunks, [output atom lists]]
    for term in formula.terms:
        key = tuple(id(chunk) for chunk in term if chunk.inputs)
        group = groups.get(key)
        if group is None:
            group = groups[key] = [[chunk for chunk in term if chunk.inputs], []]
        group[1].append([atom for chunk in term for atom in chunk.outputs])
    cases: dict = {}         # region key -> [region, [output atom lists]]
    for chunks, outputs in groups.values():
        atoms = [atom for chunk in chunks for atom in chunk.inputs]
        region = _region(atoms, variables, source, len(groups))
        key = _region_key(region)
        entry = cases.get(key)
        if entry is None:
            cases[key] = [region, outputs]
        else:
            entry[1].extend(outputs)
    all_outputs = [atoms for _, outputs in cases.values() for atoms in outputs]
    polytopes = iter(_polytopes(all_outputs, variables.n_outputs))
    built = tuple(Case(region, tuple(next(polytopes) for _ in outputs))
                  for region, outputs in cases.values())
    return Property(variables.n_inputs, variables.n_outputs, built,
                    None if path is None else str(path))
