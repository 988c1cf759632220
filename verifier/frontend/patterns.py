"""Graph-level rewrites done before lowering: multi-node ONNX patterns that
stand for one core op (the Erf form of GELU exported by PyTorch)."""
from __future__ import annotations

import math

import numpy as np

# importing the converter modules fills the registry
from verifier.frontend import convert_elementwise, convert_linear, convert_shape  # noqa: F401


def _constant(name, values, constants):
    value = values.get(name, constants.get(name))
    if value is None or hasattr(value, "index"):
        return None
    array = np.asarray(value, dtype=np.float64)
    return float(array.reshape(-1)[0]) if array.size == 1 else None


def fuse_patterns(nodes, values, outputs=()):
    """Replace ``x * 0.5 * (1 + erf(x / sqrt(2)))`` chains by one Gelu node.

    A chain is fused only when each of its intermediate values has exactly
    one reader, inside the chain, and none is a graph output (``outputs``):
    fusing removes those values, so any other reader would lose them.
    """
    if not any(n.op_type == "Erf" for n in nodes):
        return nodes
    from onnx import helper, numpy_helper

    constants = {}
    for n in nodes:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            constants[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def const(name):
        return _constant(name, values, constants)

    def only_consumer(name, op_type):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def other(node, name):
        a, b = node.input
        return b if a == name else a if b == name else None

    removed: set[int] = set()
    replacement: dict[int, object] = {}
    for erf in (n for n in nodes if n.op_type == "Erf"):
        scale = producer.get(erf.input[0])
        if scale is None or len(consumers.get(scale.output[0], [])) != 1:
            continue
        if scale.op_type == "Div" and const(scale.input[1]) is not None \
                and abs(const(scale.input[1]) - math.sqrt(2)) < 1e-4:
            x = scale.input[0]
        elif scale.op_type == "Mul" and any(
                const(i) is not None and abs(const(i) - 1 / math.sqrt(2)) < 1e-4
                for i in scale.input):
            x = next(i for i in scale.input if const(i) is None)
        else:
            continue
        add = only_consumer(erf.output[0], "Add")
        if add is None or const(other(add, erf.output[0])) != 1.0:
            continue
        m1 = only_consumer(add.output[0], "Mul")
        if m1 is None:
            continue
        partner = other(m1, add.output[0])
        chain = [scale, erf, add, m1]
        if partner == x:  # (x * (1 + erf)) * 0.5
            m2 = only_consumer(m1.output[0], "Mul")
            if m2 is None or const(other(m2, m1.output[0])) != 0.5:
                continue
            chain.append(m2)
        elif const(partner) == 0.5:  # x * ((1 + erf) * 0.5)
            m2 = only_consumer(m1.output[0], "Mul")
            if m2 is None or other(m2, m1.output[0]) != x:
                continue
            chain.append(m2)
        else:  # (x * 0.5) * (1 + erf)
            half = producer.get(partner)
            if half is None or half.op_type != "Mul" or x not in half.input \
                    or const(other(half, x)) != 0.5 or len(consumers.get(partner, [])) != 1:
                continue
            chain.append(half)
        out = _final_output(chain)
        if any(n.output[0] in outputs for n in chain if n.output[0] != out):
            continue
        fused = helper.make_node("Gelu", [x], [out], name=f"{erf.name or 'erf'}/gelu",
                                 domain="verifier")
        positions = [nodes.index(n) for n in chain]
        removed.update(positions)
        replacement[max(positions)] = fused
    if not replacement:
        return nodes
    return [replacement.get(i, n) for i, n in enumerate(nodes)
            if i not in removed or i in replacement]


def _final_output(chain):
    """The output of the chain that is not consumed inside the chain."""
    inside = {i for n in chain for i in n.input}
    outs = [n.output[0] for n in chain if n.output[0] not in inside]
    return outs[0]
