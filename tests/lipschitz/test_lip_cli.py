"""``verifier lipschitz`` through click's CliRunner."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from lip_models import relu_mlp
from tests.bounds.onnx_models import OnnxBuilder
from tests.conftest import require_shared
from verifier.cli import main


def _run(*args):
    return CliRunner().invoke(main, ["lipschitz", *map(str, args)])


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    model = tmp_path / "mlp.onnx"
    onnx.save(relu_mlp(rng), model)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(6, 2, 3)).astype(np.float32),
             y=np.array([0, 1, 2, 0, 1, 2]))
    return model, data, tmp_path


def test_global_bounds_without_data(files):
    model, _, _ = files
    result = _run(model)
    assert result.exit_code == 0, result.output
    assert "L(f_0)=" in result.stdout and "L(f_y - f_j)" in result.stdout
    as_json = json.loads(_run(model, "--json", "--norm", "linf").stdout)
    assert as_json["norm"] == "linf" and len(as_json["margin"]) == 3


def test_tsv_and_summary_agree_with_the_library(files):
    from verifier.frontend import load_model
    from verifier.lipschitz import certify

    model, data, tmp = files
    out = tmp / "res.tsv"
    result = _run(model, data, "--out", out, "--radii", "0.01,0.1", "--local", 0.05)
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["idx", "label", "predict", "margin", "lipschitz", "radius", "correct"]
    with np.load(data) as arrays:
        expected = certify(load_model(model), arrays["x"].reshape(6, -1), arrays["y"],
                           local_eps=0.05)
    for row, certificate in zip(rows[1:], expected):
        assert float(row[5]) == pytest.approx(certificate.radius, rel=1e-5, abs=1e-12)
        assert int(row[6]) == int(certificate.correct)
    assert "r=0.01:" in result.stdout and "local on balls of radius 0.05" in result.stdout


def test_json_report(files):
    model, data, _ = files
    result = _run(model, data, "--json", "--limit", 3, "--norm", "linf")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["inputs"]) == 3 and report["global"]["norm"] == "linf"
    assert [c["radius"] for c in report["summary"]["certified"]] == [0.1, 0.25, 0.5]


def test_errors_are_one_paragraph_with_exit_code_2(files):
    model, data, tmp = files
    missing = _run(tmp / "missing.onnx")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.output
    wrong = tmp / "wrong.npz"
    np.savez(wrong, x=np.zeros((2, 5), np.float32), y=np.zeros(2, np.int64))
    result = _run(model, wrong)
    assert result.exit_code == 2 and "5 values" in result.stderr
    rng = np.random.default_rng(1)
    b = OnnxBuilder([1, 4], rng)
    softmax = tmp / "softmax.onnx"
    onnx.save(b.model(b.op("Softmax", [b.gemm("x", 4, 3)], axis=1)), softmax)
    result = _run(softmax)
    assert result.exit_code == 2 and "Softmax" in result.stderr
    assert "Traceback" not in result.output
    out = tmp / "never.tsv"
    result = _run(softmax, data, "--out", out)
    assert result.exit_code == 2 and not out.exists()
    assert _run(model, "--norm", "l1").exit_code == 2
    empty = tmp / "empty.npz"
    np.savez(empty, x=np.zeros((0, 2, 3), np.float32), y=np.zeros(0, np.int64))
    result = _run(model, empty, "--local", 0.1)
    assert result.exit_code == 2 and "empty" in result.stderr  # the loader refuses it


def test_digits_model_local_is_at_least_global():
    model = require_shared("models", "digits_mlp_rs_sigma0.25.onnx")
    data = require_shared("datasets", "digits_test.npz")
    runs = [json.loads(_run(model, data, "--json", "--limit", 40, *extra).stdout)
            for extra in ((), ("--local", 0.25))]
    glob, local = ([c["radius"] for c in run["inputs"]] for run in runs)
    assert all(lo >= g for g, lo in zip(glob, local))
    assert sum(lo > g for g, lo in zip(glob, local)) > 0
    assert runs[0]["summary"]["clean_accuracy"] > 0.9
