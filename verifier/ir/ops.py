"""Core IR ops: the small, closed set of ops the bound engines know.

The ONNX front end lowers every supported ONNX op into these. Nodes are
immutable values (frozen dataclasses, read-only arrays); bounds and other
per-run state live in tables owned by the engines, never on the nodes.

Shapes are the model's own tensor shapes with a symbolic batch dimension fixed
to 1, so that flat C-order indices of the input and output tensors are exactly
the ``X_i`` / ``Y_j`` of VNN-LIB. Engines and the evaluator prepend one more
axis of their own (a batch of points, boxes or sub-problems).

Every op acts on a fixed axis convention:

* ``Linear`` on the last axis (ONNX MatMul/Gemm semantics);
* ``Conv``, ``ConvTranspose`` and ``MaxPool`` on the last three axes
  (channels, height, width); leading axes are treated as batch;
* element-wise ops (``Scale``, ``Relu``, ...) on every entry;
* ``Gather`` on the flattened tensor (it expresses Slice, Split, Gather,
  Transpose, Pad and broadcasting with one rule).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np


def _frozen_array(value, dtype=np.float64) -> np.ndarray:
    array = np.array(value, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False, kw_only=True)
class Node:
    """Base of all core ops.

    Attributes:
        inputs: indices of the producing nodes in ``Graph.nodes``.
        shape: the output shape (batch dimension included, fixed to 1).
        name: the ONNX tensor this node computes (for messages).
    """

    inputs: tuple[int, ...] = ()
    shape: tuple[int, ...]
    name: str = ""

    #: number of node inputs this op takes (None: any number >= 1)
    arity: ClassVar[int | None] = 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def arrays(self) -> dict[str, np.ndarray]:
        """The constant arrays (parameters) of this node."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def parameter_count(self) -> int:
        return int(sum(a.size for k, a in self.arrays().items() if k != "index"))

    def describe(self) -> str:
        """A short human-readable description of the attributes."""
        return ""


def _freeze_fields(node, *names, dtype=np.float64):
    for name in names:
        value = getattr(node, name)
        if value is not None:
            object.__setattr__(node, name, _frozen_array(value, dtype))


@dataclass(frozen=True, eq=False)
class Folded:
    """What folding several ONNX ops into one affine node hides from its weights.

    onnxruntime still rounds after every original op, and the intermediate
    values of the chain can be far larger than the folded constants suggest
    (``(x + 1e8) - 1e8`` folds to ``x``). :mod:`verifier.bounds.roundoff`
    reads this record; a node without one stands for a single ONNX op.

    Attributes:
        steps: float32 rounding steps of the folded-in ops, beyond those of
            the node's own op (each folded element-wise op counts its own
            roundings plus the re-rounding of fused float32 constants).
        offset: ``>= 0``, the shape of the node's bias (Linear, Conv) or
            shift (Scale): the constant term as it would be if every folded
            op's constant had been added in absolute value; it bounds the
            constants' part of every intermediate value of the chain,
            expressed at the node's output.
    """

    steps: int
    offset: np.ndarray

    #: rounding steps one folded Scale adds: its Mul and Add, and the
    #: re-rounding of the weights and bias onnxruntime may fuse it into
    PER_SCALE: ClassVar[int] = 4

    def __post_init__(self):
        object.__setattr__(self, "offset", _frozen_array(self.offset))


def folding_of(node) -> Folded:
    """The :class:`Folded` record of a Linear, Conv, ConvTranspose or Scale
    node: its own, or that of a node standing for one ONNX op (no extra
    steps, offset ``|bias|`` or ``|shift|``)."""
    if node.folded is not None:
        return node.folded
    constant = node.shift if isinstance(node, Scale) else node.bias
    if constant is None:  # one entry per output channel (the last axis for Linear)
        constant = np.zeros(node.shape[-1] if isinstance(node, Linear) else node.shape[-3])
    return Folded(0, np.abs(constant))


@dataclass(frozen=True, eq=False, kw_only=True)
class Input(Node):
    """The model's input tensor."""

    arity: ClassVar[int | None] = 0


@dataclass(frozen=True, eq=False, kw_only=True)
class Linear(Node):
    """``y = x @ weight.T + bias`` on the last axis; weight is (out, in)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    folded: Folded | None = None

    def __post_init__(self):
        _freeze_fields(self, "weight", "bias")

    def describe(self):
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}"


@dataclass(frozen=True, eq=False, kw_only=True)
class _Convolution(Node):
    """Fields shared by Conv and ConvTranspose (2-D, on the last three axes)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    folded: Folded | None = None

    def __post_init__(self):
        _freeze_fields(self, "weight", "bias")


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv(_Convolution):
    """2-D convolution on the last three axes (C, H, W).

    weight: (out_channels, in_channels / groups, kh, kw); padding is
    (top, left, bottom, right) with zeros.
    """

    def describe(self):
        o, i, kh, kw = self.weight.shape
        return (f"{i * self.groups}->{o} k={kh}x{kw} s={self.stride} "
                f"p={self.padding} d={self.dilation} g={self.groups}")


@dataclass(frozen=True, eq=False, kw_only=True)
class ConvTranspose(_Convolution):
    """2-D transposed convolution on the last three axes (the adjoint of Conv).

    weight: (in_channels, out_channels / groups, kh, kw). ``padding`` is
    (top, left, bottom, right) removed from the full output; the output
    shape (including any output_padding) is ``shape``.
    """

    def describe(self):
        i, o, kh, kw = self.weight.shape
        return (f"{i}->{o * self.groups} k={kh}x{kw} s={self.stride} "
                f"p={self.padding} g={self.groups}")


@dataclass(frozen=True, eq=False, kw_only=True)
class Scale(Node):
    """Element-wise affine map ``y = x * scale + shift``.

    ``scale`` and ``shift`` have the rank of ``shape`` and broadcast to it.
    """

    scale: np.ndarray
    shift: np.ndarray
    folded: Folded | None = None

    def __post_init__(self):
        _freeze_fields(self, "scale", "shift")


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Node):
    """Element-wise sum of two tensors of the same shape."""

    arity: ClassVar[int | None] = 2


@dataclass(frozen=True, eq=False, kw_only=True)
class Reshape(Node):
    """Reinterpret the tensor with a new shape (C order; data unchanged)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Gather(Node):
    """``y.flat[k] = x.flat[index.flat[k]]``, or ``fill`` where the index is -1.

    One rule for Slice, Split, Gather (constant indices), Transpose, Pad
    (constant mode) and broadcasting. ``index`` has the output shape.
    """

    index: np.ndarray
    fill: float = 0.0

    def __post_init__(self):
        _freeze_fields(self, "index", dtype=np.int64)

    def describe(self):
        return "with padding" if (self.index < 0).any() else ""


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(Node):
    """Concatenation of the inputs along ``axis`` (non-negative)."""

    axis: int
    arity: ClassVar[int | None] = None

    def describe(self):
        return f"axis={self.axis}"


@dataclass(frozen=True, eq=False, kw_only=True)
class Relu(Node):
    """``max(x, 0)``."""


@dataclass(frozen=True, eq=False, kw_only=True)
class PRelu(Node):
    """``x if x >= 0 else slope * x`` (LeakyRelu and PRelu); slope broadcasts."""

    slope: np.ndarray

    def __post_init__(self):
        _freeze_fields(self, "slope")


@dataclass(frozen=True, eq=False, kw_only=True)
class Sigmoid(Node):
    """``1 / (1 + exp(-x))``."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Tanh(Node):
    """``tanh(x)``."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Softplus(Node):
    """``log(1 + exp(x))``."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Gelu(Node):
    """``x * Phi(x)`` (exact GELU, the Erf form); ``approximate='tanh'`` too."""

    approximate: str = "none"


@dataclass(frozen=True, eq=False, kw_only=True)
class Sign(Node):
    """``sign(x)`` in {-1, 0, 1}."""


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool(Node):
    """2-D max pooling on the last three axes; padding is with the lowest
    float32 (``functional.POOL_PAD``), as in onnxruntime.

    ``padding`` is (top, left, bottom, right) and already includes the extra
    end padding that ``ceil_mode`` asks for.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    def describe(self):
        return f"k={self.kernel} s={self.stride} p={self.padding}"


@dataclass(frozen=True, eq=False, kw_only=True)
class Softmax(Node):
    """Softmax along ``axis`` (non-negative)."""

    axis: int

    def describe(self):
        return f"axis={self.axis}"


#: Every core op. Engines check at import time that they have a rule for each.
CORE_OPS: tuple[type[Node], ...] = (
    Input, Linear, Conv, ConvTranspose, Scale, Add, Reshape, Gather, Concat,
    Relu, PRelu, Sigmoid, Tanh, Softplus, Gelu, Sign, MaxPool, Softmax,
)

#: Element-wise nonlinearities (one input, output shape = input shape).
ACTIVATIONS: tuple[type[Node], ...] = (Relu, PRelu, Sigmoid, Tanh, Softplus, Gelu, Sign)
