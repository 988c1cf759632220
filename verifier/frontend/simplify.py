"""Exact algebraic simplifications of a lowered graph.

Fewer layers make every bound pass cheaper; these rewrites change no value
(up to float64 rounding):

* ``Scale`` after ``Linear`` (scale/shift varying along the last axis only)
  is folded into the Linear's weight and bias (MatMul + Add exports);
* ``Scale`` after ``Conv`` (per output channel) is folded into the Conv
  (BatchNormalization after Conv);
* two consecutive ``Scale`` nodes become one.

Every fold records what it hides (:class:`verifier.ir.ops.Folded`: the extra
float32 rounding steps and the absolute size of the folded constants), for
the float32 rounding bound of :mod:`verifier.bounds.roundoff`.

A node is only folded into its producer when it is the producer's only
consumer and the producer is not the graph output: folding rewrites the
producer in place, so any other reader would see the folded value. After a
fold the producer computes the folded node's value, so it inherits that
node's consumers (and its being the output): a later fold into it is checked
against those, never against the producer's original single consumer (the
bug behind ``t = 2x; n = -t; y = n - (0.5 n - c)``, where folding ``n`` into
``t`` and then ``0.5 n`` into it as well made ``y`` read ``0.5 n - c`` twice).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from verifier.ir import ops
from verifier.ir.graph import Graph


def _along_last_axis(array, rank):
    """The vector form of a Scale constant that varies only along the last axis."""
    if array.ndim != rank or any(s != 1 for s in array.shape[:-1]):
        return None
    return array.reshape(-1)


def _per_channel(array, rank):
    """The per-channel vector of a constant of shape (1.., C, 1, 1) (or scalar)."""
    if array.size == 1:
        return array.reshape(-1)
    if array.ndim != rank or any(s != 1 for s in array.shape[:-3]) \
            or array.shape[-2:] != (1, 1):
        return None
    return array.reshape(-1)


def _fold(producer, node):
    """The producer with ``node`` (a Scale) folded in, or None."""
    rank = len(node.shape)
    if not isinstance(producer, (ops.Scale, ops.Linear, ops.Conv)):
        return None
    first, then = ops.folding_of(producer), ops.folding_of(node)
    steps = first.steps + then.steps + ops.Folded.PER_SCALE
    if isinstance(producer, ops.Scale):
        offset = np.abs(node.scale) * first.offset + then.offset
        return replace(producer, scale=producer.scale * node.scale,
                       shift=producer.shift * node.scale + node.shift, name=node.name,
                       folded=ops.Folded(steps, offset))
    # Linear scales its output rows (last axis), Conv its output channels
    vector = {ops.Linear: _along_last_axis, ops.Conv: _per_channel}[type(producer)]
    s, t = vector(node.scale, rank), vector(node.shift, rank)
    h = vector(np.broadcast_to(then.offset, node.shift.shape), rank)
    if s is None or t is None or h is None:
        return None
    out = producer.weight.shape[0]
    s, t = np.broadcast_to(s, (out,)), np.broadcast_to(t, (out,))
    bias = np.zeros(out) if producer.bias is None else producer.bias
    column = (out,) + (1,) * (producer.weight.ndim - 1)
    offset = np.abs(s) * first.offset + np.broadcast_to(h, (out,))
    return replace(producer, weight=producer.weight * s.reshape(column), bias=bias * s + t,
                   name=node.name, folded=ops.Folded(steps, offset))


def simplify(graph: Graph) -> Graph:
    """The graph with the folds above applied; every node computes the same value."""
    nodes = list(graph.nodes)
    users = graph.consumers()
    alias = list(range(len(nodes)))  # node index -> index that now computes it
    removed = set()
    for i, node in enumerate(nodes):
        node = replace(node, inputs=tuple(alias[j] for j in node.inputs)) if node.inputs \
            else node
        nodes[i] = node
        if not isinstance(node, ops.Scale):
            continue
        p = node.inputs[0]
        if p == 0 or len(users[p]) != 1 or p == alias[graph.output]:
            continue
        folded = _fold(nodes[p], node)
        if folded is None:
            continue
        nodes[p] = folded
        alias[i] = p
        users[p] = users[i]  # p now computes node i: i's readers read p
        removed.add(i)
    keep = [i for i in range(len(nodes)) if i not in removed]
    renumber = {old: new for new, old in enumerate(keep)}
    final = [replace(nodes[i], inputs=tuple(renumber[j] for j in nodes[i].inputs))
             if nodes[i].inputs else nodes[i] for i in keep]
    return Graph(tuple(final), renumber[alias[graph.output]], graph.input_name,
                 graph.output_name, graph.opset)
