"""A fast reader for VNN-LIB 1.0 as written in VNN-COMP (2021-2024).

Accepted language
-----------------
* ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)`` (and the older
  ``(declare-fun X_i () Real)``). ``X_i`` is the i-th entry of the flattened
  (C order) input, ``Y_j`` of the output; the indices must be 0..n-1.
* ``(assert F)``; several asserts are a conjunction.
* ``F`` is a comparison ``(op t1 t2 ...)`` with ``op`` one of ``<= >= < > =``
  (chains like ``(<= 0 X_0 1)`` are pairwise conjunctions), or
  ``(and F...)`` / ``(or F...)`` nested to any depth.
* Terms are numbers (``3``, ``-0.5``, ``1e-3``), variables and
  ``(+ t...)``, ``(- t)``, ``(- t t...)``, ``(* c... t)`` and ``(/ t c...)``
  with constant factors and divisors: linear, with constants and variables
  on either side of a comparison.
* ``;`` comments; ``check-sat``, ``get-model``, ``exit``, ``set-logic``,
  ``set-info`` and ``set-option`` commands are accepted and ignored.

Every comparison must mention only inputs or only outputs.

How it is fast
--------------
Comments are blanked with one regex (which keeps every line and every column
before a ``;``), the text is split into tokens with one ``re.findall``, and an
s-expression reader with an explicit stack reduces each ``( ... )`` as it
closes: comparisons become :class:`~verifier.spec._build.Atom`, and/or become
DNF (see :mod:`verifier.spec._build`). Lists hold token *indices*; a token's
line and column are computed only when an error is reported.
"""
from __future__ import annotations

import re
from itertools import islice
from typing import NamedTuple

from verifier.errors import PropertyError
from verifier.spec._build import (MAX_DISJUNCTS, Atom, Chunk, Dnf, Source, Variables,
                                  build_property, compare, conjoin, disjoin)
from verifier.spec.property import Property

_COMMENT = re.compile(r";[^\n]*")
# A token is "(", ")", an atom, or one whole command of the two shapes that make
# up nearly all of a VNN-COMP file, "(assert (<= X_3 0.5))" and
# "(declare-const X_3 Real)": reading those in one piece halves the parse time.
# findall gives (op, a, b, name, sort, token): op/a/b for a whole assert,
# name/sort for a whole declaration, token for anything else.
_TOKEN = re.compile(r"\(\s*assert\s*\(\s*([<>]=?)\s+([^\s()]+)\s+([^\s()]+)\s*\)\s*\)"
                    r"|\(\s*declare-const\s+([^\s()]+)\s+([^\s()]+)\s*\)"
                    r"|([()]|[^\s()]+)")
# (strict, upper) of each comparison: upper for <= and <, strict for < and >
_COMPARISONS = {"<=": (False, True), "<": (True, True), ">=": (False, False), ">": (True, False)}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_VAR_NAME = re.compile(r"([XY])_(\d+)")

_IGNORED = frozenset({"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"})
_UNSUPPORTED = frozenset({"not", "=>", "xor", "ite", "distinct", "let", "exists", "forall",
                          "abs", "max", "min"})
_OPERATORS = "and, or, <=, >=, <, >, =, +, -, *, /"


class _Source(Source):
    """Maps locations to (line, column) on demand.

    A location is a token index, or ``(index, symbol)`` for a part of a
    whole-command token: ``symbol`` is the atom to point at, None for the
    comparison inside ``(assert (...))``.
    """

    def __init__(self, text: str, path):
        self.text = text
        self.path = None if path is None else str(path)

    def position(self, loc) -> tuple[int, int]:
        index, symbol = loc if type(loc) is tuple else (loc, False)
        match = next(islice(_TOKEN.finditer(self.text), index, None), None)
        if match is None:
            offset = len(self.text)
        else:
            offset = match.start()
            if symbol is None:
                offset += match.group().index("(", 1)
            elif symbol:
                inner = re.search(r"(?<![^\s()])" + re.escape(symbol) + r"(?![^\s()])",
                                  match.group())
                offset += inner.start() if inner else 0
        line = self.text.count("\n", 0, offset) + 1
        column = offset - self.text.rfind("\n", 0, offset)
        return line, column

    @staticmethod
    def order(loc):
        return (loc[0], 1) if type(loc) is tuple else (loc, 0)

    def error(self, message: str, loc=None) -> PropertyError:
        if loc is None:
            return PropertyError(message, self.path)
        line, column = self.position(loc)
        return PropertyError(message, self.path, line, column)


class _Lin:
    """A linear term ``sum(coefs[v] * v) + const`` and where it starts."""

    __slots__ = ("coefs", "const", "loc")

    def __init__(self, coefs, const, loc):
        self.coefs = coefs
        self.const = const
        self.loc = loc


class _Command(NamedTuple):
    """A top-level command: ``assert`` (value: its formula) or a declaration."""

    name: str
    value: object
    loc: object


class _Empty:
    """``()``: only meaningful in ``(declare-fun X_0 () Real)``."""

    __slots__ = ("loc",)

    def __init__(self, loc):
        self.loc = loc


class _Reader:
    def __init__(self, text: str, path, max_disjuncts: int):
        if ";" in text:
            text = _COMMENT.sub("", text)
        if not text.isascii():     # float() would read non-ASCII digits
            bad = next(i for i, ch in enumerate(text) if not ch.isascii())
            line = text.count("\n", 0, bad) + 1
            raise PropertyError(f"non-ASCII character {text[bad]!r}", None if path is None
                                else str(path), line, bad - text.rfind("\n", 0, bad))
        self.source = _Source(text, path)
        self.tokens = _TOKEN.findall(text)     # see _TOKEN; [5] is a plain token
        self.vars: dict[str, int] = {}
        self.inputs: dict[int, int] = {}      # index -> token index of the name
        self.outputs: dict[int, int] = {}
        self.asserts: list = []
        self.limit = max_disjuncts

    # -- errors and operands -------------------------------------------------

    def error(self, message: str, loc) -> PropertyError:
        return self.source.error(message, loc)

    def describe(self, node) -> str:
        if type(node) is int:
            return repr(self.tokens[node][5])
        if type(node) is _Command:
            return f"a ({node.name} ...) command"
        if type(node) is _Lin:
            return "an arithmetic term"
        if type(node) is _Empty:
            return "()"
        return "a formula"

    def number(self, text: str, loc) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        # float() also reads "inf", "nan" and "1_0": not VNN-LIB numbers
        if value is None or value - value != 0.0 or "_" in text:
            raise self.bad_number(text, loc)
        return value

    def bad_number(self, text: str, loc) -> PropertyError:
        if _NUMBER.fullmatch(text):
            return self.error(f"constant {text} is out of the range of float64", loc)
        if text[0] in "+-.0123456789":
            return self.error(f"malformed number {text!r}", loc)
        if _VAR_NAME.fullmatch(text):
            return self.error(f"undeclared variable {text} "
                              f"(declare it with (declare-const {text} Real))", loc)
        return self.error(f"unknown symbol {text!r}: expected a number or a declared "
                          "variable X_i / Y_j", loc)

    def term(self, node) -> _Lin:
        if type(node) is int:
            var = self.vars.get(self.tokens[node][5])
            if var is not None:
                return _Lin({var: 1.0}, 0.0, node)
            return _Lin({}, self.number(self.tokens[node][5], node), node)
        if type(node) is _Lin:
            return node
        raise self.error(f"expected a number, a variable or an arithmetic term, "
                         f"found {self.describe(node)}", node.loc)

    def formula(self, node):
        if type(node) is Atom or type(node) is Dnf:
            return node
        loc = node if type(node) is int else node.loc
        raise self.error(f"expected a comparison or (and ...)/(or ...), "
                         f"found {self.describe(node)}", loc)

    def arity(self, node: list, at_least: int, name: str):
        if len(node) - 2 < at_least:
            raise self.error(f"'{name}' needs at least {at_least} argument"
                             f"{'s' if at_least > 1 else ''}", node[0])

    # -- arithmetic ----------------------------------------------------------

    def plus(self, node):
        self.arity(node, 1, "+")
        coefs: dict = {}
        const = 0.0
        for child in node[2:]:
            term = self.term(child)
            const += term.const
            for v, c in term.coefs.items():
                coefs[v] = coefs.get(v, 0.0) + c
        return _Lin(coefs, const, node[0])

    def minus(self, node):
        self.arity(node, 1, "-")
        first = self.term(node[2])
        if len(node) == 3:
            return _Lin({v: -c for v, c in first.coefs.items()}, -first.const, node[0])
        coefs = dict(first.coefs)
        const = first.const
        for child in node[3:]:
            term = self.term(child)
            const -= term.const
            for v, c in term.coefs.items():
                coefs[v] = coefs.get(v, 0.0) - c
        return _Lin(coefs, const, node[0])

    def times(self, node):
        self.arity(node, 1, "*")
        factor = 1.0
        linear = None
        for child in node[2:]:
            term = self.term(child)
            if not term.coefs:
                factor *= term.const
            elif linear is None:
                linear = term
            else:
                raise self.error("nonlinear term: '*' multiplies two terms with variables; "
                                 "VNN-LIB properties must be linear", node[0])
        if linear is None:
            return _Lin({}, factor, node[0])
        return _Lin({v: c * factor for v, c in linear.coefs.items()},
                    linear.const * factor, node[0])

    def divide(self, node):
        self.arity(node, 2, "/")
        first = self.term(node[2])
        divisor = 1.0
        for child in node[3:]:
            term = self.term(child)
            if term.coefs:
                raise self.error("nonlinear term: '/' divides by a term with variables", child
                                 if type(child) is int else term.loc)
            divisor *= term.const
        if divisor == 0.0:
            raise self.error("division by zero", node[0])
        return _Lin({v: c / divisor for v, c in first.coefs.items()},
                    first.const / divisor, node[0])

    # -- comparisons and connectives -----------------------------------------

    def simple(self, op: str, a: str, b: str, loc, loc_a=None, loc_b=None):
        """``(op a b)`` with two atoms: the fast path of almost every comparison.

        ``loc_a``/``loc_b`` locate ``a``/``b`` for errors; None means the
        symbol inside the whole-command token ``loc[0]``.
        """
        strict, upper = _COMPARISONS[op]
        get = self.vars.get
        left = get(a)
        right = get(b)
        if left is not None and right is None:
            try:
                value = float(b)
            except ValueError:
                value = None
            # float() also reads "inf", "nan", "1_0": not VNN-LIB numbers
            if value is None or value - value != 0.0 or "_" in b:
                raise self.bad_number(b, (loc[0], b) if loc_b is None else loc_b)
            if upper:          # X <= value
                return Atom((left,), (1.0,), value, strict, loc, left >= 0)
            return Atom((left,), (-1.0,), -value, strict, loc, left >= 0)
        if right is not None and left is None:
            value = self.number(a, (loc[0], a) if loc_a is None else loc_a)
            if upper:          # value <= X  ->  -X <= -value
                return Atom((right,), (-1.0,), -value, strict, loc, right >= 0)
            return Atom((right,), (1.0,), value, strict, loc, right >= 0)
        loc_a = (loc[0], a) if loc_a is None else loc_a
        loc_b = (loc[0], b) if loc_b is None else loc_b
        if left is not None:   # (op Y_1 Y_0)
            return self.atom(_Lin({left: 1.0}, 0.0, loc_a), _Lin({right: 1.0}, 0.0, loc_b),
                             strict, upper, loc)
        return self.atom(_Lin({}, self.number(a, loc_a), loc_a),
                         _Lin({}, self.number(b, loc_b), loc_b), strict, upper, loc)

    def compare(self, node):
        """``(<= t1 t2 ...)``, ``(>= ...)``, ``(< ...)``, ``(> ...)``."""
        op = self.tokens[node[1]][5]
        self.arity(node, 2, op)
        loc = node[0]
        if len(node) == 4 and type(node[2]) is int and type(node[3]) is int:
            return self.simple(op, self.tokens[node[2]][5], self.tokens[node[3]][5],
                               loc, node[2], node[3])
        strict, upper = _COMPARISONS[op]
        terms = [self.term(child) for child in node[2:]]
        atoms = [self.atom(terms[k], terms[k + 1], strict, upper, loc)
                 for k in range(len(terms) - 1)]
        if len(atoms) == 1:
            return atoms[0]
        return Dnf([(Chunk(atoms),)], loc)

    def atom(self, left: _Lin, right: _Lin, strict: bool, upper: bool, loc) -> Atom:
        return compare(left.coefs, left.const, right.coefs, right.const, strict, upper, loc,
                       self.source)

    def equal(self, node):
        self.arity(node, 2, "=")
        terms = [self.term(child) for child in node[2:]]
        atoms = []
        for k in range(len(terms) - 1):
            atoms.append(self.atom(terms[k], terms[k + 1], False, True, node[0]))
            atoms.append(self.atom(terms[k], terms[k + 1], False, False, node[0]))
        return Dnf([(Chunk(atoms),)], node[0])

    def conj(self, node):
        return conjoin([self.formula(child) for child in node[2:]], node[0],
                       self.source, self.limit)

    def disj(self, node):
        self.arity(node, 1, "or")
        return disjoin([self.formula(child) for child in node[2:]], node[0],
                       self.source, self.limit)

    # -- commands ------------------------------------------------------------

    def assertion(self, node):
        if len(node) != 3:
            raise self.error("'assert' takes exactly one formula", node[0])
        return _Command("assert", self.formula(node[2]), node[0])

    def declare(self, node):
        head = self.tokens[node[1]][5]
        shape = "(declare-const NAME Real)" if head == "declare-const" \
            else "(declare-fun NAME () Real)"
        parts = node[2:]
        if head == "declare-fun":
            if len(parts) == 3 and type(parts[1]) is _Empty:
                parts = [parts[0], parts[2]]
            else:
                parts = []
        if len(parts) != 2 or type(parts[0]) is not int or type(parts[1]) is not int:
            raise self.error(f"malformed declaration: expected {shape}", node[0])
        name_loc, sort_loc = parts
        self.define(self.tokens[name_loc][5], self.tokens[sort_loc][5], name_loc, sort_loc)
        return _Command(head, None, node[0])

    def define(self, name: str, sort: str, name_loc, sort_loc) -> None:
        if sort != "Real":
            raise self.error(f"unsupported sort {sort!r}: VNN-LIB variables are Real", sort_loc)
        match = _VAR_NAME.fullmatch(name)
        if match is None:
            raise self.error(f"variable {name!r} must be named X_<i> (input) or Y_<j> (output)",
                             name_loc)
        index = int(match.group(2))
        is_input = match.group(1) == "X"
        table = self.inputs if is_input else self.outputs
        first = table.get(index)
        if first is not None:
            raise self.error(f"variable {name} is declared twice (first at line "
                             f"{self.source.position(first)[0]})", name_loc)
        table[index] = name_loc
        self.vars[name] = index if is_input else ~index

    def ignored(self, node):
        return _Command(self.tokens[node[1]][5], None, node[0])

    def version2(self, node):
        raise self.error("VNN-LIB 2.0 command in a VNN-LIB 1.0 file; a VNN-LIB 2.0 file must "
                         "start with (vnnlib-version <2.0>)", node[1])

    # -- the reader ----------------------------------------------------------

    def reduce(self, node: list):
        if len(node) == 1:
            return _Empty(node[0])
        head = node[1]
        if type(head) is not int:
            raise self.error("expected an operator or a command name after '('", node[0])
        handler = _HANDLERS.get(self.tokens[head][5])
        if handler is None:
            name = self.tokens[head][5]
            if name in _UNSUPPORTED:
                raise self.error(f"unsupported operator {name!r} (VNN-LIB 1.0 properties "
                                 f"use {_OPERATORS})", head)
            raise self.error(f"unknown operator or command {name!r}", head)
        return handler(self, node)

    def read(self) -> None:
        stack: list = []
        current = None
        reduce = self.reduce
        simple = self.simple
        asserts = self.asserts
        for index, (op, a, b, name, sort, token) in enumerate(self.tokens):
            if op:          # a whole (assert (op a b))
                atom = simple(op, a, b, (index, None))
                if current is None:
                    asserts.append(atom)
                else:
                    current.append(_Command("assert", atom, index))
            elif name:      # a whole (declare-const name sort)
                self.define(name, sort, (index, name), (index, sort))
                if current is not None:
                    current.append(_Command("declare-const", None, index))
            elif token == "(":
                stack.append(current)
                current = [index]
            elif token == ")":
                if current is None:
                    raise self.error("unbalanced parentheses: ')' without a matching '('", index)
                value = reduce(current)
                current = stack.pop()
                if current is not None:
                    current.append(value)
                elif type(value) is _Command:
                    if value.name == "assert":
                        asserts.append(value.value)
                else:
                    raise self.error(f"expected a command such as (assert ...) or "
                                     f"(declare-const ...) at the top level, found "
                                     f"{self.describe(value)}", value.loc)
            elif current is None:
                raise self.error(f"unexpected {token!r} outside parentheses", index)
            else:
                current.append(index)
        if current is not None:
            outermost = stack[1][0] if len(stack) > 1 else current[0]
            raise self.error("unbalanced parentheses: this '(' is never closed", outermost)

    def variables(self) -> Variables:
        for table, letter, kind in ((self.inputs, "X", "input"), (self.outputs, "Y", "output")):
            if not table:
                raise self.error(f"no {kind} variables: declare {letter}_0, {letter}_1, ... "
                                 f"with (declare-const {letter}_0 Real)", None)
            if len(table) != max(table) + 1:
                missing = min(set(range(max(table) + 1)) - set(table))
                raise self.error(f"{letter}_{max(table)} is declared but {letter}_{missing} "
                                 f"is not: {kind}s must be {letter}_0 .. {letter}_<n-1>",
                                 table[max(table)])
        inputs = self.inputs
        return Variables(len(inputs), len(self.outputs), lambda i: f"X_{i}",
                         lambda i: inputs[i])


_HANDLERS = {
    **{op: _Reader.compare for op in _COMPARISONS},
    "=": _Reader.equal,
    "and": _Reader.conj,
    "or": _Reader.disj,
    "+": _Reader.plus,
    "-": _Reader.minus,
    "*": _Reader.times,
    "/": _Reader.divide,
    "assert": _Reader.assertion,
    "declare-const": _Reader.declare,
    "declare-fun": _Reader.declare,
    "vnnlib-version": _Reader.version2,
    "declare-network": _Reader.version2,
    **{name: _Reader.ignored for name in _IGNORED},
}


def parse_vnnlib1(text: str, path=None, max_disjuncts: int = MAX_DISJUNCTS) -> Property:
    """Parse VNN-LIB 1.0 text into the normal form (see the module docstring)."""
    reader = _Reader(text, path, max_disjuncts)
    reader.read()
    variables = reader.variables()
    formula = conjoin(reader.asserts, None, reader.source, max_disjuncts)
    return build_property(formula, variables, reader.source, path)
