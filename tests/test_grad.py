"""The IR's vector-Jacobian products agree with central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from tests.builders import single_node_model
from tests.frontend.test_ops import CASES, _case_id
from verifier.frontend import load_model
from verifier.ir import evaluate, ops
from verifier.ir.grad import VJP_RULES, grad_input

# ops with a discontinuity or argmax ties where differences are not informative
SKIP = {"Sign"}


def test_every_core_op_but_input_has_a_vjp_rule():
    assert set(ops.CORE_OPS) - {ops.Input} <= set(VJP_RULES)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] not in SKIP],
                         ids=[_case_id(c) for c in CASES if c[0] not in SKIP])
def test_vjp_matches_finite_differences(case):
    op_type, shape, inputs, attrs, opset = case
    graph = load_model(single_node_model(op_type, shape, inputs, attrs, opset=opset))
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(2,) + tuple(shape))
    values = evaluate(graph, x, all_values=True)
    g = rng.normal(size=values[graph.output].shape)
    grad = grad_input(graph, values, g)
    direction = rng.normal(size=x.shape)
    h = 1e-6
    plus = (evaluate(graph, x + h * direction) * g).sum()
    minus = (evaluate(graph, x - h * direction) * g).sum()
    numeric = (plus - minus) / (2 * h)
    analytic = (grad * direction).sum()
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-5)
