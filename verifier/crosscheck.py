"""The IR is checked against onnxruntime before any answer is given.

    check_lowering(graph, proto, prop, where=...) -> CrossCheck   (or raises)

Every bound and every proof is computed on the lowered IR; a lowering bug
would make them statements about a different function. So before ``verify``
or ``bounds`` answer, the IR (float64, :func:`verifier.ir.evaluate`) and
onnxruntime are run on the same float32 points of the property's own input
regions: each region's centre, some of its corners (all-lower, all-upper,
random ones) and uniform random points, in one batched call per evaluator.

What the two may legitimately differ by, and the tolerances used:

- onnxruntime running a float64 copy of the model (:func:`float64_model`;
  possible when onnxruntime has float64 kernels for every op) computes the
  same real function with float64 arithmetic, but not every float64 kernel
  is correctly rounded: a Sigmoid -> broadcast MatMul graph (fuzz seed 152)
  differs from exact float64 by 8.5e-9 relative once onnxruntime's graph
  optimisations are off or the batch is symbolic. :data:`FLOAT64_TOLERANCE`
  (1e-6) times the largest absolute intermediate value of the point (at
  least 1) leaves two orders of magnitude for that, while a wrong lowering
  differs by a visible fraction of the outputs.
- Where onnxruntime lacks float64 kernels for some ops (Conv, Softplus, Erf,
  LeakyRelu at onnxruntime 1.31), only those nodes run in float32, between
  Casts (:func:`reference_session`). Their float32 rounding (a few eps32 of
  each such node's output) then propagates: :data:`MIXED_TOLERANCE`
  (2^-14 ≈ 6e-5, ~500 eps32) times the largest intermediate magnitude;
  measured on the oval21 conv networks: differences up to 5e-7 against a
  tolerance of 4e-4.
- Otherwise onnxruntime's float32 model is compared. float32 rounding of a
  sum of n terms is up to about n·eps32·sum|terms|, which even for wide
  layers stays below :data:`FLOAT32_TOLERANCE` (2^-10 ≈ 1e-3, ~8000 eps32)
  times the largest absolute intermediate value, unless the network cancels
  large terms (then a mismatch may be reported for a correct lowering; the
  float64 paths above do not have that weakness).

The float32 session is always run as well (it is the network users deploy
and the checker replays): a model that onnxruntime cannot run is rejected
(:func:`verifier.runtime.open_session`).

Points next to a discontinuity of the IR (the input of a Sign node within the
tolerance of 0) are skipped: there a rounding difference legitimately flips
the output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.bounds.roundoff import OVERFLOW_LIMIT
from verifier.errors import ModelError
from verifier.ir import evaluate, ops

#: float64 onnxruntime vs the IR: at most this times max(1, max |intermediate|)
FLOAT64_TOLERANCE = 1e-6
#: float64 onnxruntime with some ops in float32 (no float64 kernels) vs the IR
MIXED_TOLERANCE = 2.0 ** -14
#: float32 onnxruntime vs the IR (no float64 reference at all): the same, relative
FLOAT32_TOLERANCE = 2.0 ** -10


class LoweringMismatchError(ModelError):
    """The IR computes a different function than onnxruntime on the model."""


@dataclass(frozen=True)
class CrossCheck:
    """What :func:`check_lowering` compared: point count, the largest
    difference and its tolerance there, and the onnxruntime precision."""

    points: int
    max_difference: float
    tolerance: float
    precision: str


def float64_model(proto, float32_ops=()):
    """A copy of ``proto`` computing in float64 (weights, constants, casts, I/O).

    The IR is exact float64 arithmetic; comparing it with onnxruntime running
    the same graph in float64 checks the semantics without float32 rounding
    (which alone reaches 2e-5 relative on acasxu networks with small outputs).
    Nodes whose op type is in ``float32_ops`` (onnxruntime has no float64
    kernel for them, e.g. Conv) are run in float32 between two Casts.
    """
    from verifier.frontend import proto as pb

    model = type(proto)()
    model.CopyFrom(proto)
    graph = model.graph
    FLOAT, DOUBLE = pb.FLOAT, pb.DOUBLE

    def widen(tensor):
        if tensor.data_type == FLOAT:
            pb.store_array(tensor, pb.to_array(tensor).astype(np.float64))

    for tensor in graph.initializer:
        widen(tensor)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == pb.TENSOR:
                widen(attr.t)
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = DOUBLE
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == FLOAT:
            value.type.tensor_type.elem_type = DOUBLE
    del graph.value_info[:]
    if float32_ops:
        import onnx
        from onnx import helper

        inferred = onnx.shape_inference.infer_shapes(pb.as_model(model, onnx)).graph
        types = {v.name: v.type.tensor_type.elem_type
                 for v in list(inferred.value_info) + list(inferred.input)}
        types.update({t.name: t.data_type for t in graph.initializer})
        nodes = []
        for node in graph.node:
            if node.op_type not in float32_ops:
                nodes.append(node)
                continue
            for k, name in enumerate(node.input):
                if name and types.get(name) == DOUBLE:
                    nodes.append(helper.make_node("Cast", [name], [f"{name}/f32/{node.name}"],
                                                  to=FLOAT))
                    node.input[k] = f"{name}/f32/{node.name}"
            outputs = list(node.output)
            for k, name in enumerate(outputs):
                node.output[k] = f"{name}/f32"
            nodes.append(node)
            nodes += [helper.make_node("Cast", [f"{name}/f32"], [name], to=DOUBLE)
                      for name in outputs]
        del graph.node[:]
        graph.node.extend(nodes)
    return model


def reference_session(proto):
    """The most precise onnxruntime reference of ``proto``: (session, the op
    types run in float32 because onnxruntime has no float64 kernel for them),
    or (None, ()) when not even that runs."""
    import re

    from verifier.runtime import open_session

    float32_ops: tuple[str, ...] = ()
    for _ in range(8):
        try:
            return open_session(float64_model(proto, float32_ops), device="cpu"), float32_ops
        except Exception as exc:  # noqa: BLE001
            missing = re.search(r"implementation for (\w+)\(", str(exc))
            if missing is None or missing.group(1) in float32_ops:
                break
            float32_ops += (missing.group(1),)
    return None, ()


def region_points(prop, rng, corners: int = 4, samples: int = 8, max_cases: int = 5):
    """float32 points of the property's input boxes, and a description of each.

    Per case (at most ``max_cases``, evenly spread): the centre, the
    all-lower and all-upper corners and ``corners - 2`` random corners, and
    ``samples`` uniform random points; all rounded to float32 inside the box.
    """
    from verifier.result import float32_inside

    picked = np.unique(np.linspace(0, len(prop.cases) - 1, min(max_cases, len(prop.cases)))
                       .round().astype(int))
    points, labels = [], []
    for k in picked:
        region = prop.cases[k].region
        lower, upper = region.lower, region.upper
        where = f"input region {k + 1}" if len(prop.cases) > 1 else "the input region"
        bits = rng.integers(0, 2, size=(max(corners - 2, 0), lower.size)).astype(bool)
        chosen = [np.zeros(lower.size, bool), np.ones(lower.size, bool)][:corners] + list(bits)
        rows = [(region.center, f"the centre of {where}")]
        rows += [(np.where(b, upper, lower), f"corner {j + 1} of {where} "
                  f"(X at its upper bound at {int(b.sum())} of {b.size} entries)")
                 for j, b in enumerate(chosen)]
        rows += [(lower + rng.random(lower.size) * (upper - lower),
                  f"random point {j + 1} of {where}") for j in range(samples)]
        for x, label in rows:
            points.append(float32_inside(x, lower, upper))
            labels.append(label)
    return np.stack(points), labels


def magnitudes(values) -> np.ndarray:
    """max(1, largest absolute value of any node) per point; ``values``: every
    node's batched value (:func:`verifier.ir.evaluate` with ``all_values``)."""
    scale = np.ones(len(values[0]))
    for v in values:
        scale = np.maximum(scale, np.abs(v.reshape(len(v), -1)).max(axis=1, initial=0.0))
    return scale


def _near_discontinuity(graph, values, tolerance) -> np.ndarray:
    """Points where some Sign node's input is within ``tolerance`` of 0."""
    near = np.zeros(len(values[0]), bool)
    for node in graph.nodes:
        if isinstance(node, ops.Sign):
            z = values[node.inputs[0]].reshape(len(near), -1)
            near |= (np.abs(z) <= tolerance[:, None]).any(axis=1)
    return near


def _difference(got, expected) -> np.ndarray:
    """|got - expected|, infinite where only one side is finite, 0 where both are NaN."""
    difference = np.abs(got - expected)
    difference[~np.isfinite(difference)] = np.inf
    difference[np.isnan(got) & np.isnan(expected)] = 0.0
    difference[np.isinf(got) & (got == expected)] = 0.0
    # float32 overflow, not a lowering bug: the IR's real value is beyond half
    # of float32's range and onnxruntime rounds it to the infinity of its sign
    # (the float32 margins are infinite there: no proof rests on such values)
    overflow = np.isinf(expected) & (np.abs(got) >= OVERFLOW_LIMIT) & \
        (np.sign(got) == np.sign(expected))
    difference[overflow] = 0.0
    return difference


def check_lowering(graph, proto, prop, *, where: str = "the model", session=None,
                   reference=None, seed: int = 0) -> CrossCheck:
    """Compare the IR with onnxruntime on points of ``prop``'s input regions.

    ``session``: the float32 :class:`verifier.runtime.Session` of ``proto``
    when the caller has one (else one is opened); ``reference``: what
    :func:`reference_session` returns (else it is called).

    Raises :class:`LoweringMismatchError` naming the first point whose
    difference exceeds the tolerance (module docstring), and
    :class:`verifier.errors.ModelError` when onnxruntime cannot run the
    model. Returns what was compared otherwise.
    """
    from verifier.runtime import open_session

    if session is None:
        session = open_session(proto, device="cpu", name=where)
    reference, float32_ops = reference if reference is not None else reference_session(proto)
    x32, labels = region_points(prop, np.random.default_rng(seed))
    n = len(x32)
    values = evaluate(graph, x32.astype(np.float64).reshape((n,) + graph.input_shape),
                      all_values=True)
    ir = values[graph.output].reshape(n, -1)
    ort32 = session.run(x32).reshape(n, -1).astype(np.float64)
    if reference is not None and not float32_ops:
        expected = reference.run(x32.astype(np.float64)).reshape(n, -1)
        precision, relative = "float64", FLOAT64_TOLERANCE
    elif reference is not None:
        expected = reference.run(x32.astype(np.float64)).reshape(n, -1)
        precision = f"float64 ({', '.join(float32_ops)} in float32)"
        relative = MIXED_TOLERANCE
    else:
        expected, precision, relative = ort32, "float32", FLOAT32_TOLERANCE
    tolerance = relative * magnitudes(values)
    if expected.shape != ir.shape:
        raise LoweringMismatchError(
            f"the model's lowering disagrees with onnxruntime on {where}: the IR has "
            f"{ir.shape[1]} output values, onnxruntime {expected.shape[1]}")
    difference = _difference(ir, expected)
    worst = difference.max(axis=1)
    bad = (worst > tolerance) & ~_near_discontinuity(graph, values, tolerance)
    if bad.any() and expected is not ort32:
        # The float64 copy is a proxy of the float32 network, not the network
        # itself: where they part (e.g. MaxPool pads with the lowest value of
        # its own type, so a window wholly in the padding gives -1.8e308 in
        # float64 and -3.4e38 in float32, as the IR does), the float32 network
        # decides, at the float32 tolerance.
        agrees32 = _difference(ir, ort32).max(axis=1) <= FLOAT32_TOLERANCE * magnitudes(values)
        bad &= ~agrees32
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        j = int(np.argmax(difference[p]))
        raise LoweringMismatchError(
            f"the model's lowering disagrees with onnxruntime at {labels[p]} of {where}: "
            f"max |difference| {worst[p]:.3g} at Y_{j} (IR {ir[p, j]:.9g}, onnxruntime "
            f"{precision} {expected[p, j]:.9g}) exceeds the tolerance {tolerance[p]:.3g} "
            f"({relative:g} x the largest intermediate magnitude); the verifier would "
            f"answer about a different function, so it stops (a front-end bug: please "
            f"report it with the model)")
    k = int(np.argmax(worst / tolerance)) if n else 0
    return CrossCheck(n, float(worst.max(initial=0.0)), float(tolerance[k]) if n else 0.0,
                      precision)


__all__ = ["CrossCheck", "FLOAT32_TOLERANCE", "FLOAT64_TOLERANCE", "LoweringMismatchError",
           "MIXED_TOLERANCE", "check_lowering", "float64_model",
           "magnitudes", "reference_session", "region_points"]
