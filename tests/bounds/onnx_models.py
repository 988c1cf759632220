"""Small ONNX models (onnx.helper) covering the ops the front end lowers, for
soundness checks through load_model and onnxruntime."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # onnxruntime 1.31 accepts at most 13; onnx 1.23 writes 14


class OnnxBuilder:
    def __init__(self, input_shape, rng, opset=17):
        self.rng = rng
        self.opset = opset
        self.nodes, self.inits = [], []
        self.input_shape = list(input_shape)
        self.count = 0

    def const(self, array):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def int_const(self, array):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.int64), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out],
                                           name=f"{op_type.lower()}_{self.count}", **attrs))
        return out

    def normal(self, *shape, scale=1.0):
        return self.rng.normal(scale=scale, size=shape)

    def gemm(self, x, n_in, n_out):
        return self.op("Gemm", [x, self.const(self.normal(n_out, n_in, scale=n_in ** -0.5)),
                                self.const(self.normal(n_out, scale=0.3))], transB=1)

    def conv(self, x, c_in, c_out, k, **attrs):
        groups = attrs.get("group", 1)
        w = self.normal(c_out, c_in // groups, k, k, scale=(c_in // groups * k * k) ** -0.5)
        return self.op("Conv", [x, self.const(w), self.const(self.normal(c_out, scale=0.3))],
                       **attrs)

    def model(self, output):
        graph = helper.make_graph(
            self.nodes, "bounds_test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = IR_VERSION
        return model


def relu_mlp(rng):
    b = OnnxBuilder([1, 2, 3], rng)
    x = b.op("Flatten", ["x"])
    x = b.op("Relu", [b.gemm(x, 6, 10)])
    x = b.op("Relu", [b.gemm(x, 10, 10)])
    return b.model(b.gemm(x, 10, 4))


def conv_model(rng):
    """Sub/Div normalisation, Conv, BatchNormalization, Relu, MaxPool,
    ConvTranspose, LeakyRelu, grouped strided Conv, Flatten, Gemm, Sigmoid, Softmax."""
    b = OnnxBuilder([1, 2, 6, 6], rng)
    x = b.op("Div", [b.op("Sub", ["x", b.const(0.1)]), b.const(0.8)])
    x = b.conv(x, 2, 4, 3, pads=[1, 1, 1, 1])
    x = b.op("BatchNormalization", [x, b.const(b.normal(4)), b.const(b.normal(4)),
                                    b.const(b.normal(4)), b.const(np.abs(b.normal(4)) + 0.5)])
    x = b.op("Relu", [x])
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    w = b.normal(4, 2, 2, 2, scale=0.5)
    x = b.op("ConvTranspose", [x, b.const(w), b.const(b.normal(4, scale=0.3))], strides=[2, 2],
             group=2)
    x = b.op("LeakyRelu", [x], alpha=0.1)
    x = b.conv(x, 4, 4, 3, strides=[2, 2], pads=[1, 1, 1, 1], group=2)
    x = b.op("Flatten", [x])
    x = b.op("Sigmoid", [b.gemm(x, 36, 8)])
    return b.model(b.op("Softmax", [b.gemm(x, 8, 3)], axis=1))


def smooth_model(rng):
    """MatMul + Add, Tanh, Slice, Concat, Transpose, Softplus, PRelu, Pad, residual
    Add, GELU (Erf pattern), Sign."""
    b = OnnxBuilder([1, 4], rng)
    h = b.op("Add", [b.op("MatMul", ["x", b.const(b.normal(4, 6))]), b.const(b.normal(6))])
    t = b.op("Tanh", [h])
    s = b.op("Slice", [t, b.int_const([1]), b.int_const([5]), b.int_const([1])])  # (1, 4)
    c = b.op("Concat", [s, "x"], axis=1)                                        # (1, 8)
    c = b.op("Softplus", [c])
    r = b.op("Reshape", [c, b.int_const([1, 2, 4])])
    r = b.op("Transpose", [r], perm=[0, 2, 1])                                  # (1, 4, 2)
    r = b.op("PRelu", [r, b.const(np.array([0.25, -0.5]))])
    r = b.op("Pad", [b.op("Flatten", [r]), b.int_const([0, 1, 0, 1])], mode="constant")
    r = b.op("Add", [r, b.gemm(c, 8, 10)])                                      # (1, 10)
    # GELU as x * 0.5 * (1 + erf(x / sqrt(2)))
    e = b.op("Erf", [b.op("Div", [r, b.const(np.sqrt(2.0))])])
    g = b.op("Mul", [b.op("Mul", [r, b.const(0.5)]), b.op("Add", [e, b.const(1.0)])])
    y = b.gemm(g, 10, 3)
    sign = b.op("Sign", [b.gemm("x", 4, 2)])
    return b.model(b.op("Concat", [y, sign], axis=1))
