"""Per-graph preprocessing for the bound engines, computed once and cached.

Everything here depends on the graph only (never on an input set): the
topology (cones of ancestors), which nodes need bounds, which nodes' interval
bounds are already as tight as CROWN's, and per-node constant arrays (the
absolute weights for IBP, flattened Scale factors, Gather plans, MaxPool
window indices).
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from verifier.ir import functional as F
from verifier.ir import ops
from verifier.ir.graph import Graph

#: Element-wise nonlinearities whose relaxation is a pair of lines per neuron.
ELEMENTWISE = (ops.Relu, ops.PRelu, ops.Sigmoid, ops.Tanh, ops.Softplus, ops.Gelu, ops.Sign)
#: Every node type that needs the bounds of its input to be relaxed.
NONLINEAR = ELEMENTWISE + (ops.MaxPool, ops.Softmax)
#: Nonlinearities whose relaxation only depends on the sign of the input
#: bounds: CROWN is spent only on their unstable neurons.
SIGN_DRIVEN = (ops.Relu, ops.PRelu, ops.Sign)
#: Affine ops with center/radius interval arithmetic.
AFFINE = (ops.Linear, ops.Conv, ops.ConvTranspose, ops.Scale)
#: Ops that copy entries (each output entry is one input entry or a constant).
STRUCTURAL = (ops.Reshape, ops.Gather, ops.Concat)


@dataclasses.dataclass
class GatherPlan:
    unique: bool                 # every input entry is read at most once
    positions: np.ndarray        # output positions that read an input entry
    sources: np.ndarray          # the input entries they read
    fill_positions: np.ndarray   # output positions that read the fill value
    matrix: object = None        # scipy.sparse (n_in, n_out) when not unique


class Prepared:
    """Graph facts for the engines; obtain it with :func:`prepare`."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = graph.nodes
        self.sizes = [node.size for node in graph.nodes]
        self.consumers = graph.consumers()
        self.nonlinear = [isinstance(n, NONLINEAR) for n in graph.nodes]
        # producers whose bounds a nonlinearity needs -> the nonlinear consumers
        self.feeds: dict[int, list[int]] = {}
        for k, node in enumerate(self.nodes):
            if self.nonlinear[k]:
                self.feeds.setdefault(node.inputs[0], []).append(k)
        self._cones: dict[int, list[int]] = {}
        self._abs: dict[int, ops.Node] = {}
        self._flat: dict[tuple[int, str], np.ndarray] = {}
        self._gather: dict[int, GatherPlan] = {}
        self._windows: dict[int, np.ndarray] = {}
        self._classify()

    def _classify(self):
        """``coordinate``: entries are independent input coordinates (or
        constants), up to an element-wise affine map; ``box_exact``: IBP is
        exact per entry on a box input; ``tight``: IBP from the inputs' bounds
        is as tight as CROWN would be (nonlinearity outputs and copies of
        them)."""
        n = len(self.nodes)
        self.coordinate = [False] * n
        self.box_exact = [False] * n
        self.tight = [False] * n
        for i, node in enumerate(self.nodes):
            ins = node.inputs
            if isinstance(node, ops.Input):
                self.coordinate[i] = self.box_exact[i] = self.tight[i] = True
            elif isinstance(node, (ops.Reshape, ops.Scale)):
                self.coordinate[i] = self.coordinate[ins[0]]
                self.box_exact[i] = self.box_exact[ins[0]]
                self.tight[i] = self.tight[ins[0]]
            elif isinstance(node, ops.Gather):
                self.coordinate[i] = self.coordinate[ins[0]] and self.gather_plan(i).unique
                self.box_exact[i] = self.box_exact[ins[0]]
                self.tight[i] = self.tight[ins[0]]
            elif isinstance(node, ops.Concat):
                self.box_exact[i] = all(self.box_exact[j] for j in ins)
                self.tight[i] = all(self.tight[j] for j in ins)
            elif isinstance(node, (ops.Linear, ops.Conv, ops.ConvTranspose)):
                self.box_exact[i] = self.coordinate[ins[0]]
            elif self.nonlinear[i]:
                self.tight[i] = True

    def cone(self, target: int) -> list[int]:
        """The ancestors of ``target`` (itself included), in decreasing order."""
        cone = self._cones.get(target)
        if cone is None:
            seen = {target}
            stack = [target]
            while stack:
                for j in self.nodes[stack.pop()].inputs:
                    if j not in seen:
                        seen.add(j)
                        stack.append(j)
            cone = sorted(seen, reverse=True)
            self._cones[target] = cone
        return cone

    def abs_node(self, i: int) -> ops.Node:
        """Node ``i`` with absolute weights and no bias (the radius map of IBP)."""
        node = self._abs.get(i)
        if node is None:
            node = self.nodes[i]
            if isinstance(node, ops.Scale):
                node = dataclasses.replace(node, scale=np.abs(node.scale),
                                           shift=np.zeros_like(node.shift))
            else:
                node = dataclasses.replace(node, weight=np.abs(node.weight), bias=None)
            self._abs[i] = node
        return node

    def flat(self, i: int, name: str) -> np.ndarray:
        """A Scale/PRelu parameter broadcast to the node shape and flattened."""
        key = (i, name)
        array = self._flat.get(key)
        if array is None:
            node = self.nodes[i]
            array = np.broadcast_to(getattr(node, name), node.shape).ravel().copy()
            self._flat[key] = array
        return array

    def gather_plan(self, i: int) -> GatherPlan:
        plan = self._gather.get(i)
        if plan is None:
            node = self.nodes[i]
            index = node.index.ravel()
            valid = index >= 0
            positions = np.flatnonzero(valid)
            sources = index[valid]
            unique = np.unique(sources).size == sources.size
            matrix = None
            if not unique:
                from scipy import sparse

                n_in = self.sizes[node.inputs[0]]
                matrix = sparse.csr_matrix(
                    (np.ones(sources.size), (sources, positions)), shape=(n_in, index.size))
            plan = GatherPlan(unique, positions, sources, np.flatnonzero(~valid), matrix)
            self._gather[i] = plan
        return plan

    def pool_windows(self, i: int) -> np.ndarray:
        """MaxPool node ``i``: ``(n_out, kh*kw)`` flat input indices, -1 for padding."""
        table = self._windows.get(i)
        if table is None:
            node = self.nodes[i]
            in_shape = self.nodes[node.inputs[0]].shape
            index = np.arange(self.sizes[node.inputs[0]], dtype=np.int64).reshape(in_shape)
            index, _ = F.as_nchw(index)
            win = F.windows(F.pad2d(index, node.padding, -1), node.kernel, node.stride,
                            node.dilation)
            table = np.ascontiguousarray(win.reshape(-1, node.kernel[0] * node.kernel[1]))
            if table.shape[0] != node.size:
                raise ValueError(f"MaxPool node {i}: windows give {table.shape[0]} outputs, "
                                 f"shape {node.shape} has {node.size}")
            self._windows[i] = table
        return table


_CACHE: "weakref.WeakKeyDictionary[Graph, Prepared]" = weakref.WeakKeyDictionary()


def prepare(graph: Graph) -> Prepared:
    """The cached :class:`Prepared` of ``graph``."""
    prepared = _CACHE.get(graph)
    if prepared is None:
        prepared = Prepared(graph)
        _CACHE[graph] = prepared
    return prepared
