"""The front-end cases of ../shared/soundness-cases through the whole
``verify`` path (falsification, bounds, input splitting).

Where the folder has a witness (the true answer is sat), the answer must be
``sat`` with a counterexample that onnxruntime reproduces and that lies in
the property's unsafe set; everywhere, ``verify`` may only raise
:class:`VerifierError`, and never answers ``unsat`` when a witness exists.
The self-contained versions of these models are in
tests/frontend/test_lowering_regressions.py.
"""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import require_shared
from verifier.errors import VerifierError
from verifier.result import Verdict
from verifier.spec import load_property
from verifier.verify import Options, verify

CASES = ["flatten-negative-axis", "affine-fold-shared-operand", "matmul-add-abs",
         "matmul-rank3-crash", "crash-batchnorm", "crash-maxpool"]


def _run(model, x):
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    info = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in info.shape]
    return session.run(None, {info.name: np.asarray(x, np.float32).reshape(shape)})[0]


@pytest.mark.parametrize("name", CASES)
def test_soundness_case(name):
    folder = require_shared("soundness-cases", name)
    model, prop_path = folder / "model.onnx", folder / "prop.vnnlib"
    witness = folder / "witness.json"
    prop = load_property(prop_path)
    try:
        result = verify(model, prop, Options(timeout=10))  # the sat cases take ~2 s
    except VerifierError:
        assert not witness.exists(), f"{name}: a sat case was rejected"
        return
    if witness.exists():
        x = np.asarray(json.loads(witness.read_text())["x"], np.float32)
        y = _run(model, x).astype(np.float64).reshape(-1)
        # the witness is genuine: the test checks the folder as well
        assert any(case.region.contains(x) and case.is_counterexample(x.astype(np.float64), y)
                   for case in prop.cases)
        assert result.verdict is Verdict.SAT, (name, result.verdict, result.reason)
    else:
        # the cases without a witness hold: matmul-rank3, Y_0 = x0 + 2 x1 >= 0 > -5;
        # crash-maxpool, Y_0 is -inf in onnxruntime; crash-batchnorm, the largest
        # Y_i - Y_3 (at a box corner: the network is affine) is below the threshold
        assert result.verdict in (Verdict.UNSAT, Verdict.UNKNOWN, Verdict.TIMEOUT), \
            (name, result.verdict, result.reason)
    if result.verdict is Verdict.SAT:
        cex = result.counterexample
        y = _run(model, cex.x).astype(np.float64).reshape(-1)
        np.testing.assert_allclose(y, np.asarray(cex.y, np.float64).reshape(-1), rtol=1e-6)
        case = prop.cases[cex.case]
        assert case.region.contains(np.asarray(cex.x, np.float64))
        assert case.is_counterexample(np.asarray(cex.x, np.float64), y)
