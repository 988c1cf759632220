"""Loader behaviour: graphs with branches, the GELU pattern, errors, shared networks."""
from __future__ import annotations

import gzip
import math

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from tests.builders import (
    IR_VERSION, chain_model, graph_model, run_onnxruntime, save, single_node_model,
)
from tests.conftest import require_shared
from verifier.cli import main
from verifier.errors import (
    InputFileError, MismatchError, ModelError, UnsupportedGraphError, UnsupportedModelError,
)
from verifier.frontend import load_model
from verifier.ir import evaluate, ops
from verifier.ir.evaluate import EVAL_RULES


def _assert_matches(model, shape, seed=0):
    graph = load_model(model)
    x = np.random.default_rng(seed).uniform(-2, 2, size=(4,) + tuple(shape)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = evaluate(graph, x.astype(np.float64)).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return graph


def test_every_core_op_has_an_evaluation_rule():
    assert set(ops.CORE_OPS) <= set(EVAL_RULES)


def test_residual_graph_with_shared_consumers():
    rng = np.random.default_rng(0)
    inits = {"w1": rng.normal(size=(6, 6)), "w2": rng.normal(size=(6, 6)), "b": rng.normal(size=6)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["h2"]),
        helper.make_node("Add", ["h2", "x"], ["res"]),      # residual: x used twice
        helper.make_node("Add", ["res", "b"], ["res_b"]),
        helper.make_node("Mul", ["r", "b"], ["side"]),       # r has two consumers
        helper.make_node("Sub", ["res_b", "side"], ["out"]),
    ]
    graph = _assert_matches(graph_model(nodes, inits, (1, 6), "out"), (1, 6))
    assert graph.op_counts()["Add"] == 2


@pytest.mark.parametrize("form", ["div_then_x_first", "mul_half_last", "half_first"])
def test_erf_gelu_pattern_becomes_one_gelu(form):
    s2 = np.float32(math.sqrt(2))
    inits = {"s2": s2, "one": np.float32(1.0), "half": np.float32(0.5),
             "inv": np.float32(1 / math.sqrt(2))}
    if form == "div_then_x_first":
        nodes = [helper.make_node("Div", ["x", "s2"], ["t"]), helper.make_node("Erf", ["t"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["out"])]
    elif form == "mul_half_last":
        nodes = [helper.make_node("Mul", ["x", "inv"], ["t"]), helper.make_node("Erf", ["t"], ["e"]),
                 helper.make_node("Add", ["one", "e"], ["a"]), helper.make_node("Mul", ["a", "half"], ["m"]),
                 helper.make_node("Mul", ["x", "m"], ["out"])]
    else:
        nodes = [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Div", ["x", "s2"], ["t"]),
                 helper.make_node("Erf", ["t"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"]),
                 helper.make_node("Mul", ["h", "a"], ["out"])]
    graph = _assert_matches(graph_model(nodes, inits, (1, 5), "out"), (1, 5))
    assert dict(graph.op_counts()) == {"Input": 1, "Gelu": 1}


def test_constant_shape_chain_is_folded():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["nu"]),
        helper.make_node("Concat", ["nu", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
                     numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
                     numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    lowered = _assert_matches(model, (1, 2, 3))
    assert lowered.output_shape == (1, 6)
    assert dict(lowered.op_counts()) == {"Input": 1, "Reshape": 1}


def test_unsupported_model_names_every_bad_node():
    nodes = [helper.make_node("Erf", ["x"], ["a"], name="blk/erf"),
             helper.make_node("Relu", ["a"], ["b"], name="after_erf"),
             helper.make_node("Mul", ["x", "x"], ["c"], name="square"),
             helper.make_node("Add", ["b", "c"], ["out"], name="sum")]
    with pytest.raises(UnsupportedModelError) as info:
        load_model(graph_model(nodes, {}, (1, 3), "out"))
    names = [n.name for n in info.value.nodes]
    assert names == ["blk/erf", "square"]  # downstream nodes are not blamed
    message = str(info.value)
    assert "op Erf, opset 17" in message and "not affine" in message


def test_unsupported_attribute_is_named():
    model = single_node_model("Pad", (1, 2, 3), ["X", np.array([0, 0, 1, 0, 0, 1])],
                              {"mode": "mirror"})
    with pytest.raises(UnsupportedModelError, match="mode 'mirror'"):
        load_model(model)


def _two_value_model(inputs, outputs, elem=TensorProto.FLOAT):
    nodes = [helper.make_node("Add", ["x", "y"], ["z"]), helper.make_node("Neg", ["z"], ["w"])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info(n, elem, [1, 2]) for n in inputs],
                              [helper.make_tensor_value_info(n, elem, None) for n in outputs],
                              initializer=[numpy_helper.from_array(np.ones((1, 2), np.float32),
                                                                   "y")] * ("y" not in inputs))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


@pytest.mark.parametrize("inputs, outputs, expected", [
    ("xy", "w", "exactly one non-constant input, found 2 ('x', 'y')"),
    ("x", "zw", "exactly one output, found 2 ('z', 'w')"),
])
def test_graph_level_problems_are_model_level_messages(inputs, outputs, expected):
    with pytest.raises(UnsupportedGraphError) as info:
        load_model(_two_value_model(inputs, outputs), name="two.onnx")
    message = str(info.value)
    assert message == f"unsupported model in two.onnx: the model must have {expected}"
    assert "<graph>" not in message and "node" not in message
    assert isinstance(info.value, UnsupportedModelError) and info.value.nodes == []


def test_non_float_input_names_its_element_type():
    with pytest.raises(UnsupportedGraphError, match="input 'x' has element type int64;"):
        load_model(_two_value_model("x", "w", elem=TensorProto.INT64))


@pytest.mark.parametrize("op_type, hint", [
    ("LSTM", "recurrent ops are not supported; export the unrolled network"),
    ("Loop", "control-flow ops"),
    ("Resize", "Resize is not supported"),
])
def test_well_known_unsupported_ops_give_a_reason(op_type, hint):
    with pytest.raises(UnsupportedModelError) as info:
        load_model(single_node_model(op_type, (1, 3)))
    assert hint in str(info.value) and f"op {op_type}" in str(info.value)


def test_a_property_given_as_model_suggests_swapping(tmp_path):
    prop = tmp_path / "prop.vnnlib"
    prop.write_text("; a property\n(declare-const X_0 Real)\n(assert (<= X_0 1.0))\n")
    with pytest.raises(ModelError, match="is not a valid ONNX model: it is a VNN-LIB property; "
                                         "did you swap MODEL and PROPERTY"):
        load_model(prop)
    runner = CliRunner()
    model = save(single_node_model("Relu", (1, 1)), tmp_path / "m.onnx")
    result = runner.invoke(main, ["verify", str(prop), str(model)])
    assert result.exit_code == 2 and "did you swap MODEL and PROPERTY" in result.output
    assert "Traceback" not in result.output and "DecodeError" not in result.output


def test_size_mismatch_says_value_in_the_singular(tmp_path):
    from verifier.spec import load_property

    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)"
                    "\n(assert (<= X_0 1.0))\n(assert (>= X_0 0.0))\n(assert (<= Y_0 Y_1))\n")
    with pytest.raises(MismatchError) as info:
        load_property(prop).check_sizes(1, 1, model="model m.onnx")
    assert "but model m.onnx has 1 output value" in str(info.value)
    assert "output values" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf \x00\xff" * 10)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_model(junk)


def test_gzipped_model_loads(tmp_path):
    model = single_node_model("Relu", (1, 4))
    path = tmp_path / "m.onnx.gz"
    path.write_bytes(gzip.compress(model.SerializeToString()))
    assert load_model(path).output_shape == (1, 4)


def test_ir_nodes_are_immutable():
    graph = load_model(single_node_model("Gemm", (1, 3), ["X", np.ones((2, 3), np.float32)],
                                         {"transB": 1}))
    linear = graph.nodes[-1]
    with pytest.raises(ValueError):
        linear.weight[0, 0] = 5.0
    with pytest.raises(AttributeError):
        linear.weight = None


# ---------------------------------------------------------------- CLI


def test_inspect_cli_ok_and_json(tmp_path):
    path = save(chain_model([("Gemm", [np.ones((4, 3), np.float32)], {"transB": 1}),
                             ("Relu", [], {})], (1, 3)), tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "Linear" in result.output and "[ok]" in result.output
    result = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    import json

    data = json.loads(result.output)
    assert data["consistent"] and data["parameters"] == 12 and data["output_shape"] == [1, 4]


def test_inspect_cli_errors_exit_2_without_traceback(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["inspect", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert "Traceback" not in result.output
    path = save(single_node_model("Erf", (1, 3)), tmp_path / "erf.onnx")
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "error: unsupported model" in result.output and "erf_node" in result.output


# ---------------------------------------------------------------- shared networks


def _shared_networks():
    root = require_shared("vnncomp")
    return sorted(root.glob("*/*/*.onnx"))


def test_every_shared_network_loads_and_matches_onnxruntime():
    from verifier.inspect import inspect_model

    paths = _shared_networks()
    assert len(paths) == 53
    for path in paths:
        report = inspect_model(path, samples=8)
        assert report.consistent, (path, report.max_relative_error)


def test_affine_chains_are_folded_exactly():
    rng = np.random.default_rng(5)
    model = chain_model([
        ("Conv", [rng.normal(size=(4, 2, 3, 3)).astype(np.float32)], {"pads": [1, 1, 1, 1]}),
        ("BatchNormalization", [rng.uniform(0.5, 2, 4).astype(np.float32),
                                rng.normal(size=4).astype(np.float32),
                                rng.normal(size=4).astype(np.float32),
                                rng.uniform(0.5, 2, 4).astype(np.float32)], {}),
        ("Relu", [], {}),
        ("Flatten", [], {}),
        ("MatMul", [rng.normal(size=(4 * 5 * 5, 6)).astype(np.float32)], {}),
        ("Add", [rng.normal(size=6).astype(np.float32)], {}),
        ("Mul", [np.float32(2.0)], {}),
    ], (1, 2, 5, 5))
    graph = _assert_matches(model, (1, 2, 5, 5))
    assert dict(graph.op_counts()) == {"Input": 1, "Conv": 1, "Relu": 1, "Reshape": 1,
                                       "Linear": 1}


def test_an_output_that_ignores_the_input_is_a_model_level_message():
    nodes = [helper.make_node("Relu", ["x"], ["unused"]),
             helper.make_node("Add", ["a", "b"], ["out"])]
    model = graph_model(nodes, {"a": np.ones(2), "b": np.ones(2)}, (1, 2), "out")
    with pytest.raises(UnsupportedGraphError,
                       match=r"^unsupported model in <model>: the output 'out' does not depend "
                             r"on the input$"):
        load_model(model)
