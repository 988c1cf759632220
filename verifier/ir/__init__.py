"""The layer IR: core ops, the graph and the exact float64 evaluator."""
from verifier.ir import ops
from verifier.ir.evaluate import evaluate
from verifier.ir.graph import Graph

__all__ = ["Graph", "evaluate", "ops"]
