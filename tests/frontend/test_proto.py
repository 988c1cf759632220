"""verifier.frontend.proto: onnx's messages, tensors and attributes without
the onnx package, checked against onnx's own helpers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, defs, helper, numpy_helper

from verifier.frontend import proto
from verifier.frontend.registry import STABLE_DEFAULTS, schema_defaults

ROOT = Path(__file__).resolve().parents[2]

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16,
          np.int32, np.int64, np.uint32, np.uint64, np.bool_]
SHAPES = [(), (0,), (3,), (2, 3), (1, 2, 1, 3)]


def _values(dtype, shape, rng):
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating):
        values = rng.normal(size=shape) * 100
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_to_array_matches_numpy_helper(dtype, raw):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        values = _values(dtype, shape, rng)
        if raw:
            tensor = numpy_helper.from_array(values, "t")
        else:
            kind = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
            tensor = helper.make_tensor("t", kind, list(shape), values.reshape(-1).tolist())
            assert not tensor.HasField("raw_data")
        expected = numpy_helper.to_array(tensor)
        got = proto.to_array(tensor)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        assert got.flags.writeable


def test_to_array_hands_other_types_to_onnx():
    strings = helper.make_tensor("s", TensorProto.STRING, [2], [b"a", b"bc"])
    assert proto.to_array(strings).tolist() == numpy_helper.to_array(strings).tolist()
    brain = helper.make_tensor("b", TensorProto.BFLOAT16, [3], [1.0, -2.5, 0.25])
    np.testing.assert_array_equal(proto.to_array(brain).astype(np.float32),
                                  numpy_helper.to_array(brain).astype(np.float32))


def test_to_array_rejects_a_size_mismatch():
    tensor = numpy_helper.from_array(np.arange(6, dtype=np.float32), "w")
    del tensor.dims[:]
    tensor.dims.extend([2, 2])
    with pytest.raises(ValueError, match="6 values for its shape"):
        proto.to_array(tensor)


def test_store_array_round_trips():
    tensor = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    tensor.doc_string = "weights"
    wide = np.linspace(-1, 1, 6).reshape(2, 3)
    proto.store_array(tensor, wide)
    assert tensor.name == "w" and tensor.data_type == TensorProto.DOUBLE
    np.testing.assert_array_equal(numpy_helper.to_array(tensor), wide)
    with pytest.raises(TypeError):
        proto.store_array(tensor, np.arange(3))


def test_attribute_value_matches_onnx_helper():
    node = helper.make_node(
        "Op", [], [], f=0.1, i=-3, s="same_upper", t=numpy_helper.from_array(
            np.ones((2, 2), np.float32)), floats=[0.5, 2.0], ints=[1, -1, 3],
        strings=["a", "b"])
    for attr in node.attribute:
        expected = helper.get_attribute_value(attr)
        got = proto.attribute_value(attr)
        if isinstance(expected, TensorProto):
            assert got == expected
        else:
            assert got == expected and type(got) is type(expected), attr.name


def test_stable_defaults_match_every_schema_from_opset_7():
    newest = defs.onnx_opset_version()
    for op_type, table in STABLE_DEFAULTS.items():
        for opset in range(7, newest + 1):
            assert schema_defaults(op_type, opset) == table, (op_type, opset)


def test_messages_are_onnx_classes_once_onnx_is_imported():
    assert proto.messages() is onnx.onnx_ml_pb2
    model = onnx.load(str(ROOT / "verifier" / "examples" / "tiny_mlp.onnx"))
    assert proto.is_model(model) and proto.as_model(model) is model
    assert not proto.is_model(model.graph) and not proto.is_model(b"bytes")
    assert proto.data_type_name(7) == "int64"
    assert (proto.FLOAT, proto.FLOAT16, proto.DOUBLE, proto.BFLOAT16) == (
        TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    kinds = onnx.AttributeProto
    assert (proto.FLOAT_ATTR, proto.INT, proto.STRING, proto.TENSOR, proto.FLOATS, proto.INTS,
            proto.STRINGS) == (kinds.FLOAT, kinds.INT, kinds.STRING, kinds.TENSOR, kinds.FLOATS,
                               kinds.INTS, kinds.STRINGS)
    assert proto.data_type_name(999) == "unknown type 999"


def test_plain_models_load_and_verify_without_the_onnx_package():
    """A fresh interpreter verifies the bundled example without importing onnx
    (0.9 s of start-up); onnx imported afterwards uses the same classes."""
    example = ROOT / "verifier" / "examples"
    code = (
        "import json, sys\n"
        "from verifier.verify import verify, Options\n"
        "from verifier.frontend import proto, load_model\n"
        f"r = verify({str(example / 'tiny_mlp.onnx')!r}, "
        f"{str(example / 'tiny_mlp_robust.vnnlib')!r}, Options(timeout=20))\n"
        "before = 'onnx' in sys.modules\n"
        "ours = proto.messages()\n"
        "mine = proto.as_model(proto.messages().ModelProto.FromString(open("
        f"{str(example / 'tiny_mlp.onnx')!r}, 'rb').read()))\n"
        "import onnx\n"
        f"m = onnx.load({str(example / 'tiny_mlp.onnx')!r})\n"
        "onnx.checker.check_model(m)\n"
        "onnx.checker.check_model(proto.as_model(mine, onnx))\n"
        "assert onnx.onnx_ml_pb2.ModelProto is onnx.ModelProto\n"
        "same = proto.messages() is onnx.onnx_ml_pb2\n"
        "load_model(m)\n"
        "load_model(mine)\n"
        "print(json.dumps({'verdict': str(r.verdict), 'onnx_before': before, 'same': same}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"verdict": "unsat", "onnx_before": False, "same": True}
