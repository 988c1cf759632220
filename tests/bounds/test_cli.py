"""``verifier bounds MODEL PROPERTY``: text and JSON reports, errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from verifier.bounds.report import bound_property
from verifier.cli import main
from verifier.frontend import load_model
from verifier.spec import load_property

from conftest_shared import require_shared
from onnx_models import relu_mlp

PROPERTY = """
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const X_3 Real)
(declare-const X_4 Real)
(declare-const X_5 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(declare-const Y_3 Real)
(assert (or
  (and (>= X_0 -0.1) (<= X_0 0.1) (>= X_1 -0.1) (<= X_1 0.1) (>= X_2 -0.1) (<= X_2 0.1)
       (>= X_3 -0.1) (<= X_3 0.1) (>= X_4 -0.1) (<= X_4 0.1) (>= X_5 -0.1) (<= X_5 0.1))
  (and (>= X_0 0.5) (<= X_0 0.6) (>= X_1 0.5) (<= X_1 0.6) (>= X_2 0.5) (<= X_2 0.6)
       (>= X_3 0.5) (<= X_3 0.6) (>= X_4 0.5) (<= X_4 0.6) (>= X_5 0.5) (<= X_5 0.6))))
(assert (or
  (and (<= Y_0 -1000.0))
  (and (>= Y_1 -1000.0) (<= Y_3 1000.0))
  (and (>= Y_3 -1000.0))))
"""


@pytest.fixture()
def files(tmp_path):
    model = relu_mlp(np.random.default_rng(0))
    model_path = tmp_path / "mlp.onnx"
    onnx.save(model, str(model_path))
    prop_path = tmp_path / "prop.vnnlib"
    prop_path.write_text(PROPERTY)
    return str(model_path), str(prop_path)


def test_report_refutes_what_the_bounds_refute(files):
    model, prop = files
    report = bound_property(load_model(model), load_property(prop), method="crown")
    assert len(report.cases) == 2
    for case in report.cases:
        first, second, third = case.disjuncts
        assert first.refuted and first.refuting_row == 0     # Y_0 <= -1000 is impossible
        assert not second.refuted and second.lower.shape == (2,)
        assert not third.refuted                             # Y_3 >= -1000 always holds
        assert np.all(case.output_lower <= case.output_upper)
    assert not report.proved


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_text_and_json_output(files, method):
    model, prop = files
    runner = CliRunner()
    text = runner.invoke(main, ["bounds", model, prop, "--method", method])
    assert text.exit_code == 0, text.output
    assert "input region 2/2" in text.output
    assert "refuted" in text.output and "NOT refuted" in text.output
    assert "summary   2/6 disjuncts refuted; not proved" in text.output
    result = runner.invoke(main, ["bounds", model, prop, "--method", method, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["method"] == method and data["proved"] is False
    assert data["refuted"] == 2 and data["disjuncts"] == 6
    assert len(data["cases"][0]["outputs"]["lower"]) == 4
    assert data["cases"][1]["disjuncts"][0]["refuted"] is True


def test_errors_are_reported_with_exit_code_2(files, tmp_path):
    model, prop = files
    runner = CliRunner()
    missing = runner.invoke(main, ["bounds", str(tmp_path / "nope.onnx"), prop])
    assert missing.exit_code == 2 and "error:" in missing.output
    wrong = tmp_path / "wrong.vnnlib"
    wrong.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                     "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (<= Y_0 0.0))\n")
    mismatch = runner.invoke(main, ["bounds", model, str(wrong)])
    assert mismatch.exit_code == 2 and "inputs" in mismatch.output


def test_mnist_property_is_proved_by_crown():
    root = require_shared("vnncomp", "mnist_fc")
    graph = load_model(root / "onnx" / "mnist-net_256x2.onnx")
    prop = load_property(root / "vnnlib" / "prop_0_0.03.vnnlib")
    assert not bound_property(graph, prop, method="ibp").proved
    crown = bound_property(graph, prop, method="crown")
    assert crown.proved and crown.worst_margin > 0.1


def test_text_output_shows_32_disjuncts_and_counts_the_rest(tmp_path):
    """audit B4.4: 50k disjuncts printed 250 000 lines; the text now stops at 32
    disjuncts per region and says how many more there are and how many of
    them are open (--json keeps them all)."""
    from tests.builders import chain_model, save

    model = save(chain_model([("Relu", [], {})], (1, 1)), tmp_path / "relu.onnx")
    rows = " ".join(f"(<= Y_0 {-k - 10}.0)" for k in range(99)) + " (>= Y_0 0.5)"
    prop = tmp_path / "many.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n"
                    f"(assert (or {rows}))\n")
    text = CliRunner().invoke(main, ["bounds", str(model), str(prop)])
    assert text.exit_code == 0, text.output
    assert "... 68 more disjuncts, 1 of them not refuted" in text.output
    assert len(text.output.splitlines()) < 60
    data = json.loads(CliRunner().invoke(main, ["bounds", str(model), str(prop), "--json"]).output)
    assert data["disjuncts"] == 100 and data["refuted"] == 99
