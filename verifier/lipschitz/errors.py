"""Errors of the Lipschitz analysis (all :class:`verifier.errors.VerifierError`)."""
from __future__ import annotations

from verifier.errors import VerifierError


class LipschitzError(VerifierError):
    """The Lipschitz analysis cannot run on this input (bad norm, radius, data)."""


class NoLipschitzRuleError(LipschitzError):
    """The graph has nodes without a Lipschitz rule (e.g. Softmax, Sign).

    Lists every such node at once, by name and op.
    """

    def __init__(self, nodes, what: str = "a Lipschitz bound"):
        self.nodes = list(nodes)
        items = "; ".join(f"node {name!r} (core op {op})" for name, op in self.nodes)
        super().__init__(
            f"no rule for {what} at {len(self.nodes)} node"
            f"{'s' if len(self.nodes) != 1 else ''}: {items}. Softmax and Sign have no "
            f"useful Lipschitz bound here (Sign is discontinuous); bound the logits "
            f"before a final Softmax by exporting the model without it")
