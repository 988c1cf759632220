"""ONNX protobuf messages, tensors and attributes without importing ``onnx``.

``import onnx`` costs about 0.9 s on the machines this project targets
(0.83 s of it is ``ml_dtypes``, which ``onnx.helper`` imports), more than a
whole acasxu instance takes to verify. The verifier only needs the message
classes and the arrays in them, so this module loads onnx's generated
protobuf module (``onnx/onnx_ml_pb2.py``, which imports nothing but
``google.protobuf``) by itself, under a private name; once ``onnx`` has been
imported, onnx's own module is used. Both register the same file in
protobuf's default descriptor pool; with protobuf's default (upb) backend
they share the message classes too, and :func:`as_model` converts a proto
of the other class (other backends) through its bytes. When the file cannot
be found or loaded, the whole ``onnx`` package is imported instead.

:func:`to_array` and :func:`attribute_value` read the common tensor types and
attribute kinds directly and hand anything else (strings, bfloat16, float8,
external data, graphs) to ``onnx.numpy_helper`` / ``onnx.helper``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

_MODULE = "verifier.frontend._onnx_ml_pb2"
_loaded = {}

#: TensorProto.DataType numbers of the float types (fixed by the ONNX standard)
FLOAT, FLOAT16, DOUBLE, BFLOAT16 = 1, 10, 11, 16

# TensorProto.DataType -> (numpy dtype, the typed field holding the values)
_TENSOR_TYPES = {
    FLOAT: (np.dtype("<f4"), "float_data"),
    2: (np.dtype("u1"), "int32_data"),
    3: (np.dtype("i1"), "int32_data"),
    4: (np.dtype("<u2"), "int32_data"),
    5: (np.dtype("<i2"), "int32_data"),
    6: (np.dtype("<i4"), "int32_data"),
    7: (np.dtype("<i8"), "int64_data"),
    9: (np.dtype("bool"), "int32_data"),
    FLOAT16: (np.dtype("<f2"), "int32_data"),   # float16 bit patterns in int32_data
    DOUBLE: (np.dtype("<f8"), "double_data"),
    12: (np.dtype("<u4"), "uint64_data"),
    13: (np.dtype("<u8"), "uint64_data"),
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

#: AttributeProto.AttributeType numbers of the attribute kinds read here
FLOAT_ATTR, INT, STRING, TENSOR, FLOATS, INTS, STRINGS = 1, 2, 3, 4, 6, 7, 8


def messages():
    """onnx's generated protobuf module (``ModelProto``, ``TensorProto``, ...)."""
    if "onnx" in sys.modules:
        return _from_package()
    module = _loaded.get(_MODULE)
    if module is not None:
        return module
    spec = importlib.util.find_spec("onnx")  # finds the package without importing it
    path = Path(spec.origin).parent / "onnx_ml_pb2.py" if spec and spec.origin else None
    if path is None or not path.is_file():
        return _from_package()
    loader_spec = importlib.util.spec_from_file_location(_MODULE, path)
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - any failure: the package's own import path
        return _from_package()
    _loaded[_MODULE] = module
    return module


def is_model(value) -> bool:
    """Whether ``value`` is an ONNX ``ModelProto`` (of either module's class)."""
    descriptor = getattr(value, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", None) == "onnx.ModelProto"


def as_model(value, module=None):
    """``value`` (a ``ModelProto``) as an instance of ``module``'s class
    (default: :func:`messages`), converted through its bytes if it is not one."""
    cls = (module or messages()).ModelProto
    return value if isinstance(value, cls) else cls.FromString(value.SerializeToString())


def _from_package():
    import onnx

    return onnx.onnx_ml_pb2


def to_array(tensor) -> np.ndarray:
    """The values of a ``TensorProto`` as a numpy array of its dtype and dims."""
    kind = _TENSOR_TYPES.get(tensor.data_type)
    if kind is None or tensor.data_location == _EXTERNAL \
            or tensor.HasField("segment"):
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor)
    dtype, field = kind
    shape = tuple(int(d) for d in tensor.dims)
    if tensor.HasField("raw_data"):
        values = np.frombuffer(tensor.raw_data, dtype=dtype)
    elif tensor.data_type == FLOAT16:
        values = np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16)
    else:
        values = np.asarray(getattr(tensor, field), dtype=dtype)
    size = int(np.prod(shape, dtype=np.int64))
    if values.size != size:
        raise ValueError(f"tensor {tensor.name!r} holds {values.size} values for its "
                         f"shape {list(shape)} ({size} values)")
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def store_array(tensor, array: np.ndarray) -> None:
    """Make ``tensor`` hold ``array`` (float32 or float64; name kept), as raw data."""
    codes = {np.dtype(np.float32): FLOAT, np.dtype(np.float64): DOUBLE}
    array = np.asarray(array)
    if array.dtype not in codes:
        raise TypeError(f"store_array takes float32 or float64 arrays, not {array.dtype}")
    name = tensor.name
    tensor.Clear()
    tensor.name = name
    tensor.data_type = codes[array.dtype]
    tensor.dims.extend(array.shape)
    tensor.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def attribute_value(attr):
    """The value of an ``AttributeProto``: a number, bytes, a ``TensorProto``
    or a list of them, as ``onnx.helper.get_attribute_value`` gives it."""
    kind = attr.type
    if kind == FLOAT_ATTR:
        return attr.f
    if kind == INT:
        return attr.i
    if kind == STRING:
        return attr.s
    if kind == TENSOR:
        return attr.t
    if kind == FLOATS:
        return list(attr.floats)
    if kind == INTS:
        return list(attr.ints)
    if kind == STRINGS:
        return list(attr.strings)
    from onnx import helper

    return helper.get_attribute_value(attr)


def data_type_name(elem_type: int) -> str:
    """The ONNX name of a tensor element type number (7 -> 'int64')."""
    try:
        return messages().TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"unknown type {elem_type}"
