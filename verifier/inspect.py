"""``inspect``: what a model looks like once lowered, and whether the IR
evaluates it exactly as onnxruntime does."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

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


def float64_model(proto):
    """A copy of ``proto`` computing in float64 (weights, constants, casts, I/O).

    The IR is exact float64 arithmetic; comparing it with onnxruntime running
    the same graph in float64 checks the semantics without float32 rounding
    (which alone reaches 2e-5 relative on acasxu networks with small outputs).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    FLOAT, DOUBLE = onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE

    def widen(tensor):
        if tensor.data_type == FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float64), tensor.name))

    for tensor in graph.initializer:
        widen(tensor)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                widen(attr.t)
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = DOUBLE
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == FLOAT:
            value.type.tensor_type.elem_type = DOUBLE
    del graph.value_info[:]
    return model


def self_check(graph: Graph, proto, samples: int = 8, seed: int = 0) -> tuple[float, str]:
    """Max relative error between the IR evaluator and onnxruntime on random inputs.

    onnxruntime runs the model converted to float64 where it has float64
    kernels for every op; otherwise the float32 model (and float32 rounding
    then counts in the error).
    """
    from verifier.runtime import open_session

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(samples,) + graph.input_shape)
    try:
        session = open_session(float64_model(proto), device="cpu")
        precision = "float64"
    except Exception:  # noqa: BLE001 - no float64 kernel for some op: use float32
        session = open_session(proto, device="cpu")
        precision = "float32"
        x = x.astype(np.float32)
    expected = session.run(x.reshape((samples,) + tuple(session.input_shape)))
    got = evaluate(graph, x.astype(np.float64))
    return relative_error(got.reshape(samples, -1), expected.reshape(samples, -1)), \
        f"{session.provider}, {precision}"


def inspect_model(path, samples: int = 8, seed: int = 0) -> ModelReport:
    """Load ``path``, describe its IR and compare the IR with onnxruntime."""
    start = time.perf_counter()
    proto = read_model_proto(path)
    graph = lower_model(proto, os.fspath(path))
    load_seconds = time.perf_counter() - start
    layers = [Layer(i, type(n).__name__, n.name, list(n.inputs), list(n.shape),
                    n.parameter_count(), n.describe()) for i, n in enumerate(graph.nodes)]
    report = ModelReport(os.fspath(path), graph.input_name, list(graph.input_shape),
                         graph.output_name, list(graph.output_shape), graph.opset,
                         graph.parameter_count(), layers, load_seconds)
    if samples > 0:
        report.max_relative_error, report.provider = self_check(graph, proto, samples, seed)
        report.samples = samples
    return report


__all__ = ["ModelReport", "float64_model", "inspect_model", "relative_error", "self_check"]
