"""Regenerate the bundled example model and properties (deterministic).

    python -m verifier.examples.make_examples
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def tiny_mlp(seed: int = 0) -> onnx.ModelProto:
    """A 5-16-16-3 ReLU network with an input of shape [1, 5]."""
    rng = np.random.default_rng(seed)
    sizes = [5, 16, 16, 3]
    nodes, inits, current = [], [], "input"
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        weight = (rng.normal(size=(fan_out, fan_in)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (0.1 * rng.normal(size=fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"fc{k}.weight"),
                  numpy_helper.from_array(bias, f"fc{k}.bias")]
        out = f"fc{k}" if k < len(sizes) - 2 else "output"
        nodes.append(helper.make_node("Gemm", [current, f"fc{k}.weight", f"fc{k}.bias"], [out],
                                      name=f"/fc{k}/Gemm", transB=1))
        current = out
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [out], [f"relu{k}"], name=f"/relu{k}/Relu"))
            current = f"relu{k}"
    graph = helper.make_graph(
        nodes, "tiny_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="verifier-examples")
    model.ir_version = 8
    return model


def robustness_property(center, eps, label, n_out) -> str:
    """VNN-LIB 1.0: some input within eps (L-inf) of center is not classified as label."""
    lines = [f"; the output of tiny_mlp.onnx stays class {label} on an L-inf ball of "
             f"radius {eps} around {list(center)}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(center))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, c in enumerate(center):
        lines += [f"(assert (>= X_{i} {c - eps!r}))", f"(assert (<= X_{i} {c + eps!r}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(n_out) if j != label)
    lines.append(f"(assert (or {others}))")
    return "\n".join(lines) + "\n"


def main():
    onnx.save(tiny_mlp(), str(HERE / "tiny_mlp.onnx"))
    center = [0.2, -0.1, 0.4, 0.0, 0.3]
    (HERE / "tiny_mlp_robust.vnnlib").write_text(robustness_property(center, 0.05, 0, 3))
    (HERE / "tiny_mlp_attack.vnnlib").write_text(robustness_property(center, 0.5, 0, 3))


if __name__ == "__main__":
    main()
