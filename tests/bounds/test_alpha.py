"""The hand-written adjoint of alpha-CROWN against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.bounds import BoundOptions, Box, L2Ball
from verifier.bounds.engine import Run
from verifier.ir import ops

from nets import conv_net, mlp, residual_relu_net

GRAPHS = {
    "relu": lambda rng: mlp(rng, [4, 10, 10, 3]),
    "sigmoid": lambda rng: mlp(rng, [4, 8, 8, 3], ops.Sigmoid),
    "gelu": lambda rng: mlp(rng, [4, 8, 8, 3], ops.Gelu),
    "conv": conv_net,
    "residual": residual_relu_net,
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("ball", [False, True])
def test_slope_and_beta_gradients_match_finite_differences(name, ball):
    rng = np.random.default_rng(9)
    graph = GRAPHS[name](rng)
    n = graph.input_size
    centre, width = rng.normal(size=(1, n)), rng.uniform(0.2, 1.0, size=(1, n))
    inputs = L2Ball(centre, 1.5) if ball else Box(centre - width, centre + width)
    run = Run(graph, inputs, "crown", {}, {}, BoundOptions())
    run.sweep()
    rows = 3
    A = rng.normal(size=(1, rows, graph.output_size))
    bias = np.zeros((1, rows))
    slopes = {k: {side: rng.uniform(free.low, free.high, size=(1, rows, free.mask.shape[-1]))
                  for side, free in rel.free.items()}
              for k, rel in run.relax.items() if getattr(rel, "free", None)}
    relu = [k for k, node in enumerate(graph.nodes) if isinstance(node, ops.Relu)]
    betas = {k: rng.uniform(0, 1, size=(1, rows, graph.nodes[k].size)) for k in relu}

    def bound(slopes, betas):
        lines, touch = {}, {}
        for k, values in slopes.items():
            lines[k], touch[k] = run.relax[k].with_slopes(values)
        record = {}
        value = run.backward(graph.output, A, bias, lines=lines, betas=betas, record=record)
        return value, record, lines, touch

    value, record, lines, touch = bound(slopes, betas)
    needed = {graph.nodes[k].inputs[0] for k in list(slopes) + relu}
    adjoint = run.adjoint(graph.output, record, lines, needed)
    checked = 0
    h = 1e-6
    for k, sides in slopes.items():
        g_in = adjoint[graph.nodes[k].inputs[0]]
        for side, a in sides.items():
            mask = run.relax[k].free[side].mask
            part = np.maximum(record[k], 0) if side == "lower" else np.minimum(record[k], 0)
            grad = np.where(mask, part * (g_in - touch[k][side]), 0.0)
            for i in np.flatnonzero(mask[0, 0])[:4]:
                r = rng.integers(rows)
                plus = {kk: {s: v.copy() for s, v in d.items()} for kk, d in slopes.items()}
                minus = {kk: {s: v.copy() for s, v in d.items()} for kk, d in slopes.items()}
                plus[k][side][0, r, i] += h
                minus[k][side][0, r, i] -= h
                fd = (bound(plus, betas)[0][0, r] - bound(minus, betas)[0][0, r]) / (2 * h)
                assert grad[0, r, i] == pytest.approx(fd, rel=1e-4, abs=1e-6)
                checked += 1
    for k, beta in betas.items():
        g_in = adjoint[graph.nodes[k].inputs[0]]
        for i in range(min(3, beta.shape[-1])):
            r = rng.integers(rows)
            plus = {kk: v.copy() for kk, v in betas.items()}
            minus = {kk: v.copy() for kk, v in betas.items()}
            plus[k][0, r, i] += h
            minus[k][0, r, i] -= h
            fd = (bound(slopes, plus)[0][0, r] - bound(slopes, minus)[0][0, r]) / (2 * h)
            # the beta term enters as +beta on the pre-activation coefficients
            assert g_in[0, r, i] == pytest.approx(fd, rel=1e-4, abs=1e-6)
            checked += 1
    assert checked > 0
