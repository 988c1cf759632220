"""``inspect``: what a model looks like once lowered, and whether the IR
evaluates it exactly as onnxruntime does."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from verifier.crosscheck import float64_model, reference_session
from verifier.frontend import read_model_proto
from verifier.frontend.loader import lower_model
from verifier.ir import evaluate
from verifier.ir.graph import Graph

#: the IR must match onnxruntime to this relative error for a model to pass
SELF_CHECK_TOLERANCE = 1e-5


@dataclass
class Layer:
    index: int
    op: str
    name: str
    inputs: list[int]
    shape: list[int]
    parameters: int
    detail: str


@dataclass
class ModelReport:
    path: str
    input_name: str
    input_shape: list[int]
    output_name: str
    output_shape: list[int]
    opset: int
    parameters: int
    layers: list[Layer] = field(default_factory=list)
    load_seconds: float = 0.0
    samples: int = 0
    max_relative_error: float | None = None
    provider: str = ""

    @property
    def consistent(self) -> bool:
        return self.max_relative_error is not None and \
            self.max_relative_error <= SELF_CHECK_TOLERANCE

    def to_dict(self) -> dict:
        data = asdict(self)
        data["consistent"] = self.consistent
        data["tolerance"] = SELF_CHECK_TOLERANCE
        return data


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max(max |expected|, 1e-12) (norm-wise, not per entry)."""
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-12)
    return float(np.abs(got - expected).max(initial=0.0)) / scale


def self_check(graph: Graph, proto, samples: int = 8, seed: int = 0,
               session=None) -> tuple[float, str]:
    """Max relative error between the IR evaluator and onnxruntime on random inputs.

    onnxruntime runs the model converted to float64 (the ops it has no
    float64 kernels for in float32, see
    :func:`verifier.crosscheck.reference_session`); otherwise the float32 model (``session`` when
    given; float32 rounding then counts in the error).
    """
    from verifier.runtime import open_session

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(samples,) + graph.input_shape)
    reference, float32_ops = reference_session(proto)
    if reference is not None:
        precision = "float64" + (f" ({', '.join(float32_ops)} in float32)" if float32_ops else "")
    else:  # no float64 kernel for some op: use float32
        reference = session or open_session(proto, device="cpu")
        precision = "float32"
        x = x.astype(np.float32)
    expected = reference.run(x.reshape((samples,) + tuple(reference.input_shape)))
    got = evaluate(graph, x.astype(np.float64))
    return relative_error(got.reshape(samples, -1), expected.reshape(samples, -1)), \
        f"{reference.provider}, {precision}"


def inspect_model(path, samples: int = 8, seed: int = 0) -> ModelReport:
    """Load ``path``, describe its IR and compare the IR with onnxruntime.

    Raises :class:`verifier.errors.ModelError` when onnxruntime cannot run
    the model (checked even with ``samples=0``).
    """
    from verifier.runtime import open_session

    start = time.perf_counter()
    proto = read_model_proto(path)
    graph = lower_model(proto, os.fspath(path))
    load_seconds = time.perf_counter() - start
    session = open_session(proto, device="cpu", name=os.fspath(path))
    layers = [Layer(i, type(n).__name__, n.name, list(n.inputs), list(n.shape),
                    n.parameter_count(), n.describe()) for i, n in enumerate(graph.nodes)]
    report = ModelReport(os.fspath(path), graph.input_name, list(graph.input_shape),
                         graph.output_name, list(graph.output_shape), graph.opset,
                         graph.parameter_count(), layers, load_seconds)
    if samples > 0:
        report.max_relative_error, report.provider = self_check(
            graph, proto, samples, seed, session)
        report.samples = samples
    return report


__all__ = ["ModelReport", "float64_model", "inspect_model", "relative_error", "self_check"]
