"""Builders for small ONNX models (onnx.helper) used across the tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # onnxruntime accepts at most 13; onnx writes 14 by default
X = "X"  # marks the model input among a node's inputs


def _rng_array(rng, shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def single_node_model(op_type, input_shape, inputs=(X,), attrs=None, opset=17,
                      outputs=1, seed=0, batch_param=False):
    """A model with one node ``op_type`` whose inputs are ``inputs``.

    ``inputs`` lists, in order, ``X`` (the model input) or constant arrays (as
    initializers), or ``None`` for an omitted optional input.
    """
    names, inits = [], []
    for i, item in enumerate(inputs):
        if item is None:
            names.append("")
        elif isinstance(item, str) and item == X:
            names.append("x")
        else:
            array = np.asarray(item)
            name = f"c{i}"
            inits.append(numpy_helper.from_array(array, name))
            names.append(name)
    out_names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, out_names, name=f"{op_type.lower()}_node",
                            **(attrs or {}))
    shape = list(input_shape)
    if batch_param:
        shape[0] = "batch"
    graph = helper.make_graph(
        [node], "single", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out_names[0], TensorProto.FLOAT, None)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def graph_model(nodes, inits, input_shape, output, opset=17):
    """A model of ``nodes`` (onnx.helper nodes) reading the input ``x``;
    ``inits`` maps initializer names to arrays (stored as float32 unless
    they are integer arrays); ``output`` names the graph output."""
    initializers = []
    for name, value in inits.items():
        array = np.asarray(value)
        if array.dtype.kind != "i":
            array = array.astype(np.float32)
        initializers.append(numpy_helper.from_array(array, name))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def chain_model(layers, input_shape, opset=17):
    """A model of nodes applied in sequence: ``layers`` is a list of
    (op_type, [extra constant inputs], attrs)."""
    nodes, inits = [], []
    current = "x"
    for k, (op_type, consts, attrs) in enumerate(layers):
        names = [current]
        for j, c in enumerate(consts):
            name = f"l{k}_c{j}"
            inits.append(numpy_helper.from_array(np.asarray(c), name))
            names.append(name)
        out = f"t{k}"
        nodes.append(helper.make_node(op_type, names, [out], name=f"n{k}_{op_type}", **attrs))
        current = out
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def relu_mlp_model(seed, n_in, hidden, n_out, bias=0.5, divisor=3.0, activation="Relu"):
    """Gemm -> Relu -> Gemm -> Relu -> Gemm with weights drawn from ``seed`` in
    the order W1, b1, W2, b2, W3: the first layer's weights standard normal,
    the later ones divided by ``divisor``, hidden biases ``bias`` times
    standard normal, output bias 0 (``activation``: another element-wise op
    in place of Relu, e.g. Sigmoid)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    W1 = rng.normal(size=(hidden, n_in)).astype(f32)
    b1 = (bias * rng.normal(size=hidden)).astype(f32)
    W2 = (rng.normal(size=(hidden, hidden)) / divisor).astype(f32)
    b2 = (bias * rng.normal(size=hidden)).astype(f32)
    W3 = (rng.normal(size=(n_out, hidden)) / divisor).astype(f32)
    layers = [("Gemm", [W1, b1], {"transB": 1}), (activation, [], {}),
              ("Gemm", [W2, b2], {"transB": 1}), (activation, [], {}),
              ("Gemm", [W3, np.zeros(n_out, f32)], {"transB": 1})]
    return chain_model(layers, (1, n_in))


def run_onnxruntime(model, x):
    """Run a ModelProto on each x[i] (the model's own input shape); stack."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run(None, {name: x[i].astype(np.float32)})[0]
                     for i in range(x.shape[0])])


def save(model, path):
    onnx.save(model, str(path))
    return path
