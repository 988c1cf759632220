"""VNN-LIB 2.0 through the ``vnnlib`` package, into the same normal form.

The package (PyPI ``vnnlib`` 1.0.x) parses and type-checks the text; we walk
its AST ourselves instead of using ``vnnlib.compat.transform``, which with
1.0.2 (checked in tests/spec/test_vnnlib2.py) returns one case per assert
instead of their conjunction, drops strictness (``>`` becomes ``>=``) and
rejects linear input constraints. The walk uses explicit stacks (no
recursion), and the and/or structure goes through the same DNF builder and
guard as VNN-LIB 1.0.

Supported: one ``declare-network`` with one ``declare-input`` and one
``declare-output`` (any shape; ``X[i,j]`` is flattened in C order);
comparisons ``<= < >= > ==`` and ``!=`` (read as ``<`` or ``>``), ``and``,
``or``, linear arithmetic. Hidden variables, several networks or several
inputs/outputs raise a PropertyError.
"""
from __future__ import annotations

import json
import math
import re

from verifier.errors import PropertyError
from verifier.spec._build import (MAX_DISJUNCTS, Chunk, Dnf, Source, Variables, build_property,
                                  compare, conjoin, disjoin)
from verifier.spec.property import Property

_PARSE_ERROR = re.compile(r"line (\d+), column (\d+)")


class _Source(Source):
    """Locations are line numbers (the package reports no columns)."""

    def __init__(self, text: str, path):
        self.lines = text.split("\n")
        self.path = None if path is None else str(path)

    def error(self, message: str, loc=None) -> PropertyError:
        return PropertyError(message, self.path, loc, None)

    def column_of(self, line: int, symbol: str) -> int | None:
        if symbol and 1 <= line <= len(self.lines):
            found = self.lines[line - 1].find(symbol)
            if found >= 0:
                return found + 1
        return None


def _translate(exc: Exception, source: _Source) -> PropertyError:
    """A VNNLibException (JSON report or a parse message) as a PropertyError."""
    text = str(exc)
    try:
        report = json.loads(text)
    except ValueError:
        match = _PARSE_ERROR.search(text)
        message = text.split(": ", 1)[-1] if text.startswith("Parse error") else text
        if match:  # the location goes in front once, not again in the text
            message = re.sub(r"\s*at line \d+, column \d+", "", message)
            message = re.sub(r": ''$", ": unexpected end of the file (a parenthesis is not "
                             "closed?)", message)
            return PropertyError(f"VNN-LIB 2.0: {message}", source.path,
                                 int(match.group(1)), int(match.group(2)))
        return PropertyError(f"VNN-LIB 2.0: {message}", source.path)
    errors = report.get("errors") or [{}]
    first = errors[0]
    line = first.get("line")
    column = source.column_of(line, first.get("offendingSymbol", "")) if line else None
    message = first.get("message", "invalid VNN-LIB 2.0")
    if first.get("hint"):
        message += f": {first['hint']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more errors)"
    return PropertyError(f"VNN-LIB 2.0: {message}", source.path, line, column)


def _size(shape) -> int:
    return math.prod(int(s) for s in shape)


def _flat_index(indices, shape) -> int:
    flat = 0
    for i, s in zip(indices, shape):
        flat = flat * int(s) + int(i)
    return flat


def _unravel(flat: int, shape) -> list[int]:
    out = []
    for s in reversed([int(s) for s in shape]):
        out.append(flat % s)
        flat //= s
    return out[::-1]


def _postorder(root, children_of, leaf, combine):
    """Evaluate a tree bottom-up with an explicit stack (no recursion limit).

    ``children_of(node)`` is None for a leaf, whose value is ``leaf(node)``;
    otherwise the node's value is ``combine(node, values of its children)``.
    """
    results: list = []
    stack: list = [(root, None)]
    while stack:
        node, count = stack.pop()
        if count is None:
            children = children_of(node)
            if children is None:
                results.append(leaf(node))
            else:
                stack.append((node, len(children)))
                stack.extend((child, None) for child in reversed(children))
            continue
        values = results[len(results) - count:]
        del results[len(results) - count:]
        results.append(combine(node, values))
    return results[0]


class _Walker:
    """Turns the package's AST into atoms and DNF (see _build)."""

    def __init__(self, vnnlib, source: _Source, in_name, in_shape, out_name, out_shape, limit):
        self.v = vnnlib
        self.source = source
        self.names = {in_name: (True, list(in_shape)), out_name: (False, list(out_shape))}
        self.limit = limit

    # -- arithmetic: values are (coefs, const, line) ---------------------------

    def arith_children(self, node):
        v = self.v
        if isinstance(node, (v.Var, v.Literal)):
            return None
        if isinstance(node, v.Negate):
            return [node.expr]
        if isinstance(node, v.Minus):
            return [node.head, *node.rest]
        if isinstance(node, (v.Plus, v.Multiply)):
            return list(node.args)
        raise self.source.error(f"unsupported arithmetic {node}", None)

    def arith_leaf(self, node):
        if isinstance(node, self.v.Literal):
            return {}, float(node.lexeme), node.line
        entry = self.names.get(node.name)
        if entry is None:
            raise self.source.error(f"variable {node.name} is not an input or output of the "
                                    "network", node.line)
        is_input, shape = entry
        flat = _flat_index(node.indices, shape)
        return {flat if is_input else ~flat: 1.0}, 0.0, node.line

    def arith_combine(self, node, args):
        v = self.v
        line = min((a[2] for a in args if a[2] is not None), default=None)
        if isinstance(node, v.Negate):
            coefs, const, _ = args[0]
            return {k: -c for k, c in coefs.items()}, -const, line
        if isinstance(node, v.Multiply):
            factor = 1.0
            linear = None
            for coefs, const, _ in args:
                if not coefs:
                    factor *= const
                elif linear is None:
                    linear = (coefs, const)
                else:
                    raise self.source.error("nonlinear term: '*' multiplies two terms with "
                                            "variables", line)
            if linear is None:
                return {}, factor, line
            return {k: c * factor for k, c in linear[0].items()}, linear[1] * factor, line
        sign = -1.0 if isinstance(node, v.Minus) else 1.0
        coefs = dict(args[0][0])
        const = args[0][1]
        for more, extra, _ in args[1:]:
            const += sign * extra
            for k, c in more.items():
                coefs[k] = coefs.get(k, 0.0) + sign * c
        return coefs, const, line

    def linear(self, expr):
        return _postorder(expr, self.arith_children, self.arith_leaf, self.arith_combine)

    # -- formulas: values are Atoms or Dnfs --------------------------------------

    def comparison(self, node):
        v = self.v
        (lc, lk, ll), (rc, rk, rl) = self.linear(node.lhs), self.linear(node.rhs)
        line = min((x for x in (ll, rl) if x is not None), default=None)
        for kind, strict, upper in ((v.LessEqual, False, True), (v.LessThan, True, True),
                                    (v.GreaterEqual, False, False),
                                    (v.GreaterThan, True, False)):
            if isinstance(node, kind):
                return compare(lc, lk, rc, rk, strict, upper, line, self.source)
        if isinstance(node, v.Equal):
            atoms = [compare(lc, lk, rc, rk, False, True, line, self.source),
                     compare(lc, lk, rc, rk, False, False, line, self.source)]
            return Dnf([(Chunk(atoms),)], line)
        if isinstance(node, v.NotEqual):
            return disjoin([compare(lc, lk, rc, rk, True, True, line, self.source),
                            compare(lc, lk, rc, rk, True, False, line, self.source)],
                           line, self.source, self.limit)
        raise self.source.error(f"unsupported comparison {node}", line)

    def bool_children(self, node):
        if isinstance(node, self.v.Connective):
            return list(node.args)
        if isinstance(node, self.v.Comparison):
            return None
        raise self.source.error(f"unsupported formula {node}", None)

    def bool_combine(self, node, args):
        line = min((a.loc for a in args if a.loc is not None), default=None)
        combine = conjoin if isinstance(node, self.v.And) else disjoin
        return combine(args, line, self.source, self.limit)

    def formula(self, expr):
        return _postorder(expr, self.bool_children, self.comparison, self.bool_combine)


def parse_vnnlib2(text: str, path=None, max_disjuncts: int = MAX_DISJUNCTS) -> Property:
    """Parse VNN-LIB 2.0 text (with ``(vnnlib-version <2.0>)``)."""
    import vnnlib

    source = _Source(text, path)
    try:
        query = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as exc:
        raise _translate(exc, source) from None
    networks = list(query.networks)
    if len(networks) != 1:
        raise source.error(f"the property declares {len(networks)} networks; "
                           "only single-network properties are supported")
    network = networks[0]
    inputs, outputs = list(network.inputs), list(network.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise source.error(f"network {network.name} declares {len(inputs)} inputs and "
                           f"{len(outputs)} outputs; exactly one of each is supported")
    if list(network.hidden):
        raise source.error("hidden-node variables (declare-hidden) are not supported")
    x, y = inputs[0], outputs[0]
    walker = _Walker(vnnlib, source, x.name, x.shape, y.name, y.shape, max_disjuncts)
    formulas = [walker.formula(assertion.expr) for assertion in query.assertions]
    formula = conjoin(formulas, None, source, max_disjuncts)
    x_shape = list(x.shape)

    def input_name(i: int) -> str:
        if not x_shape:
            return x.name
        return f"{x.name}[{','.join(str(k) for k in _unravel(i, x_shape))}]"

    variables = Variables(_size(x.shape), _size(y.shape), input_name, lambda i: None)
    return build_property(formula, variables, source, path)
