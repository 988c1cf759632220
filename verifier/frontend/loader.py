"""Read an ONNX file and lower its graph into the core IR."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from verifier.errors import (
    InputFileError, ModelError, UnsupportedGraphError, UnsupportedModelError, UnsupportedNode,
)
from verifier.frontend import proto
from verifier.frontend.registry import Unsupported, Var, is_var, lookup, node_attributes
from verifier.ir import ops
from verifier.ir.graph import Graph

_FLOAT_TYPES = {proto.FLOAT: "float32", proto.FLOAT16: "float16", proto.DOUBLE: "float64",
                proto.BFLOAT16: "bfloat16"}

#: Why well-known ops have no converter, and what the user can do instead.
_UNSUPPORTED_HINTS = {
    **dict.fromkeys(("LSTM", "GRU", "RNN"),
                    "recurrent ops are not supported; export the unrolled network "
                    "(a fixed number of time steps as plain layers)"),
    **dict.fromkeys(("Loop", "Scan", "If"),
                    "control-flow ops (subgraphs) are not supported; export a network "
                    "without them (unrolled or traced for a fixed input shape)"),
    **dict.fromkeys(("Resize", "Upsample"),
                    "Resize is not supported (a nearest upsampling by an integer factor "
                    "can be exported as a ConvTranspose with a kernel of ones)"),
    **dict.fromkeys(("MatMulInteger", "QLinearConv", "QLinearMatMul", "QuantizeLinear",
                     "DequantizeLinear"),
                    "quantized ops are not supported; export the float network"),
}


def _looks_like_text(data: bytes) -> bool:
    """Whether ``data`` starts like a text file (a VNN-LIB property, say):
    binary protobuf always has control bytes (field tags) in its first bytes."""
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text.strip()) and all(c.isprintable() or c in "\t\r\n" for c in text)


def read_model_proto(model):
    """Read an ONNX ModelProto from a path (``.onnx`` or ``.onnx.gz``), bytes
    or a proto (returned as is).

    Raises :class:`InputFileError` for a missing or unreadable file and
    :class:`ModelError` for data that is not an ONNX model.
    """
    model_class = proto.messages().ModelProto
    if proto.is_model(model):
        return proto.as_model(model)
    if isinstance(model, (bytes, bytearray)):
        where, data = "<bytes>", bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(os.fspath(model))
        where = str(path)
        if not path.is_file():
            raise InputFileError(f"model file {where!r} does not exist or is not a file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read model file {where!r}: {exc.strerror}") from None
    else:
        raise TypeError(f"expected a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ModelError(f"{where!r} is not a valid ONNX model: broken gzip stream "
                             f"({exc})") from None
    if _looks_like_text(data):
        if b"declare-const" in data[:65536] or b"(assert" in data[:65536]:
            raise ModelError(f"{where!r} is not a valid ONNX model: it is a VNN-LIB property; "
                             "did you swap MODEL and PROPERTY? The model comes first")
        raise ModelError(f"{where!r} is not a valid ONNX model: it is a text file, not a "
                         "binary ONNX protobuf")
    parsed = model_class()
    try:
        parsed.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise ModelError(f"{where!r} is not a valid ONNX model: "
                         f"{type(exc).__name__}: {exc}") from None
    if not parsed.graph.node and not parsed.graph.output:
        raise ModelError(f"{where!r} is not a valid ONNX model: its graph is empty")
    return parsed


class Lowering:
    """Lowering state: the IR nodes built so far and the ONNX value table."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[ops.Node] = []

    def emit(self, cls, inputs, shape, name="", **fields) -> Var:
        """Append an IR node reading ``inputs`` (Vars) and return its Var."""
        shape = tuple(int(s) for s in shape)
        node = cls(inputs=tuple(v.index for v in inputs), shape=shape, name=name, **fields)
        self.nodes.append(node)
        return Var(len(self.nodes) - 1, shape)


def _fold_constant(node, args, opset):
    """Evaluate a node whose inputs are all constants (onnx's reference evaluator)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    inputs = [numpy_helper.from_array(np.asarray(a), n) for n, a in zip(names, args) if n]
    folded = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))],
                              domain=node.domain)
    folded.attribute.extend(node.attribute)
    graph = helper.make_graph([folded], "fold", [], [helper.make_empty_tensor_value_info(f"out{i}")
                                                     for i in range(len(node.output))],
                              initializer=inputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, {})


def _static_shape(value_info, where):
    dims = value_info.type.tensor_type.shape.dim
    shape = []
    for axis, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(1)  # a symbolic (or 0/-1) batch dimension is fixed to 1
        else:
            label = dim.dim_param or "?"
            raise ModelError(f"{where}: input {value_info.name!r} has a symbolic dimension "
                             f"{label!r} at axis {axis}; only the batch axis (0) may be symbolic")
    return tuple(shape)


def lower_model(model, where: str = "<model>") -> Graph:
    """Lower an ONNX ModelProto into a :class:`Graph` of core ops."""
    # importing patterns imports every converter module, which fills the registry
    from verifier.frontend.patterns import fuse_patterns

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset == 0:
        raise ModelError(f"{where}: the model declares no default-domain opset")
    values: dict[str, object] = {}
    for init in graph.initializer:
        try:
            values[init.name] = proto.to_array(init)
        except Exception as exc:
            raise ModelError(f"{where}: initializer {init.name!r} cannot be read: {exc}") from None
    inputs = [vi for vi in graph.input if vi.name not in values]
    if len(inputs) != 1:
        names = ", ".join(repr(vi.name) for vi in inputs) or "none"
        raise UnsupportedGraphError(
            f"the model must have exactly one non-constant input, found {len(inputs)} "
            f"({names})", where)
    if len(graph.output) != 1:
        names = ", ".join(repr(vi.name) for vi in graph.output) or "none"
        raise UnsupportedGraphError(
            f"the model must have exactly one output, found {len(graph.output)} ({names})",
            where)
    elem = inputs[0].type.tensor_type.elem_type
    if elem not in _FLOAT_TYPES:
        raise UnsupportedGraphError(
            f"input {inputs[0].name!r} has element type {proto.data_type_name(elem)}; only "
            f"float inputs ({', '.join(_FLOAT_TYPES.values())}) are supported", where)

    ctx = Lowering(opset)
    values[inputs[0].name] = ctx.emit(ops.Input, [], _static_shape(inputs[0], where),
                                      name=inputs[0].name)
    onnx_nodes = fuse_patterns(list(graph.node), values,
                               outputs={o.name for o in graph.output})
    problems: list[UnsupportedNode] = []
    poisoned: set[str] = set()
    for index, node in enumerate(onnx_nodes):
        name = node.name or f"{node.op_type}_{index}"
        if node.domain not in ("", "ai.onnx", "verifier"):
            problems.append(UnsupportedNode(name, f"{node.domain}.{node.op_type}", opset,
                                            "custom-domain ops are not supported"))
            poisoned.update(node.output)
            continue
        func = lookup(node.op_type, opset)
        if func is None:
            problems.append(UnsupportedNode(name, node.op_type, opset,
                                            _UNSUPPORTED_HINTS.get(node.op_type, "")))
            poisoned.update(node.output)
            continue
        if any(i in poisoned for i in node.input if i):
            poisoned.update(node.output)
            continue
        missing = [i for i in node.input if i and i not in values]
        if missing:
            raise ModelError(f"{where}: node {name!r} ({node.op_type}) reads {missing[0]!r}, "
                             "which no node, input or initializer defines (is the graph "
                             "topologically sorted?)")
        args = [values[i] if i else None for i in node.input]
        try:
            attrs = node_attributes(node, opset)
            if node.op_type not in ("Shape", "Constant") and node.domain != "verifier" \
                    and not any(is_var(a) for a in args):
                outputs = _fold_constant(node, args, opset)
            else:
                outputs = func(ctx, node, args, attrs)
        except Unsupported as exc:
            problems.append(UnsupportedNode(name, node.op_type, opset, str(exc)))
            poisoned.update(node.output)
            continue
        except (ValueError, IndexError, TypeError, KeyError) as exc:
            problems.append(UnsupportedNode(name, node.op_type, opset,
                                            f"cannot be lowered: {type(exc).__name__}: {exc}"))
            poisoned.update(node.output)
            continue
        for out_name, value in zip(node.output, outputs):
            if out_name:
                values[out_name] = value if is_var(value) else np.asarray(value)
    if problems:
        raise UnsupportedModelError(problems, where)
    out_name = graph.output[0].name
    result = values.get(out_name)
    if result is None:
        raise ModelError(f"{where}: the graph output {out_name!r} is never computed")
    if not is_var(result):
        raise UnsupportedGraphError(f"the output {out_name!r} does not depend on the input",
                                    where)
    nodes, output = _prune(ctx.nodes, result.index)
    from verifier.frontend.simplify import simplify

    return simplify(Graph(tuple(nodes), output, input_name=inputs[0].name,
                          output_name=out_name, opset=opset))


def _prune(nodes, output):
    """Drop nodes the output does not depend on; renumber inputs."""
    live = {output}
    for i in range(output, -1, -1):
        if i in live:
            live.update(nodes[i].inputs)
    live.add(0)
    order = sorted(live)
    renumber = {old: new for new, old in enumerate(order)}
    from dataclasses import replace

    kept = [replace(nodes[i], inputs=tuple(renumber[j] for j in nodes[i].inputs))
            if nodes[i].inputs else nodes[i] for i in order]
    return kept, renumber[output]


def load_model(source, *, name: str | None = None) -> Graph:
    """Load an ONNX model (path, ``.onnx.gz`` path, or ModelProto) into the IR."""
    if hasattr(source, "graph"):
        return lower_model(source, name or "<model>")
    where = name or os.fspath(source)
    return lower_model(read_model_proto(source), where)
