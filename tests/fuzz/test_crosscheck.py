"""The IR is checked against onnxruntime before any answer (verifier.crosscheck),
and models onnxruntime cannot run are rejected when they are loaded."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from tests.builders import chain_model, single_node_model
from verifier import crosscheck
from verifier.cli import main
from verifier.crosscheck import LoweringMismatchError, check_lowering, reference_session
from verifier.errors import ModelError
from verifier.frontend import load_model, registry
from verifier.frontend.loader import lower_model
from verifier.runtime import open_session
from verifier.spec import parse_vnnlib
from verifier.spec.property import Case, InputRegion, OutputPolytope, Property
from verifier.spec.writer import write_vnnlib
from verifier.verify import verify


def _net():
    """y = relu(W·(-x) + b), 3 inputs, 2 outputs, in [0, 10] for x in [0, 1]."""
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 1.0, size=(3, 2)).astype(np.float32)
    return chain_model([("Neg", [], {}), ("MatMul", [w], {}),
                        ("Add", [np.full(2, 5.0, np.float32)], {}), ("Relu", [], {})], [1, 3])


def _prop(threshold=0.5):
    """Unsafe: Y_0 <= threshold, for x in [0, 1]^3 (the true minimum is > 2)."""
    region = InputRegion(np.zeros(3), np.ones(3))
    unsafe = OutputPolytope(np.array([[1.0, 0.0]]), np.array([threshold]))
    return Property(3, 2, (Case(region, (unsafe,)),))


@pytest.fixture()
def files(tmp_path):
    model, prop = tmp_path / "net.onnx", tmp_path / "prop.vnnlib"
    onnx.save(_net(), str(model))
    prop.write_text(write_vnnlib(_prop()))
    return str(model), str(prop)


@pytest.fixture()
def neg_is_identity(monkeypatch):
    """A wrong lowering on purpose: Neg lowered as the identity, so the IR
    computes relu(W·x + b) >= 5 > 0.5 on the region and would prove ``unsat``."""
    identity = registry.lookup("Identity", 17)
    monkeypatch.setitem(registry._CONVERTERS, "Neg", [(1, identity)])


def test_a_correct_lowering_passes_against_float64_onnxruntime():
    proto = _net()
    result = check_lowering(lower_model(proto), proto, _prop())
    assert result.precision == "float64"
    assert result.points == 1 + 4 + 8
    assert result.max_difference <= result.tolerance


def test_without_float64_kernels_the_float32_model_is_compared(monkeypatch):
    proto = _net()
    monkeypatch.setattr(crosscheck, "reference_session", lambda proto: (None, ()))
    result = check_lowering(lower_model(proto), proto, _prop())
    assert result.precision == "float32"
    assert 0 < result.tolerance < 0.02


def test_a_wrong_lowering_is_reported_at_a_point_of_the_region(neg_is_identity):
    proto = _net()
    with pytest.raises(LoweringMismatchError, match="disagrees with onnxruntime at the "
                       "centre of the input region of net.onnx: max |difference|"):
        check_lowering(lower_model(proto), proto, _prop(), where="net.onnx")


def test_a_wrong_lowering_is_caught_on_the_float32_path_too(neg_is_identity, monkeypatch):
    proto = _net()
    monkeypatch.setattr(crosscheck, "reference_session", lambda proto: (None, ()))
    with pytest.raises(LoweringMismatchError, match="onnxruntime float32"):
        check_lowering(lower_model(proto), proto, _prop())


def test_verify_gives_no_answer_about_a_wrongly_lowered_model(files, neg_is_identity):
    model, prop = files
    with pytest.raises(LoweringMismatchError):
        verify(model, prop)


@pytest.mark.parametrize("command", ["verify", "bounds"])
def test_cli_exits_2_on_a_wrong_lowering(files, neg_is_identity, command, tmp_path):
    model, prop = files
    result = CliRunner().invoke(main, [command, model, prop])
    assert result.exit_code == 2, result.output
    assert "the model's lowering disagrees with onnxruntime" in result.output
    assert "unsat" not in result.output and "refuted" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_answers_on_a_correct_lowering(files):
    model, prop = files
    assert CliRunner().invoke(main, ["verify", model, prop]).output.startswith("unsat")
    assert CliRunner().invoke(main, ["bounds", model, prop]).exit_code == 0


def test_ops_without_float64_kernels_run_in_float32_inside_the_float64_reference():
    """onnxruntime has no float64 Conv: the reference runs only the Conv in
    float32 and is compared with the tighter mixed tolerance."""
    weight = np.random.default_rng(1).normal(size=(2, 1, 3)).astype(np.float32)
    proto = chain_model([("Conv", [weight], {}), ("Relu", [], {})], [1, 1, 5])
    with pytest.raises(ModelError):  # the all-float64 copy does not run
        open_session(crosscheck.float64_model(proto), device="cpu")
    reference, float32_ops = crosscheck.reference_session(proto)
    assert float32_ops == ("Conv",) and reference is not None
    region = InputRegion(np.zeros(5), np.ones(5))
    prop = Property(5, 6, (Case(region, (OutputPolytope(np.eye(6)[:1], np.zeros(1)),)),))
    result = check_lowering(lower_model(proto), proto, prop)
    assert result.precision == "float64 (Conv in float32)"
    assert result.max_difference <= result.tolerance < 1e-3


def test_points_lie_in_the_region_and_are_described():
    prop = parse_vnnlib(write_vnnlib(_prop()))
    x, labels = crosscheck.region_points(prop, np.random.default_rng(0))
    region = prop.cases[0].region
    assert x.dtype == np.float32 and len(x) == len(labels) == 13
    assert all(region.contains(p) for p in x)
    assert labels[0] == "the centre of the input region"
    np.testing.assert_array_equal(x[1], region.lower)
    np.testing.assert_array_equal(x[2], region.upper)


class _RoundsUp:
    """A stand-in reference whose sign(x - 0.5) rounds 0 up to +1 (as a
    different summation order may), or is wrong by ``error`` everywhere."""

    def __init__(self, error=0.0):
        self.error = error

    def run(self, x):
        z = np.asarray(x, np.float64) - 0.5
        return np.where(z == 0, 1.0, np.sign(z)) + self.error


def test_points_at_a_sign_discontinuity_are_skipped():
    """At the region's centre x - 0.5 is exactly 0: the IR says sign 0, a
    reference that rounds differently says 1. That point is skipped; a real
    difference elsewhere is still reported."""
    proto = chain_model([("Sub", [np.float32(0.5)], {}), ("Sign", [], {})], [1, 3])
    region = InputRegion(np.zeros(3), np.ones(3))
    prop = Property(3, 3, (Case(region, (OutputPolytope(np.eye(3)[:1], np.zeros(1)),)),))
    graph = lower_model(proto)
    assert check_lowering(graph, proto, prop, reference=(_RoundsUp(), ())).points == 13
    with pytest.raises(LoweringMismatchError, match="corner 1 of the input region"):
        check_lowering(graph, proto, prop, reference=(_RoundsUp(error=1e-3), ()),
                       session=_RoundsUp(error=1e-3))


def test_the_float32_network_decides_where_the_float64_copy_parts_from_it():
    """A MaxPool window wholly in the padding: the float64 copy pads with
    -1.8e308, the float32 network (and the IR) with -3.4e38. Not a mismatch."""
    proto = single_node_model("MaxPool", [1, 1, 2], attrs=dict(kernel_shape=[2], pads=[1, 1],
                                                                strides=[1], dilations=[3]))
    region = InputRegion(np.zeros(2), np.ones(2))
    prop = Property(2, 2, (Case(region, (OutputPolytope(np.eye(2)[:1], np.zeros(1)),)),))
    graph = lower_model(proto)
    reference = reference_session(proto)
    assert reference[0].run(np.zeros((1, 1, 2))).min() < -1e300  # the copy does part
    assert check_lowering(graph, proto, prop, reference=reference).points > 0


# -- models onnxruntime cannot run (audit B2.8) ------------------------------

def _unrunnable(tmp_path):
    """A 1-D Conv with dilations=[2], auto_pad=SAME_UPPER, group=2: the front end
    lowers it, onnxruntime loads it but cannot run it."""
    weight = np.random.default_rng(0).normal(size=(4, 1, 3)).astype(np.float32)
    proto = single_node_model("Conv", [1, 2, 8], inputs=("X", weight),
                              attrs=dict(dilations=[2], auto_pad="SAME_UPPER", group=2))
    path = tmp_path / "conv.onnx"
    onnx.save(proto, str(path))
    region = InputRegion(np.zeros(16), np.full(16, 0.1))
    prop = Property(16, 32, (Case(region, (OutputPolytope(np.eye(32)[:1], [1e6]),)),))
    prop_path = tmp_path / "prop.vnnlib"
    prop_path.write_text(write_vnnlib(prop))
    return str(path), str(prop_path)


def test_open_session_rejects_a_model_onnxruntime_cannot_run(tmp_path):
    model, _ = _unrunnable(tmp_path)
    load_model(model)  # the front end accepts it
    with pytest.raises(ModelError, match=r"onnxruntime cannot run .*conv\.onnx: .*Dilation "
                                         r"not supported"):
        open_session(model, device="cpu")


@pytest.mark.parametrize("command", ["inspect", "verify", "bounds"])
def test_cli_exits_2_when_onnxruntime_cannot_run_the_model(tmp_path, command):
    model, prop = _unrunnable(tmp_path)
    result_file = tmp_path / "result.txt"
    args = {"inspect": [model, "--samples", "0"], "bounds": [model, prop],
            "verify": [model, prop, "--result-file", str(result_file)]}[command]
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 2, result.output
    assert "onnxruntime cannot run" in result.output and "Dilation" in result.output
    assert "unsat" not in result.output and "Traceback" not in result.output
    if command == "verify":
        assert result_file.read_text().splitlines()[0] == "error"
