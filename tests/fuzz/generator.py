"""Random ONNX networks for differential fuzzing, built with onnx.helper only.

    generate(seed, ops=None) -> FuzzModel(model, input_shape, ops, patterns)

This module does not import the verifier: the networks are an independent
oracle's inputs (onnxruntime gives their meaning). A network is a random
sequence of steps over a pool of live tensors of rank 2, 3 or 4 (batch 1).
Each step applies one ONNX op (or a small pattern) to a tensor of the pool,
chosen mostly as the latest one and sometimes as an earlier one, so that a
tensor often feeds several consumers. The composition patterns that broke
single-op tests are drawn on purpose (``FuzzModel.patterns`` names them):

- ``shared``: a tensor read by two or more nodes;
- ``negative-axis``: an axis attribute or input given as a negative number;
- ``matmul-rank3``: MatMul on a tensor of rank 3 or more (either side constant);
- ``pool-padding``: pooling whose pads and dilations make windows that lie
  (almost) entirely in the padding;
- ``residual``: Add/Sub/Concat of two branches from the same input;
- ``affine-chain``: chains of Mul/Add/Sub/Div/Neg/BatchNorm that the
  simplifier folds, including into a shared operand;
- ``gelu-pattern``: the Erf form of GELU; ``shape-chain``: Reshape through
  Shape -> Gather -> Concat;
- ``float32-cancel``: (x·A + B) - x·A with large A, where float32 rounding
  is far larger than the real-valued outputs' variation.

Every generated model has one float input (shape ``input_shape``, batch 1),
one output of at most 8 values, opset 13-20 and IR version 8-10, and runs in
onnxruntime (models it cannot run are redrawn).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: every ONNX op the generator can emit (the front end's list, less Relu6,
#: which is not an ONNX op, and Shape/Constant/Erf, which appear in patterns)
OPS = ("Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "CastLike", "Clip",
       "Concat", "Constant", "Conv", "ConvTranspose", "Div", "Dropout", "Erf", "Expand",
       "Flatten", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
       "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Neg", "PRelu", "Pad",
       "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Sign", "Slice",
       "Softmax", "Softplus", "Split", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze")

MAX_OUTPUTS = 8
MAX_ELEMENTS = 96


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class FuzzModel:
    """A generated network: the model, its input shape, the ONNX op types it
    uses (with counts) and the composition patterns drawn."""

    seed: int
    model: onnx.ModelProto
    input_shape: tuple[int, ...]
    ops: Counter = field(default_factory=Counter)
    patterns: frozenset = frozenset()

    @property
    def opset(self) -> int:
        return self.model.opset_import[0].version


class _Builder:
    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng = rng
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self.ops: Counter = Counter()
        self.patterns: set[str] = set()
        self.uses: Counter = Counter()
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, value, dtype=np.float32, as_node: bool = False) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.fresh("c")
        if as_node:  # a Constant node instead of an initializer
            self.nodes.append(helper.make_node("Constant", [], [name], name=self.fresh("n"),
                                               value=numpy_helper.from_array(array, name)))
            self.ops["Constant"] += 1
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def weight(self, shape, fan_in=None):
        fan_in = fan_in or shape[-1]
        return self.rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), size=shape)

    def node(self, op: str, inputs: list, shape, outputs: int = 1, **attrs):
        names = [self.fresh("t") for _ in range(outputs)]
        ins = []
        for item in inputs:
            if isinstance(item, Tensor):
                self.uses[item.name] += 1
                if self.uses[item.name] == 2:
                    self.patterns.add("shared")
                ins.append(item.name)
            else:
                ins.append(item)
        self.nodes.append(helper.make_node(op, ins, names, name=self.fresh(f"{op.lower()}_"),
                                           **attrs))
        self.ops[op] += 1
        shapes = shape if outputs > 1 else [shape]
        result = [Tensor(n, tuple(int(s) for s in sh)) for n, sh in zip(names, shapes)]
        return result if outputs > 1 else result[0]

    def axis(self, axis: int, rank: int) -> int:
        """``axis`` or its negative spelling (half the time)."""
        if self.rng.random() < 0.5:
            self.patterns.add("negative-axis")
            return axis - rank
        return axis

    def ints(self, values) -> str:
        return self.const(values, np.int64, as_node=self.rng.random() < 0.3)


# --------------------------------------------------------------------------
# Steps: each takes (builder, tensor, pool) and returns a new tensor or None
# when it does not apply to that tensor.


def _unary(b, x, pool):
    r = b.rng
    op = str(r.choice(["Relu", "Relu", "Sigmoid", "Tanh", "Softplus", "LeakyRelu", "Abs",
                       "Clip", "PRelu", "Identity", "Dropout", "Cast", "Sign"]
                      + (["CastLike"] if b.opset >= 15 else [])
                      + (["Gelu", "Gelu"] if b.opset >= 20 else [])))
    if op == "LeakyRelu":
        return b.node(op, [x], x.shape, alpha=float(r.uniform(-0.5, 1.5)))
    if op == "Clip":
        low = float(r.uniform(-1.0, 0.0))
        high = float(low + r.uniform(0.1, 1.5))
        which = r.integers(3)
        ins = [x, b.const(low) if which != 2 else "", b.const(high) if which != 1 else ""]
        while ins[-1] == "":
            ins.pop()
        return b.node(op, ins, x.shape)
    if op == "PRelu":
        shape = [(), (x.shape[-1],), (x.shape[1],) + (1,) * (len(x.shape) - 2)][r.integers(3)]
        return b.node(op, [x, b.const(r.uniform(-0.5, 1.2, size=shape))], x.shape)
    if op == "Cast":
        return b.node(op, [x], x.shape, to=TensorProto.FLOAT)
    if op == "CastLike":
        return b.node(op, [x, b.const(np.zeros(1))], x.shape)
    if op == "Gelu":
        return b.node(op, [x], x.shape, approximate=str(r.choice(["none", "tanh"])))
    return b.node(op, [x], x.shape)


def _gelu_pattern(b, x, pool):
    """x * 0.5 * (1 + erf(x / sqrt(2))), as PyTorch exports GELU."""
    b.patterns.add("gelu-pattern")
    scaled = b.node("Div", [x, b.const(np.sqrt(2.0))], x.shape)
    erf = b.node("Erf", [scaled], x.shape)
    one = b.node("Add", [erf, b.const(1.0)], x.shape)
    half = b.node("Mul", [x, b.const(0.5)], x.shape)
    return b.node("Mul", [half, one], x.shape)


def _affine_const(b, x, pool):
    """Add/Sub/Mul/Div with a broadcast constant (either side), or Neg."""
    r = b.rng
    op = str(r.choice(["Add", "Sub", "Mul", "Div", "Neg"]))
    if op == "Neg":
        return b.node(op, [x], x.shape)
    shape = [(), (x.shape[-1],), (1,) + x.shape[1:]][r.integers(3)]
    if op == "Div":
        value = r.choice([-1, 1], size=shape) * r.uniform(0.5, 2.0, size=shape)
    elif op == "Mul":
        value = r.uniform(-2.0, 2.0, size=shape)
    else:
        value = r.normal(size=shape)
    c = b.const(value, as_node=r.random() < 0.2)
    ins = [c, x] if op != "Div" and r.random() < 0.4 else [x, c]
    return b.node(op, ins, x.shape)


def _affine_chain(b, x, pool):
    """t = a·x; n = -t; q = h·n - c; y = n - q (n shared by two consumers),
    or a plain chain of affine ops; the simplifier folds both."""
    r = b.rng
    b.patterns.add("affine-chain")
    t = b.node("Mul", [x, b.const(r.uniform(0.5, 2.0))], x.shape)
    n = b.node("Neg", [t], x.shape)
    if r.random() < 0.5:
        p = b.node("Mul", [n, b.const(r.uniform(-1.0, 1.0))], x.shape)
        q = b.node("Sub", [p, b.const(r.normal(size=x.shape[-1:]))], x.shape)
        return b.node("Sub", [n, q], x.shape)
    y = b.node("Add", [n, b.const(r.normal())], x.shape)
    return b.node("Div", [y, b.const(r.uniform(0.5, 2.0))], x.shape)


def _matmul(b, x, pool):
    """x @ W on the last axis (any rank), or W @ x over the second-last."""
    r = b.rng
    if len(x.shape) >= 3:
        b.patterns.add("matmul-rank3")
    m = int(r.integers(2, 7))
    if len(x.shape) >= 3 and r.random() < 0.3:
        k = x.shape[-2]
        w = b.const(b.weight((m, k)))
        return b.node("MatMul", [w, x], x.shape[:-2] + (m, x.shape[-1]))
    n = x.shape[-1]
    y = b.node("MatMul", [x, b.const(b.weight((n, m), n))], x.shape[:-1] + (m,))
    if r.random() < 0.6:  # MatMul + Add: the usual linear layer
        bias = b.const(r.normal(0, 0.5, size=(m,)))
        y = b.node("Add", [bias, y] if r.random() < 0.5 else [y, bias], y.shape)
    return y


def _cancel(b, x, pool):
    """(x·A + B) - x·A with large A: exactly B in real arithmetic, off by
    float32 rounding of |x·A| in onnxruntime (two separate MatMuls)."""
    r = b.rng
    b.patterns.add("float32-cancel")
    n, m = x.shape[-1], int(r.integers(1, 4))
    a = r.normal(size=(n, m)) * 10.0 ** r.uniform(2, 6)
    first = b.node("MatMul", [x, b.const(a)], x.shape[:-1] + (m,))
    shifted = b.node("Add", [first, b.const(r.normal(size=m))], first.shape)
    second = b.node("MatMul", [x, b.const(a)], first.shape)
    return b.node("Sub", [shifted, second], first.shape)


def _gemm(b, x, pool):
    if len(x.shape) != 2:
        return None
    r = b.rng
    n, m = x.shape[1], int(r.integers(2, 9))
    trans = int(r.integers(2))
    w = b.weight((m, n) if trans else (n, m), n)
    attrs = dict(transB=trans, alpha=float(r.choice([1.0, r.uniform(-2, 2)])),
                 beta=float(r.choice([1.0, r.uniform(-2, 2)])))
    ins = [x, b.const(w)]
    if r.random() < 0.8:
        ins.append(b.const(r.normal(0, 0.5, size=[(m,), (1, m), ()][r.integers(3)])))
    return b.node("Gemm", ins, (1, m), **attrs)


def _spatial(x):
    return x.shape[2:] if len(x.shape) in (3, 4) else None


def _conv(b, x, pool):
    hw = _spatial(x)
    if hw is None:
        return None
    r = b.rng
    dims = len(hw)
    c = x.shape[1]
    group = int(r.choice([g for g in (1, 2, c) if c % g == 0]))
    out = group * int(r.integers(1, 3))
    kernel = [int(r.integers(1, min(3, s) + 1)) for s in hw]
    stride = [int(r.integers(1, 3)) for _ in hw]
    attrs = dict(kernel_shape=kernel, strides=stride)
    if r.random() < 0.3:  # auto_pad (onnxruntime refuses it with dilations)
        attrs["auto_pad"] = str(r.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
        out_hw = [-(-s // st) if attrs["auto_pad"] != "VALID" else (s - k) // st + 1
                  for s, k, st in zip(hw, kernel, stride)]
    else:
        dil = [int(r.integers(1, 3)) for _ in hw]
        pads = [int(r.integers(0, 2)) for _ in range(2 * dims)]
        attrs.update(dilations=dil, pads=pads)
        out_hw = [(s + pads[i] + pads[i + dims] - (k - 1) * d - 1) // st + 1
                  for i, (s, k, st, d) in enumerate(zip(hw, kernel, stride, dil))]
    if min(out_hw) < 1:
        return None
    w = b.weight((out, c // group) + tuple(kernel), c // group * int(np.prod(kernel)))
    ins = [x, b.const(w)] + ([b.const(r.normal(0, 0.3, size=out))] if r.random() < 0.7 else [])
    return b.node("Conv", ins, (1, out) + tuple(out_hw), group=group, **attrs)


def _conv_transpose(b, x, pool):
    hw = _spatial(x)
    if hw is None:
        return None
    r = b.rng
    dims = len(hw)
    c, out = x.shape[1], int(r.integers(1, 3))
    kernel = [int(r.integers(1, 3)) for _ in hw]
    stride = [int(r.integers(1, 3)) for _ in hw]
    pads = [int(r.integers(0, 2)) if k > 1 else 0 for k in kernel] * 2
    out_hw = [(s - 1) * st - pads[i] - pads[i + dims] + k
              for i, (s, k, st) in enumerate(zip(hw, kernel, stride))]
    if min(out_hw) < 1 or int(np.prod(out_hw)) * out > MAX_ELEMENTS:
        return None
    w = b.weight((c, out) + tuple(kernel), c)
    ins = [x, b.const(w)] + ([b.const(r.normal(0, 0.3, size=out))] if r.random() < 0.5 else [])
    return b.node("ConvTranspose", ins, (1, out) + tuple(out_hw), kernel_shape=kernel,
                  strides=stride, pads=pads)


def _batch_norm(b, x, pool):
    if len(x.shape) < 3:
        return None
    r = b.rng
    c = x.shape[1]
    b.patterns.add("affine-chain")
    ins = [x, b.const(r.uniform(-2, 2, c)), b.const(r.normal(size=c)),
           b.const(r.normal(size=c)), b.const(r.uniform(0.2, 2.0, c))]
    return b.node("BatchNormalization", ins, x.shape, epsilon=float(r.choice([1e-5, 1e-3])))


def _pool(b, x, pool):
    """MaxPool or AveragePool; pads, dilations and ceil mode that can make
    windows lying in the padding."""
    hw = _spatial(x)
    if hw is None:
        return None
    r = b.rng
    dims = len(hw)
    op = str(r.choice(["MaxPool", "AveragePool"]))
    kernel = [int(r.integers(1, min(3, s) + 1)) for s in hw]
    stride = [int(r.integers(1, 4)) for _ in hw]
    attrs = dict(kernel_shape=kernel, strides=stride, ceil_mode=int(r.integers(2)))
    dil = [1] * dims
    if op == "MaxPool" and r.random() < 0.6:
        dil = [int(r.integers(2, 4)) for _ in hw]
        attrs["dilations"] = dil
    if op == "AveragePool":
        attrs["count_include_pad"] = int(r.integers(2))
    if r.random() < 0.2 and dil == [1] * dims:
        attrs["auto_pad"] = str(r.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
        attrs.pop("ceil_mode")
        if attrs["auto_pad"] == "VALID":
            out_hw = [(s - k) // st + 1 for s, k, st in zip(hw, kernel, stride)]
        else:
            out_hw = [-(-s // st) for s, st in zip(hw, stride)]
    else:
        pads = [int(r.integers(0, k)) for k in kernel] * 2  # a pad below the kernel size
        if max(pads) > 0 and (max(dil) > 1 or attrs["ceil_mode"]):
            b.patterns.add("pool-padding")
        attrs["pads"] = pads
        out_hw = []
        for i, (s, k, st, d) in enumerate(zip(hw, kernel, stride, dil)):
            span = s + pads[i] + pads[i + dims] - ((k - 1) * d + 1)
            n = (-(-span // st) if attrs["ceil_mode"] else span // st) + 1
            if attrs["ceil_mode"] and (n - 1) * st >= s + pads[i]:
                n -= 1  # the last window must start inside the input or left padding
            out_hw.append(n)
    if min(out_hw) < 1:
        return None
    return b.node(op, [x], x.shape[:2] + tuple(out_hw), **attrs)


def _global_pool(b, x, pool):
    if _spatial(x) is None:
        return None
    op = str(b.rng.choice(["GlobalAveragePool", "GlobalMaxPool"]))
    return b.node(op, [x], x.shape[:2] + (1,) * (len(x.shape) - 2))


def _reduce(b, x, pool):
    r = b.rng
    rank = len(x.shape)
    axes = sorted(r.choice(np.arange(1, rank), size=int(r.integers(1, rank)), replace=False))
    keep = int(r.integers(2))
    shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape) if keep or i not in axes)
    spelled = [b.axis(int(a), rank) for a in axes]
    op = str(r.choice(["ReduceMean", "ReduceSum"]))
    if op == "ReduceSum" or b.opset >= 18:
        return b.node(op, [x, b.ints(spelled)], shape, keepdims=keep)
    return b.node(op, [x], shape, axes=spelled, keepdims=keep)


def _softmax(b, x, pool):
    axis = int(b.rng.integers(1, len(x.shape)))
    return b.node("Softmax", [x], x.shape, axis=b.axis(axis, len(x.shape)))


def _flatten(b, x, pool):
    rank = len(x.shape)
    axis = int(b.rng.integers(1, rank + 1))
    shape = (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))
    if shape[0] != 1:
        return None  # the batch axis must stay 1 for the following steps
    spelled = b.axis(axis, rank) if axis < rank else axis
    return b.node("Flatten", [x], shape, axis=spelled)


def _reshape(b, x, pool):
    r = b.rng
    n = x.size
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    a = int(r.choice(divisors))
    shape = [(1, n), (1, a, n // a)][r.integers(2)]
    if len(shape) == 3 and r.random() < 0.5:
        c = int(r.choice([d for d in divisors if (n // a) % d == 0] or [1]))
        shape = (1, a, c, n // a // c)
    if r.random() < 0.3 and len(x.shape) >= 2:
        # Shape -> Gather(0) -> Concat with the rest: a folded constant chain
        b.patterns.add("shape-chain")
        full = b.node("Shape", [x], (len(x.shape),))
        first = b.node("Gather", [full, b.ints([0])], (1,), axis=0)
        spec = b.node("Concat", [first, b.ints(list(shape[1:]))], (len(shape),), axis=0)
        return b.node("Reshape", [x, spec], shape)
    spec = list(shape)
    spec[int(r.integers(1, len(spec)))] = -1
    if r.random() < 0.5:
        spec[0] = 0  # 0 copies the input's dimension
    return b.node("Reshape", [x, b.ints(spec)], shape)


def _transpose(b, x, pool):
    rank = len(x.shape)
    if rank < 3:
        return None
    perm = [0] + [int(p) + 1 for p in b.rng.permutation(rank - 1)]
    return b.node("Transpose", [x], tuple(x.shape[p] for p in perm), perm=perm)


def _squeeze_unsqueeze(b, x, pool):
    rank = len(x.shape)
    if rank >= 4:
        return None
    axis = int(b.rng.integers(1, rank + 1))
    shape = x.shape[:axis] + (1,) + x.shape[axis:]
    spelled = b.axis(axis, rank + 1)
    y = b.node("Unsqueeze", [x, b.ints([spelled])], shape)
    if b.rng.random() < 0.5:
        y = b.node("Squeeze", [y, b.ints([b.axis(axis, rank + 1)])], x.shape)
    return y


def _some_axis(b, x):
    """The rank of ``x``, a random non-batch axis and its size."""
    rank = len(x.shape)
    axis = int(b.rng.integers(1, rank))
    return rank, axis, x.shape[axis]


def _slice(b, x, pool):
    r = b.rng
    rank, axis, dim = _some_axis(b, x)
    if dim < 2:
        return None
    step = int(r.choice([1, 1, 2, -1]))
    if step > 0:
        start = int(r.integers(0, dim - 1))
        end = int(r.integers(start + 1, dim + 1))
        count = len(range(start, end, step))
        ends = end if r.random() < 0.7 else end - dim if end < dim else 2 ** 31
    else:
        start, end = dim - 1, int(r.integers(-1, dim - 1))
        count = len(range(start, end, step))
        ends = end if end >= 0 else -dim - 1
    shape = x.shape[:axis] + (count,) + x.shape[axis + 1:]
    return b.node("Slice", [x, b.ints([start]), b.ints([ends]), b.ints([b.axis(axis, rank)]),
                            b.ints([step])], shape)


def _split(b, x, pool):
    r = b.rng
    rank, axis, dim = _some_axis(b, x)
    if dim < 2:
        return None
    first = int(r.integers(1, dim))
    parts = [first, dim - first]
    shapes = [x.shape[:axis] + (p,) + x.shape[axis + 1:] for p in parts]
    a, c = b.node("Split", [x, b.ints(parts)], shapes, outputs=2, axis=b.axis(axis, rank))
    pool.append(c)
    if parts[0] == parts[1] and r.random() < 0.5:
        b.patterns.add("residual")
        return b.node("Sub", [a, c], a.shape)
    return a


def _gather(b, x, pool):
    r = b.rng
    rank, axis, dim = _some_axis(b, x)
    count = int(r.integers(1, dim + 2))
    index = r.integers(-dim, dim, size=count)
    shape = x.shape[:axis] + (count,) + x.shape[axis + 1:]
    return b.node("Gather", [x, b.ints(index)], shape, axis=b.axis(axis, rank))


def _pad(b, x, pool):
    r = b.rng
    rank = len(x.shape)
    mode = str(r.choice(["constant", "reflect", "edge"]))
    pads = [0] * (2 * rank)
    for axis in range(1, rank):
        limit = x.shape[axis] - 1 if mode == "reflect" else 2
        pads[axis] = int(r.integers(0, min(limit, 2) + 1))
        pads[axis + rank] = int(r.integers(0, min(limit, 2) + 1))
    shape = tuple(s + pads[i] + pads[i + rank] for i, s in enumerate(x.shape))
    if int(np.prod(shape)) > MAX_ELEMENTS:
        return None
    ins = [x, b.ints(pads)]
    if mode == "constant" and r.random() < 0.5:
        ins.append(b.const(r.normal()))
    return b.node("Pad", ins, shape, mode=mode)


def _expand(b, x, pool):
    rank = len(x.shape)
    if rank >= 4 or x.size * 3 > MAX_ELEMENTS:
        return None
    y = b.node("Unsqueeze", [x, b.ints([1])], (1, 1) + x.shape[1:])
    reps = int(b.rng.integers(2, 4))
    return b.node("Expand", [y, b.ints([1, reps] + [1] * (rank - 1))],
                  (1, reps) + x.shape[1:])


def _residual(b, x, pool):
    """Add/Sub/Concat of ``x`` with another pool tensor of the same shape, or
    with a branch computed from ``x`` itself."""
    r = b.rng
    b.patterns.add("residual")
    same = [t for t in pool if t.shape == x.shape and t.name != x.name]
    if same and r.random() < 0.6:
        other = same[int(r.integers(len(same)))]
    else:
        other = _unary(b, _affine_const(b, x, pool), pool)
    op = str(r.choice(["Add", "Sub", "Concat"]))
    if op == "Concat":
        rank = len(x.shape)
        axis = int(r.integers(1, rank))
        shape = x.shape[:axis] + (2 * x.shape[axis],) + x.shape[axis + 1:]
        if int(np.prod(shape)) > MAX_ELEMENTS:
            op = "Add"
        else:
            return b.node(op, [x, other], shape, axis=b.axis(axis, rank))
    return b.node(op, [x, other] if r.random() < 0.5 else [other, x], x.shape)


STEPS = {
    "unary": (_unary, 6), "gelu": (_gelu_pattern, 1), "affine": (_affine_const, 4),
    "chain": (_affine_chain, 2), "matmul": (_matmul, 3), "gemm": (_gemm, 2),
    "conv": (_conv, 3), "convT": (_conv_transpose, 1), "bn": (_batch_norm, 1),
    "pool": (_pool, 3), "gpool": (_global_pool, 1), "reduce": (_reduce, 1),
    "softmax": (_softmax, 1), "flatten": (_flatten, 1), "reshape": (_reshape, 2),
    "transpose": (_transpose, 1), "squeeze": (_squeeze_unsqueeze, 1), "slice": (_slice, 1),
    "split": (_split, 1), "gather": (_gather, 1), "pad": (_pad, 1), "expand": (_expand, 1),
    "residual": (_residual, 3), "cancel": (_cancel, 1),
}

#: ONNX ops each step can emit (for --ops filtering)
STEP_OPS = {
    "unary": {"Relu", "Sigmoid", "Tanh", "Softplus", "LeakyRelu", "Abs", "Clip", "PRelu",
              "Identity", "Dropout", "Cast", "CastLike", "Sign", "Gelu"},
    "gelu": {"Erf", "Mul", "Div", "Add"}, "affine": {"Add", "Sub", "Mul", "Div", "Neg"},
    "chain": {"Mul", "Neg", "Sub", "Add", "Div"}, "matmul": {"MatMul", "Add"},
    "gemm": {"Gemm"}, "conv": {"Conv"}, "convT": {"ConvTranspose"},
    "bn": {"BatchNormalization"}, "pool": {"MaxPool", "AveragePool"},
    "gpool": {"GlobalAveragePool", "GlobalMaxPool"}, "reduce": {"ReduceMean", "ReduceSum"},
    "softmax": {"Softmax"}, "flatten": {"Flatten"},
    "reshape": {"Reshape", "Shape", "Gather", "Concat"}, "transpose": {"Transpose"},
    "squeeze": {"Squeeze", "Unsqueeze"}, "slice": {"Slice"}, "split": {"Split", "Sub"},
    "gather": {"Gather"}, "pad": {"Pad"}, "expand": {"Expand", "Unsqueeze"},
    "residual": {"Add", "Sub", "Concat"}, "cancel": {"MatMul", "Add", "Sub"},
}

_INPUT_SHAPES = [(1, 3), (1, 5), (1, 8), (1, 2, 4), (1, 3, 5), (1, 2, 2), (1, 2, 3, 3),
                 (1, 1, 4, 4), (1, 2, 4, 3)]


def _final(b, x):
    """Reduce ``x`` to at most MAX_OUTPUTS values (Flatten + Gemm/MatMul)."""
    r = b.rng
    if x.size <= MAX_OUTPUTS and r.random() < 0.5:
        return x
    if len(x.shape) != 2:
        rank = len(x.shape)
        x = b.node("Flatten", [x], (1, x.size), axis=b.axis(1, rank) if rank > 2 else 1)
    m = int(r.integers(1, 5))
    if r.random() < 0.5:
        return b.node("Gemm", [x, b.const(b.weight((x.shape[1], m))),
                               b.const(r.normal(0, 0.5, size=m))], (1, m))
    return b.node("MatMul", [x, b.const(b.weight((x.shape[1], m)))], (1, m))


def _build(seed: int, ops: set[str] | None) -> FuzzModel:
    rng = np.random.default_rng(seed)
    opset = int(rng.choice([13, 14, 17, 18, 20, 20]))
    b = _Builder(rng, opset)
    allowed = [k for k in STEPS if ops is None or STEP_OPS[k] & ops]
    weights = np.array([STEPS[k][1] for k in allowed], float)
    input_shape = _INPUT_SHAPES[int(rng.integers(len(_INPUT_SHAPES)))]
    x = Tensor("input", input_shape)
    pool = [x]
    for _ in range(int(rng.integers(1, 7))):
        current = pool[-1] if rng.random() < 0.7 else pool[int(rng.integers(len(pool)))]
        for _attempt in range(4):
            step = allowed[int(rng.choice(len(allowed), p=weights / weights.sum()))]
            y = STEPS[step][0](b, current, pool)
            if y is not None and y.size <= MAX_ELEMENTS and len(y.shape) >= 2 \
                    and y.shape[0] == 1:
                pool.append(y)
                break
    out = _final(b, pool[-1])
    graph = helper.make_graph(
        b.nodes, f"fuzz{seed}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(out.name, TensorProto.FLOAT, list(out.shape))],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="verifier-fuzz")
    model.ir_version = 8 if opset < 19 else int(rng.choice([9, 10]))
    return FuzzModel(seed, model, input_shape, b.ops, frozenset(b.patterns))


def runs_in_onnxruntime(model: onnx.ModelProto, input_shape) -> bool:
    """Whether onnxruntime loads and runs ``model`` on a random input."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        onnx.checker.check_model(model)
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).normal(size=input_shape).astype(np.float32)
        y = session.run(None, {"input": x})[0]
    except Exception:  # noqa: BLE001 - any failure: draw another model
        return False
    return y.size <= MAX_OUTPUTS and bool(np.isfinite(y).all())


def generate(seed: int, ops=None) -> FuzzModel:
    """A random network from ``seed`` (deterministic) that onnxruntime runs.

    ``ops``: restrict the steps to those that emit at least one of these ONNX
    op types. Drafts that onnxruntime rejects are redrawn from derived seeds.
    """
    wanted = set(ops) if ops else None
    for attempt in range(50):
        draft = _build(seed * 1000 + attempt, wanted)
        if runs_in_onnxruntime(draft.model, draft.input_shape):
            draft.seed = seed
            return draft
    raise RuntimeError(f"no runnable model drawn from seed {seed} in 50 attempts")


__all__ = ["FuzzModel", "OPS", "generate", "runs_in_onnxruntime"]
