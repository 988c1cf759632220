"""The soundness cases where the real-valued network is safe and the float32
network onnxruntime runs is not (../shared/soundness-cases/wrong-unsat-f32-*):
never ``unsat``; a ``sat`` carries a counterexample that onnxruntime replays."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import require_shared
from verifier.bounds.report import bound_property
from verifier.frontend import load_model
from verifier.result import float32_admissible
from verifier.runtime import open_session
from verifier.spec import load_property
from verifier.verify import Options, verify

CASES = ["wrong-unsat-f32-f32-cancel", "wrong-unsat-f32-f32-large", "wrong-unsat-f32-prelu"]


@pytest.mark.parametrize("name", CASES)
def test_float32_counterexamples_are_never_proved_away(name):
    folder = require_shared("soundness-cases", name)
    model, prop = folder / "model.onnx", load_property(folder / "prop.vnnlib")
    session = open_session(model, device="cpu")
    witness = np.asarray(json.loads((folder / "witness.json").read_text())["x"], np.float32)
    y = session.run(witness.reshape((1,) + tuple(session.input_shape))).reshape(-1)
    assert prop.is_counterexample(witness.astype(np.float64), y.astype(np.float64))

    graph = load_model(model)
    for method in ("crown", "alpha-crown"):
        assert not bound_property(graph, prop, method).proved

    result = verify(model, prop, Options(timeout=10))
    assert result.verdict.value != "unsat", result.reason
    if result.verdict.value == "sat":
        cex = result.counterexample
        replayed = session.run(cex.x.reshape((1,) + tuple(session.input_shape))).reshape(-1)
        assert np.array_equal(replayed, cex.y)
        case = prop.cases[cex.case]
        assert float32_admissible(case.region, cex.x.astype(np.float64))
        assert any(p.contains(replayed.astype(np.float64)) for p in case.unsafe)
