"""The counterexample check takes inputs the float32 network can be given:
where a box pins an input to a value float32 cannot hold, the nearest
float32s are admissible (as in verifier.result.float32_admissible); beyond
the float32 hull the absolute tolerance stays strict."""
from __future__ import annotations

import numpy as np
import pytest

from verifier.runner import check_counterexample


def _text(x):
    x32 = np.float32(x)
    y = [float(np.float32(x32[0] + x32[1])), float(np.float32(x32[0] - x32[1]))]
    entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)]
    entries += [f"(Y_{j} {v!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n".join(entries) + ")\n"


def _property(path, box0, box1, threshold):
    path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                    "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    f"(assert (>= X_0 {box0[0]!r}))\n(assert (<= X_0 {box0[1]!r}))\n"
                    f"(assert (>= X_1 {box1[0]!r}))\n(assert (<= X_1 {box1[1]!r}))\n"
                    f"(assert (>= Y_0 {threshold!r}))\n")
    return path


PINNED = float(np.float32(1000.1))  # 1000.0999755859375
ABOVE = float(np.nextafter(np.float32(1000.1), np.float32(np.inf)))  # 1000.100036...
BEYOND = float(np.nextafter(np.float32(ABOVE), np.float32(np.inf)))


@pytest.mark.parametrize("x0, valid", [
    (1000.1, True),      # the box's own value (its float32 is what runs)
    (PINNED, True),      # the float32 below 1000.1: 2.4e-5 away, far above the tolerance
    (ABOVE, True),       # the float32 above it: also inside the float32 hull
    (BEYOND, False),     # one float32 further: outside the hull
])
def test_a_pinned_input_accepts_the_float32_hull(tiny, tmp_path, x0, valid):
    prop = _property(tmp_path / "pinned.vnnlib", (1000.1, 1000.1), (0.0, 1.0), 1000.5)
    check = check_counterexample(tiny / "onnx/linear.onnx", prop, _text([x0, 1.0]))
    assert check.valid == valid, check.reason
    if not valid:
        assert "does not violate" in check.reason


def test_a_representable_box_stays_strict(tiny, tmp_path):
    """[0, 1] is float32-exact: 1 + 1e-6 is outside by more than the tolerance."""
    prop = _property(tmp_path / "plain.vnnlib", (0.0, 1.0), (0.0, 1.0), 1.5)
    model = tiny / "onnx/linear.onnx"
    assert check_counterexample(model, prop, _text([1.0, 1.0])).valid
    assert check_counterexample(model, prop, _text([1.0, 1.0 + 5e-8])).valid  # tolerance
    assert not check_counterexample(model, prop, _text([1.0, 1.0 + 1e-6])).valid
