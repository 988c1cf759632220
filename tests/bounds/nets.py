"""Random IR networks covering every core op, and sampling helpers, for the bound tests."""
from __future__ import annotations

import itertools

import numpy as np

from verifier.ir import ops
from verifier.ir.evaluate import EVAL_RULES
from verifier.ir.graph import Graph


class Builder:
    """Appends IR nodes, computing each output shape with the evaluator."""

    def __init__(self, shape, rng):
        self.nodes: list[ops.Node] = [ops.Input(shape=tuple(shape), name="x")]
        self.rng = rng

    def shape(self, i):
        return self.nodes[i].shape

    def add(self, cls, inputs, shape=None, **fields):
        if shape is None:  # infer by evaluating the op on zeros
            probe = cls(inputs=tuple(inputs), shape=(1,), **fields)
            args = [np.zeros((1,) + self.shape(j)) for j in inputs]
            shape = EVAL_RULES[cls](probe, args).shape[1:]
        self.nodes.append(cls(inputs=tuple(inputs), shape=tuple(shape), **fields))
        return len(self.nodes) - 1

    def normal(self, *shape, scale=1.0):
        return self.rng.normal(scale=scale, size=shape)

    def linear(self, x, out, bias=True):
        n_in = self.shape(x)[-1]
        return self.add(ops.Linear, [x], weight=self.normal(out, n_in, scale=1 / np.sqrt(n_in)),
                        bias=self.normal(out, scale=0.3) if bias else None)

    def conv(self, x, out, kernel, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
             groups=1):
        c = self.shape(x)[-3]
        fan = c // groups * kernel[0] * kernel[1]
        return self.add(ops.Conv, [x], weight=self.normal(out, c // groups, *kernel,
                                                          scale=1 / np.sqrt(fan)),
                        bias=self.normal(out, scale=0.3), stride=stride, padding=padding,
                        dilation=dilation, groups=groups)

    def conv_transpose(self, x, out, kernel, stride=(1, 1), padding=(0, 0, 0, 0), groups=1,
                       extra=(0, 0)):
        c, h, w = self.shape(x)[-3:]
        full = [(h - 1) * stride[0] + kernel[0], (w - 1) * stride[1] + kernel[1]]
        hw = (full[0] - padding[0] - padding[2] + extra[0],
              full[1] - padding[1] - padding[3] + extra[1])
        shape = self.shape(x)[:-3] + (out,) + hw
        return self.add(ops.ConvTranspose, [x], shape=shape,
                        weight=self.normal(c, out // groups, *kernel, scale=1 / np.sqrt(c)),
                        bias=self.normal(out, scale=0.3), stride=stride, padding=padding,
                        groups=groups)

    def scale(self, x, per_axis=-3):
        shape = [1] * len(self.shape(x))
        shape[per_axis] = self.shape(x)[per_axis]
        return self.add(ops.Scale, [x], scale=self.normal(*shape),
                        shift=self.normal(*shape, scale=0.3))

    def graph(self, output=None):
        return Graph(tuple(self.nodes), output=len(self.nodes) - 1 if output is None else output)


def mlp(rng, sizes, activation=ops.Relu):
    b = Builder((1, sizes[0]), rng)
    x = 0
    for k, out in enumerate(sizes[1:]):
        x = b.linear(x, out)
        if k < len(sizes) - 2:
            x = b.add(activation, [x])
    return b.graph()


def conv_net(rng):
    """Conv, Scale, Relu, MaxPool, ConvTranspose, PRelu, strided/dilated/grouped Conv,
    Reshape, Linear, Gelu."""
    b = Builder((1, 2, 7, 7), rng)
    x = b.conv(0, 4, (3, 3), padding=(1, 1, 1, 1))
    x = b.scale(x)
    x = b.add(ops.Relu, [x])
    x = b.add(ops.MaxPool, [x], kernel=(2, 2), stride=(2, 2), padding=(0, 0, 1, 1))
    x = b.conv_transpose(x, 4, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1), groups=2,
                         extra=(1, 0))
    x = b.add(ops.PRelu, [x], slope=b.rng.uniform(-0.5, 1.5, size=(4, 1, 1)))
    x = b.conv(x, 4, (3, 3), stride=(2, 1), padding=(1, 0, 0, 1), dilation=(1, 2), groups=2)
    x = b.add(ops.MaxPool, [x], kernel=(3, 2), stride=(1, 2), padding=(1, 0, 1, 1),
              dilation=(1, 1))
    x = b.add(ops.Reshape, [x], shape=(1, b.nodes[x].size))
    x = b.linear(x, 6)
    x = b.add(ops.Gelu, [x])
    x = b.linear(x, 3)
    return b.graph()


def branchy_net(rng, with_sign=True):
    """Gather (permutation, slice, pad, broadcast), Concat, Add, Sigmoid, Tanh, Softplus,
    Sign, tanh-GELU, Softmax, Scale."""
    b = Builder((1, 5), rng)
    h = b.linear(0, 8)
    s = b.add(ops.Sigmoid, [h])
    t = b.add(ops.Tanh, [b.linear(0, 4)])
    # a permutation with a slice, a padding fill and a duplicated entry
    index = np.array([[3, 1, -1, 7, 0, 0]])
    g = b.add(ops.Gather, [s], shape=(1, 6), index=index, fill=0.5)
    c = b.add(ops.Concat, [g, t], axis=1)                                  # (1, 10)
    r = b.add(ops.Add, [c, b.linear(0, 10)])
    u = b.add(ops.Softplus, [r])
    u = b.add(ops.Scale, [u], scale=b.normal(1, 10), shift=b.normal(1, 10))
    v = b.linear(u, 6)
    if with_sign:
        sg = b.add(ops.Sign, [b.linear(0, 2)])
        v = b.add(ops.Concat, [v, sg], axis=1)                             # (1, 8)
    v = b.add(ops.Gelu, [v], approximate="tanh")
    v = b.add(ops.Reshape, [v], shape=(1, 2, b.nodes[v].size // 2))
    # transpose (1, 2, k) -> (1, k, 2) through a Gather
    k = b.nodes[v].size // 2
    perm = np.arange(2 * k).reshape(1, 2, k).transpose(0, 2, 1).copy()
    v = b.add(ops.Gather, [v], shape=(1, k, 2), index=perm)
    w = b.add(ops.Linear, [v], weight=b.normal(3, 2), bias=b.normal(3))  # (1, k, 3)
    b.add(ops.Softmax, [w], axis=2)
    return b.graph()


def residual_relu_net(rng, width=6):
    """Relu layers with a residual Add, so relaxations meet fan-out and fan-in."""
    b = Builder((1, 4), rng)
    a = b.add(ops.Relu, [b.linear(0, width)])
    h = b.add(ops.Relu, [b.linear(a, width)])
    h = b.add(ops.Add, [h, a])
    h = b.add(ops.Relu, [b.linear(h, width)])
    b.linear(h, 3)
    return b.graph()


def sample_box(rng, lower, upper, count):
    """Uniform points and corners of each box; returns (B, count + corners, n)."""
    lower, upper = np.atleast_2d(lower), np.atleast_2d(upper)
    n = lower.shape[1]
    u = rng.uniform(size=(lower.shape[0], count, n))
    points = lower[:, None] + u * (upper - lower)[:, None]
    if n <= 8:
        bits = np.array(list(itertools.product([0, 1], repeat=n)), dtype=float)
    else:
        bits = rng.integers(0, 2, size=(256, n)).astype(float)
    corners = lower[:, None] + bits[None] * (upper - lower)[:, None]
    return np.concatenate([points, corners], axis=1)


def sample_sphere(rng, center, radius, count):
    """Points on the sphere ``||x - center|| = radius`` and inside the ball."""
    center = np.atleast_2d(center)
    radius = np.broadcast_to(radius, (center.shape[0],))
    d = rng.normal(size=(center.shape[0], count, center.shape[1]))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    scale = np.ones((center.shape[0], count, 1))
    scale[:, count // 2:] = rng.uniform(size=(center.shape[0], count - count // 2, 1))
    return center[:, None] + radius[:, None, None] * scale * d


def assert_inside(values, lower, upper, tol=1e-6, what=""):
    """``values`` (B, S, R) within ``lower``/``upper`` (B, R), relative tolerance."""
    slack = tol * (1.0 + np.abs(values))
    below = values < lower[:, None, :] - slack
    above = values > upper[:, None, :] + slack if upper is not None else np.zeros_like(below)
    if below.any() or above.any():
        b, s, r = np.argwhere(below | above)[0]
        raise AssertionError(f"{what}: value {values[b, s, r]!r} outside "
                             f"[{lower[b, r]!r}, {None if upper is None else upper[b, r]!r}] "
                             f"(batch {b}, sample {s}, row {r})")
