"""Affine chains of the IR as linear operators (their bias-free part).

A *chain* is a sequence of single-input affine nodes (Linear, Conv,
ConvTranspose, Scale, Reshape, Gather), each reading the previous one. Its
linear part is an operator ``A`` from the chain's input tensor to its output
tensor, both flattened in C order. ``matvec`` evaluates ``A`` with the
evaluator's rules and ``rmatvec`` evaluates ``A^T`` with the gradient rules
(:mod:`verifier.ir.grad`), so convolutions act on their real input shape
(padding, stride, dilation, groups included).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from verifier.ir import ops
from verifier.ir.evaluate import EVAL_RULES
from verifier.ir.grad import VJP_RULES
from verifier.ir.graph import Graph

#: Single-input affine ops that chains are made of.
CHAIN_OPS = (ops.Linear, ops.Conv, ops.ConvTranspose, ops.Scale, ops.Reshape, ops.Gather)

#: Rows pushed through a chain at once when it is materialised.
_BLOCK = 256


def linear_part(node: ops.Node, absolute: bool = False) -> ops.Node:
    """The node without its constant term (bias, shift, fill); with
    ``absolute``, also with absolute weights (the entry-wise ``|A|``)."""
    if isinstance(node, ops.Scale):
        scale = np.abs(node.scale) if absolute else node.scale
        return dataclasses.replace(node, scale=scale, shift=np.zeros_like(node.shift))
    if isinstance(node, (ops.Linear, ops.Conv, ops.ConvTranspose)):
        weight = np.abs(node.weight) if absolute else node.weight
        return dataclasses.replace(node, weight=weight, bias=None)
    if isinstance(node, ops.Gather):
        return dataclasses.replace(node, fill=0.0)
    return node


def pull_back(node: ops.Node, g: np.ndarray, in_shapes) -> list[np.ndarray]:
    """The transpose of a linear node applied to a batch ``g`` (``(B, *node.shape)``):
    one array per input, ``(B, *in_shape)``. Only shapes of the inputs are used."""
    batch = len(g)
    probes = [np.broadcast_to(np.zeros(()), (batch,) + tuple(shape)) for shape in in_shapes]
    return VJP_RULES[type(node)](node, probes, None, g)


@dataclass(frozen=True, eq=False)
class Chain:
    """The linear part of ``nodes`` (applied in order) on inputs of ``in_shape``."""

    nodes: tuple[ops.Node, ...]
    in_shape: tuple[int, ...]

    @classmethod
    def of(cls, graph: Graph, indices, absolute: bool = False) -> "Chain":
        first = graph.nodes[indices[0]]
        return cls(tuple(linear_part(graph.nodes[i], absolute) for i in indices),
                   graph.nodes[first.inputs[0]].shape)

    def absolute(self) -> "Chain":
        """The chain of ``|A_k| ... |A_1|`` (entry-wise >= ``|A|``)."""
        return Chain(tuple(linear_part(n, True) for n in self.nodes), self.in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.nodes[-1].shape

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape))

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for a batch ``x`` of shape ``(B, in_size)``: ``(B, out_size)``."""
        value = np.asarray(x, dtype=np.float64).reshape((len(x),) + self.in_shape)
        for node in self.nodes:
            value = EVAL_RULES[type(node)](node, [value])
        return value.reshape(len(x), -1)

    def rmatvec(self, g: np.ndarray) -> np.ndarray:
        """``A^T g`` for a batch ``g`` of shape ``(B, out_size)``: ``(B, in_size)``."""
        batch = len(g)
        shapes = [self.in_shape] + [n.shape for n in self.nodes[:-1]]
        value = np.asarray(g, dtype=np.float64).reshape((batch,) + self.out_shape)
        for node, shape in zip(reversed(self.nodes), reversed(shapes)):
            value = pull_back(node, value, [shape])[0]
        return value.reshape(batch, -1)

    def dense(self) -> np.ndarray:
        """The matrix of ``A``: ``(out_size, in_size)``."""
        n = self.in_size
        columns = [self.matvec(np.eye(n)[start:start + _BLOCK])
                   for start in range(0, n, _BLOCK)]
        return np.concatenate(columns, axis=0).T


def chain_ending_at(graph: Graph, index: int) -> list[int]:
    """The longest chain of CHAIN_OPS nodes ending at ``index`` (in order),
    empty when node ``index`` is not one."""
    chain = []
    while index > 0 and isinstance(graph.nodes[index], CHAIN_OPS):
        chain.append(index)
        index = graph.nodes[index].inputs[0]
    return chain[::-1]
