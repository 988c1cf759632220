"""ONNX graph surgery for sampling: a centre input, and a split after the first affine map.

``with_center_input(model)`` prepends ``Add(noise, center)`` to a network, so
that a batch of noise vectors is fed as it lies in the noise bank (no numpy
copy) and the centre x is added inside onnxruntime.

``split_first_affine(model)``: when the network starts with ``[Flatten | Reshape] -> Gemm | MatMul`` (an
affine map ``z = flat(x) W + b`` with W of shape d x m and constant weights),
then for Gaussian noise ``eps ~ N(0, sigma^2 I_d)``

    z(x + eps) = z(x) + eps W,      eps W ~ N(0, sigma^2 W^T W),

so the classifier's output on ``x + eps`` has exactly the same distribution as
the rest of the network on ``z(x) + sigma u R`` with ``u ~ N(0, I_m)`` and R the
triangular factor of ``W = Q R`` (Q with orthonormal columns: ``eps Q`` is
standard normal in m dimensions). When m < d this draws m instead of d normal
numbers per sample and skips the first layer. The draws themselves differ from
those of the unreduced path (m numbers instead of d), so the counts for a given
seed differ too; their distribution does not (up to float32 rounding of the
first layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True, eq=False)
class AffinePrefix:
    """The first affine map of a network and the network after it."""

    weight: np.ndarray      # (d, m) float64: z = flat(x) @ weight + bias
    bias: np.ndarray        # (m,) float64
    rest: onnx.ModelProto   # input: the affine output, shape (batch, m)
    description: str

    @property
    def in_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def out_dim(self) -> int:
        return self.weight.shape[1]

    def center(self, x: np.ndarray) -> np.ndarray:
        """z(x) for one input x (any shape with d entries), float64 of shape (m,)."""
        return np.asarray(x, np.float64).reshape(-1) @ self.weight + self.bias

    def noise_factor(self, sigma: float) -> np.ndarray:
        """An (m, m) float32 matrix F with u F ~ N(0, sigma^2 W^T W) for u ~ N(0, I_m)."""
        r = np.linalg.qr(self.weight, mode="r")
        return (sigma * r).astype(np.float32)


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _reshape_is_flatten(node: onnx.NodeProto, weights: dict, in_dim: int) -> bool:
    shape = weights.get(node.input[1]) if len(node.input) > 1 else None
    if shape is None or shape.ndim != 1 or len(shape) != 2:
        return False
    first, second = (int(v) for v in shape)
    return first in (-1, 0, 1) and second in (-1, in_dim) and not (first == -1 and second == -1)


def split_first_affine(proto: onnx.ModelProto) -> tuple[AffinePrefix | None, str]:
    """Find ``[Flatten|Reshape]* -> Gemm|MatMul`` at the input; (prefix or None, reason)."""
    graph = proto.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in weights]
    if len(inputs) != 1:
        return None, "the model does not have exactly one input"
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d is None for d in dims[1:]):
        return None, "the input's per-sample shape is not fixed"
    in_dim = int(np.prod(dims[1:]))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {v.name for v in graph.output}

    tensor, rank, chain = inputs[0].name, len(dims), []
    while True:
        users = consumers.get(tensor, [])
        if len(users) != 1 or tensor in outputs:
            return None, f"tensor {tensor!r} is used by {len(users)} nodes or is an output"
        node = users[0]
        if node.op_type == "Flatten" and _attribute(node, "axis", 1) == 1:
            pass
        elif node.op_type == "Reshape" and _reshape_is_flatten(node, weights, in_dim):
            pass
        else:
            break
        chain.append(node)
        tensor, rank = node.output[0], 2
    if rank != 2:
        return None, "the input is not flattened to (batch, features) before the first op"

    if node.op_type == "Gemm":
        if (_attribute(node, "transA", 0) or node.input[0] != tensor
                or node.input[1] not in weights):
            return None, f"Gemm node {node.name!r} is not x @ W with a constant W"
        weight = weights[node.input[1]].astype(np.float64)
        if _attribute(node, "transB", 0):
            weight = weight.T
        weight = float(_attribute(node, "alpha", 1.0)) * weight
        bias = np.zeros(weight.shape[1])
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in weights:
                return None, f"Gemm node {node.name!r} has a non-constant bias"
            bias = bias + float(_attribute(node, "beta", 1.0)) * weights[node.input[2]].reshape(-1)
    elif node.op_type == "MatMul":
        if node.input[0] != tensor or node.input[1] not in weights or weights[node.input[1]].ndim != 2:
            return None, f"MatMul node {node.name!r} is not x @ W with a constant 2-D W"
        weight = weights[node.input[1]].astype(np.float64)
        bias = np.zeros(weight.shape[1])
    else:
        return None, f"the first op after flattening is {node.op_type}, not Gemm or MatMul"
    if weight.shape[0] != in_dim:
        return None, f"{node.op_type} node {node.name!r} expects {weight.shape[0]} inputs, not {in_dim}"
    if node.output[0] in outputs:
        return None, f"{node.op_type} node {node.name!r} is the model's output"

    removed = {id(n) for n in chain + [node]}
    kept = [n for n in graph.node if id(n) not in removed]
    used = {name for n in kept for name in n.input}
    batch = inputs[0].type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param if batch.HasField("dim_param") else (batch.dim_value or "batch")
    rest_input = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT,
                                               [batch_dim, weight.shape[1]])
    rest_graph = helper.make_graph(
        kept, f"{graph.name}_after_{node.op_type}", [rest_input], list(graph.output),
        initializer=[t for t in graph.initializer if t.name in used])
    rest = helper.make_model(rest_graph, opset_imports=list(proto.opset_import))
    rest.ir_version = max(proto.ir_version, 4)  # initializers need not be graph inputs
    where = f"{node.op_type} node {node.name!r}" if node.name else node.op_type
    description = f"{where} ({in_dim} -> {weight.shape[1]})"
    return AffinePrefix(weight, bias, rest, description), ""


NOISE_INPUT = "smoothing_noise"
CENTER_INPUT = "smoothing_center"


def with_center_input(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The network on ``noise + center``: inputs noise (batch, *S) and center (1, *S).

    The network's own batch dimension is made symbolic; whether the graph
    really handles batches must be checked by running it.
    """
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in weights]
    if len(inputs) != 1:
        raise ValueError("with_center_input needs a model with one input")
    names = {name for n in graph.node for name in list(n.input) + list(n.output)}
    if NOISE_INPUT in names or CENTER_INPUT in names:
        raise ValueError("the model already uses the names of the smoothing inputs")
    value = inputs[0]
    elem = value.type.tensor_type.elem_type
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param
             for d in value.type.tensor_type.shape.dim][1:]
    noise = helper.make_tensor_value_info(NOISE_INPUT, elem, ["batch"] + shape)
    center = helper.make_tensor_value_info(CENTER_INPUT, elem, [1] + shape)
    add = helper.make_node("Add", [NOISE_INPUT, CENTER_INPUT], [value.name], name="smoothing_add")
    outputs = []
    for out in graph.output:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(out)
        dims = copy.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "batch"
        outputs.append(copy)
    wrapped = helper.make_graph(
        [add] + list(graph.node), f"{graph.name}_on_noise", [noise, center], outputs,
        initializer=list(graph.initializer))
    model = helper.make_model(wrapped, opset_imports=list(proto.opset_import))
    model.ir_version = max(proto.ir_version, 4)
    return model
