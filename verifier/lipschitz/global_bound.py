"""Global bounds of the Lipschitz constants of a network's logits and margins.

For every node ``v`` the sweep bounds ``L_p(v)`` with
``||v(x) - v(x')||_p <= L_p(v) ||x - x'||_p`` for p = 2 and p = inf, composing
per-op bounds in topological order:

* an affine node: the certified operator norm of the longest affine chain
  ending at it (:mod:`verifier.lipschitz.norms`) times the bound of the
  chain's input; also the node's own norm times its input's bound; the
  smaller is kept (both hold);
* ``Add``: ``L(a) + L(b)``; ``Concat``: ``sqrt(sum L^2)`` in L2, ``max`` in L-inf;
* an activation: its ``sup |s'|`` times its input's bound;
* ``MaxPool``: 1 in L-inf, ``sqrt(largest window overlap)`` in L2;
* no rule for Softmax and Sign: :class:`NoLipschitzRuleError`.

At every node the two norms also bound each other: with ``d`` input and
``n`` node entries, ``L_inf <= sqrt(d) L_2`` and ``L_2 <= sqrt(n) L_inf``.

Margins ``f_y - f_j`` (and logits ``f_j``): the affine chain ending at the
output is folded into the rows ``e_y - e_j`` first, giving rows ``a`` on the
chain's input ``s``; then ``L_2 <= min(||a||_2 L_2(s), ||a||_1 L_inf(s))`` and
``L_inf <= min(||a||_1 L_inf(s), sqrt(d) ||a||_2 L_2(s))``. For a purely
linear model this is exact: ``||w_y - w_j||_2`` and ``||w_y - w_j||_1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.ir import ops
from verifier.ir.graph import Graph
from verifier.lipschitz.errors import LipschitzError, NoLipschitzRuleError
from verifier.lipschitz.norms import dual_norms, l2_norm, linf_norm, max_pool_overlap
from verifier.lipschitz.operators import CHAIN_OPS, Chain, chain_ending_at
from verifier.lipschitz.slopes import global_slope

NORMS = ("l2", "linf")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise LipschitzError(f"unknown norm {norm!r}; use one of {', '.join(NORMS)}")
    return norm


@dataclass(frozen=True, eq=False)
class GlobalLipschitz:
    """Global Lipschitz bounds of one model in one input norm.

    Attributes:
        norm: 'l2' or 'linf' (the input norm; outputs are scalars).
        margin: ``(K, K)``: ``margin[y, j]`` bounds the Lipschitz constant of
            ``f_y - f_j`` (0 on the diagonal).
        logit: ``(K,)``: bounds of each logit ``f_j``.
        node_l2, node_linf: per node of the graph, the bound of that node's
            output (in the same norm as the input) in L2 and in L-inf.
    """

    norm: str
    margin: np.ndarray
    logit: np.ndarray
    node_l2: np.ndarray
    node_linf: np.ndarray


def _cone(graph: Graph) -> set[int]:
    seen, stack = {graph.output}, [graph.output]
    while stack:
        for j in graph.nodes[stack.pop()].inputs:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def check_rules(graph: Graph, has_rule, what: str) -> None:
    """Raise one NoLipschitzRuleError naming every node of the output's cone
    that ``has_rule(node)`` rejects."""
    cone = _cone(graph)
    missing = [(node.name or f"#{i}", type(node).__name__)
               for i, node in enumerate(graph.nodes[1:], start=1)
               if i in cone and not has_rule(node)]
    if missing:
        raise NoLipschitzRuleError(missing, what)


def _has_global_rule(node) -> bool:
    if isinstance(node, ops.ACTIVATIONS):
        return global_slope(node) is not None
    return not isinstance(node, ops.Softmax)


def _chain_bounds(graph, i, l2, linf):
    """(L2, L-inf) of an affine node: via its own chain and its input."""
    chain = chain_ending_at(graph, i)
    start = graph.nodes[chain[0]].inputs[0]
    long_chain = Chain.of(graph, chain)
    single = Chain.of(graph, [i])
    j = graph.nodes[i].inputs[0]
    bound_l2 = min(l2_norm(long_chain) * l2[start], l2_norm(single) * l2[j])
    bound_linf = min(linf_norm(long_chain) * linf[start], linf_norm(single) * linf[j])
    return bound_l2, bound_linf


def node_bounds(graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """Per node, Lipschitz bounds (L2, L-inf) of its output w.r.t. the input."""
    check_rules(graph, _has_global_rule, "a global Lipschitz bound")
    cone = _cone(graph)
    count = len(graph.nodes)
    l2, linf = np.full(count, np.inf), np.full(count, np.inf)
    l2[0] = linf[0] = 1.0
    root_d = np.sqrt(graph.input_size)
    for i, node in enumerate(graph.nodes[1:], start=1):
        if i not in cone:
            continue
        ins = node.inputs
        if isinstance(node, CHAIN_OPS):
            l2[i], linf[i] = _chain_bounds(graph, i, l2, linf)
        elif isinstance(node, ops.Add):
            l2[i], linf[i] = l2[ins[0]] + l2[ins[1]], linf[ins[0]] + linf[ins[1]]
        elif isinstance(node, ops.Concat):
            l2[i] = np.sqrt(np.sum(l2[list(ins)] ** 2))
            linf[i] = np.max(linf[list(ins)])
        elif isinstance(node, ops.MaxPool):
            in_shape = graph.nodes[ins[0]].shape
            l2[i] = np.sqrt(max_pool_overlap(node, in_shape)) * l2[ins[0]]
            linf[i] = linf[ins[0]]
        else:  # an activation (check_rules rejected the rest)
            slope = global_slope(node)
            l2[i], linf[i] = slope * l2[ins[0]], slope * linf[ins[0]]
        linf[i] = min(linf[i], root_d * l2[i])
        l2[i] = min(l2[i], np.sqrt(node.size) * linf[i])
    return l2, linf


def folded_rows(graph: Graph, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows ``(R, K)`` on the output, pulled back through the affine chain
    that ends at the output: ``(rows A, s)`` with ``s`` the chain's input node."""
    chain = chain_ending_at(graph, graph.output)
    if not chain:
        return np.asarray(rows, dtype=np.float64), graph.output
    start = graph.nodes[chain[0]].inputs[0]
    return Chain.of(graph, chain).rmatvec(rows), start


def row_bounds(norm, rows_on_start, l2_start, linf_start, input_size) -> np.ndarray:
    """Lipschitz bounds (in ``norm``) of ``x -> a·v_s(x)`` per row ``a``."""
    by_l2 = dual_norms(rows_on_start, "l2") * l2_start
    by_linf = dual_norms(rows_on_start, "linf") * linf_start
    if norm == "l2":
        return np.minimum(by_l2, by_linf)
    return np.minimum(by_linf, np.sqrt(input_size) * by_l2)


def global_lipschitz(graph: Graph, norm: str = "l2") -> GlobalLipschitz:
    """Global Lipschitz bounds of every logit and every margin ``f_y - f_j``."""
    check_norm(norm)
    l2, linf = node_bounds(graph)
    k = graph.output_size
    logit_rows, start = folded_rows(graph, np.eye(k))

    def bound(rows):
        return row_bounds(norm, rows, l2[start], linf[start], graph.input_size)

    margin = np.stack([bound(logit_rows[y][None, :] - logit_rows) for y in range(k)])
    np.fill_diagonal(margin, 0.0)
    return GlobalLipschitz(norm, margin, bound(logit_rows), l2, linf)
