"""The op registry: ONNX op type (and opset) -> converter.

Converters register themselves with :func:`converter` next to their code.
Attribute defaults come from the ONNX schema (``onnx.defs``; for the common
ops of :data:`STABLE_DEFAULTS`, from a table checked against it), so
converters read ``attrs[name]`` without repeating the defaults of the standard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from verifier.frontend import proto

#: op type -> list of (since_version, function), newest last
_CONVERTERS: dict[str, list[tuple[int, Callable]]] = {}


class Unsupported(Exception):
    """Raised by a converter: this node cannot be lowered (reason in args[0])."""


def converter(*op_types: str, since: int = 1):
    """Register a converter for ONNX ``op_types`` valid from opset ``since``."""

    def register(func):
        for op_type in op_types:
            entries = _CONVERTERS.setdefault(op_type, [])
            entries.append((since, func))
            entries.sort(key=lambda e: e[0])
        return func

    return register


def lookup(op_type: str, opset: int) -> Callable | None:
    """The converter for ``op_type`` at ``opset`` (newest with since <= opset)."""
    entries = _CONVERTERS.get(op_type)
    if not entries:
        return None
    chosen = None
    for since, func in entries:
        if since <= opset:
            chosen = func
    return chosen if chosen is not None else entries[0][1]


def supported_ops() -> list[str]:
    return sorted(_CONVERTERS)


_SCHEMA_DEFAULTS: dict[tuple[str, int], dict] = {}

#: Attribute defaults of the ops of plain MLPs and CNNs, the same from opset 7
#: to the newest (tests/frontend/test_proto.py checks them against onnx's
#: schemas): models made only of these ops are lowered without importing the
#: onnx package for its schemas (see :mod:`verifier.frontend.proto`).
_STABLE_DEFAULTS_SINCE = 7
STABLE_DEFAULTS: dict[str, dict] = {
    **{op: {} for op in ("Add", "Sub", "Mul", "Div", "MatMul", "Relu", "Sigmoid", "Tanh",
                         "Identity", "Constant", "Neg", "Concat")},
    "Flatten": {"axis": 1},
    "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
    "Conv": {"group": 1, "auto_pad": "NOTSET"},
}


def attribute_defaults(op_type: str, opset: int) -> dict:
    """Default attribute values of ``op_type`` at ``opset`` from the ONNX schema."""
    if opset >= _STABLE_DEFAULTS_SINCE and op_type in STABLE_DEFAULTS:
        return STABLE_DEFAULTS[op_type]
    return schema_defaults(op_type, opset)


def schema_defaults(op_type: str, opset: int) -> dict:
    """Default attribute values of ``op_type`` at ``opset`` read from onnx's schemas."""
    key = (op_type, opset)
    cached = _SCHEMA_DEFAULTS.get(key)
    if cached is not None:
        return cached
    import onnx
    from onnx import defs, helper

    defaults = {}
    try:
        schema = defs.get_schema(op_type, opset)
    except Exception:  # not a standard op (custom domain or unknown)
        schema = None
    if schema is not None:
        for name, attr in schema.attributes.items():
            proto = attr.default_value
            if proto is not None and proto.type != onnx.AttributeProto.UNDEFINED:
                defaults[name] = _plain(helper.get_attribute_value(proto))
    _SCHEMA_DEFAULTS[key] = defaults
    return defaults


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def node_attributes(node, opset: int) -> dict:
    """Explicit attributes of an ONNX node over the schema defaults."""
    attrs = dict(attribute_defaults(node.op_type, opset))
    for attr in node.attribute:
        value = proto.attribute_value(attr)
        if hasattr(value, "raw_data") or hasattr(value, "dims"):  # TensorProto
            value = proto.to_array(value)
        attrs[attr.name] = _plain(value)
    return attrs


@dataclass(frozen=True)
class Var:
    """A symbolic tensor: the value of IR node ``index``, with its shape."""

    index: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def is_var(value) -> bool:
    return isinstance(value, Var)
