"""The IR graph: an immutable, topologically ordered tuple of core-op nodes."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from verifier.ir.ops import Input, Node


@dataclass(frozen=True, eq=False)
class Graph:
    """A lowered network with one input and one output.

    ``nodes`` is topologically ordered; ``nodes[i].inputs`` only names
    indices smaller than ``i``. ``nodes[0]`` is the :class:`Input`.
    """

    nodes: tuple[Node, ...]
    output: int
    input_name: str = "input"
    output_name: str = "output"
    opset: int = 0

    def __post_init__(self):
        if not self.nodes or not isinstance(self.nodes[0], Input):
            raise ValueError("graph must start with its Input node")
        for i, node in enumerate(self.nodes):
            if any(j < 0 or j >= i for j in node.inputs):
                raise ValueError(f"node {i} ({node.name}) is not topologically ordered")
            if node.arity is not None and len(node.inputs) != node.arity:
                raise ValueError(f"node {i} ({type(node).__name__}) takes "
                                 f"{node.arity} inputs, got {len(node.inputs)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.nodes[self.output].shape

    @property
    def input_size(self) -> int:
        return self.nodes[0].size

    @property
    def output_size(self) -> int:
        return self.nodes[self.output].size

    def consumers(self) -> list[list[int]]:
        """For each node, the indices of the nodes that read it."""
        users: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                users[j].append(i)
        return users

    def parameter_count(self) -> int:
        return sum(node.parameter_count() for node in self.nodes)

    def op_counts(self) -> Counter:
        return Counter(type(node).__name__ for node in self.nodes)

    def __repr__(self) -> str:
        """A one-line summary (shapes, op counts, parameters), never the weights."""
        ops = ", ".join(f"{name} x{count}" if count > 1 else name
                        for name, count in self.op_counts().items())
        return (f"Graph({len(self.nodes)} nodes: {ops}; input {self.input_name!r} "
                f"{list(self.input_shape)} -> output {self.output_name!r} "
                f"{list(self.output_shape)}; {self.parameter_count():,} parameters, "
                f"opset {self.opset})")
