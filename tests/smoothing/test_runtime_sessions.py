"""verifier.runtime: sessions, providers, batching and errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from verifier import runtime
from verifier.errors import DeviceError, InputFileError, MismatchError, ModelError


def _reference(model, x):
    """Row-by-row outputs of the unmodified model, through a plain session."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def test_dynamic_batch_model(build):
    model = build.mlp()
    session = runtime.open_session(model, device="cpu", threads=1)
    x = np.random.default_rng(0).random((5,) + build.SHAPE).astype(np.float32)
    assert session.batch_mode == "dynamic"
    assert session.provider == "CPUExecutionProvider" and session.device == "cpu"
    assert session.input_shape == build.SHAPE and session.input_size == 16
    np.testing.assert_allclose(session.run(x), _reference(model, x), rtol=1e-5, atol=1e-6)


def test_fixed_batch_one_is_rebatched_and_exact(build):
    model = build.mlp(fixed_batch=True)
    session = runtime.open_session(model, device="cpu")
    x = np.random.default_rng(1).random((7,) + build.SHAPE).astype(np.float32)
    assert session.batch_mode == "rebatched"
    np.testing.assert_allclose(session.run(x), _reference(model, x), rtol=1e-5, atol=1e-6)


def test_model_that_cannot_batch_is_looped(build):
    model = build.linear_pair(np.arange(16), shape=(16,), fixed_batch=True, reshape=[1, 16])
    session = runtime.open_session(model, device="cpu")
    assert session.batch_mode == "loop"
    x = np.random.default_rng(2).random((4, 16)).astype(np.float32)
    np.testing.assert_allclose(session.run(x), _reference(model, x), rtol=1e-6)


def test_loop_batching_keeps_the_model_as_is(build):
    session = runtime.open_session(build.mlp(fixed_batch=True), batching="loop")
    assert session.batch_mode == "loop"
    assert session.run(np.zeros((3,) + build.SHAPE)).shape == (3, 3)


def test_flat_rows_are_accepted_and_wrong_sizes_refused(build):
    session = runtime.open_session(build.mlp())
    flat = np.random.default_rng(3).random((2, 16))
    np.testing.assert_allclose(session.run(flat), session.run(flat.reshape(2, *build.SHAPE)))
    with pytest.raises(MismatchError, match="samples of shape"):
        session.run(np.zeros((2, 15)))


def test_spinning_is_off_on_cpu(build):
    session = runtime.open_session(build.mlp(), device="cpu")
    options = session._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_extra_inputs_are_fed_unbatched(build):
    from verifier.smoothing.graphs import CENTER_INPUT, with_center_input

    model = build.mlp()
    session = runtime.open_session(with_center_input(model))
    assert session.extra_inputs == (CENTER_INPUT,)
    rng = np.random.default_rng(4)
    noise = rng.random((6,) + build.SHAPE).astype(np.float32)
    center = rng.random((1,) + build.SHAPE).astype(np.float32)
    np.testing.assert_allclose(session.run(noise, {CENTER_INPUT: center}),
                               _reference(model, noise + center), rtol=1e-5, atol=1e-6)
    with pytest.raises(MismatchError, match=CENTER_INPUT):
        session.run(noise)


def test_new_ir_versions_are_lowered(build):
    model = build.mlp()
    model.ir_version = 14  # what onnx 1.23 writes by default; onnxruntime 1.31 refuses it
    assert runtime.open_session(model).run(np.zeros((1,) + build.SHAPE)).shape == (1, 3)


def test_paths_and_gzip(build, tmp_path):
    import gzip

    path = build.save(build.mlp(), tmp_path / "m.onnx")
    packed = tmp_path / "m.onnx.gz"
    packed.write_bytes(gzip.compress(open(path, "rb").read()))
    x = np.zeros((2,) + build.SHAPE)
    np.testing.assert_array_equal(runtime.open_session(path).run(x),
                                  runtime.open_session(packed).run(x))
    assert np.allclose(runtime.run_model(path, x), runtime.open_session(path).run(x))


def test_errors(tmp_path, build):
    with pytest.raises(InputFileError, match="does not exist"):
        runtime.open_session(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        runtime.open_session(bad)
    broken = build.mlp()
    broken.graph.node[1].op_type = "NoSuchOp"
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        runtime.open_session(broken)


def test_cuda_request_without_cuda_is_a_clean_error(build):
    ok, why = runtime.cuda_status()
    if ok:
        pytest.skip("a CUDA GPU is present here")
    assert why
    with pytest.raises(DeviceError, match="cuda"):
        runtime.open_session(build.mlp(), device="cuda")
    assert runtime.open_session(build.mlp(), device="auto").provider == "CPUExecutionProvider"


def test_only_runtime_imports_onnxruntime():
    """Design rule: verifier.runtime is the one module that imports onnxruntime."""
    import pathlib
    import re

    package = pathlib.Path(runtime.__file__).parent
    pattern = re.compile(r"^\s*(import onnxruntime|from onnxruntime)", re.M)
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name != "runtime.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_loaded_proto_is_reused(build):
    model = build.mlp()
    assert runtime.load_onnx(model) is model
    assert isinstance(runtime.load_onnx(model.SerializeToString()), onnx.ModelProto)


def test_model_without_a_batch_dimension_runs_sample_by_sample(build):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "nobatch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = build.IR_VERSION
    session = runtime.open_session(model)
    assert session.batch_mode == "unbatched" and session.input_shape == (5,)
    x = np.random.default_rng(5).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(session.run(x), np.maximum(x, 0))
