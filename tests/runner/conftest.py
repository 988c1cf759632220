"""A tiny VNN-COMP benchmark folder with known answers, built in tmp_path.

Two networks with a 2-d input in [lo, hi]^2:

- ``linear``: y0 = x0 + x1, y1 = x0 - x1, on [0, 1]^2 (so y0 lies in [0, 2]);
- ``relu``:   y0 = relu(x0) - relu(x1), y1 = relu(x0) + relu(x1), on [-1, 1]^2.

Properties (the unsafe set), answers obvious by hand:

- linear_sat    y0 >= 1.5   sat   (x = (1, 1) gives 2)
- linear_unsat  y0 >= 2.5   unsat
- relu_sat      y0 <= -0.5  sat   (x = (0, 1) gives -1)
- relu_unsat    y1 >= 2.5   unsat (at most 2)
- broken        a truncated file: error
- and a row naming a network file that does not exist: error
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.builders import chain_model

BOX = {"linear": (0.0, 1.0), "relu": (-1.0, 1.0)}

# (onnx, vnnlib, expected)
ROWS = [
    ("onnx/linear.onnx", "vnnlib/linear_sat.vnnlib", "sat"),
    ("onnx/linear.onnx", "vnnlib/linear_unsat.vnnlib", "unsat"),
    ("onnx/relu.onnx.gz", "vnnlib/relu_sat.vnnlib.gz", "sat"),
    ("onnx/relu.onnx.gz", "vnnlib/relu_unsat.vnnlib", "unsat"),
    ("onnx/linear.onnx", "vnnlib/broken.vnnlib", "unknown"),
    ("onnx/missing.onnx", "vnnlib/linear_sat.vnnlib", "unknown"),
]
ANSWERS = {(onnx_path, vnnlib): answer for onnx_path, vnnlib, answer in ROWS}


def linear_model():
    weight = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.float32)  # x @ W
    return chain_model([("MatMul", [weight], {})], [1, 2])


def relu_model():
    first = np.eye(2, dtype=np.float32)
    second = np.array([[1.0, 1.0], [-1.0, 1.0]], dtype=np.float32)
    return chain_model([("MatMul", [first], {}), ("Relu", [], {}),
                        ("MatMul", [second], {})], [1, 2])


def vnnlib_text(lower: float, upper: float, unsafe: str) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(2)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(2)]
    for i in range(2):
        lines += [f"(assert (>= X_{i} {lower}))", f"(assert (<= X_{i} {upper}))"]
    lines.append(f"(assert {unsafe})")
    return "\n".join(lines) + "\n"


def build_benchmark(folder: Path, timeout: float = 20.0) -> Path:
    """Write onnx/, vnnlib/, instances.csv and expected.csv into ``folder``."""
    (folder / "onnx").mkdir(parents=True)
    (folder / "vnnlib").mkdir()
    onnx.save(linear_model(), str(folder / "onnx" / "linear.onnx"))
    (folder / "onnx" / "relu.onnx.gz").write_bytes(
        gzip.compress(relu_model().SerializeToString()))
    props = {
        "linear_sat": vnnlib_text(*BOX["linear"], "(>= Y_0 1.5)"),
        "linear_unsat": vnnlib_text(*BOX["linear"], "(>= Y_0 2.5)"),
        "relu_sat": vnnlib_text(*BOX["relu"], "(<= Y_0 -0.5)"),
        "relu_unsat": vnnlib_text(*BOX["relu"], "(>= Y_1 2.5)"),
    }
    for name, text in props.items():
        path = folder / "vnnlib" / f"{name}.vnnlib"
        if name == "relu_sat":
            path.with_suffix(".vnnlib.gz").write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    (folder / "vnnlib" / "broken.vnnlib").write_text("(declare-const X_0 Real)\n(assert (<= X_0")
    (folder / "instances.csv").write_text(
        "".join(f"{o},{v},{timeout:g}\n" for o, v, _ in ROWS))
    (folder / "expected.csv").write_text(
        "onnx,vnnlib,expected,source\n"
        + "".join(f"{o},{v},{answer},hand\n" for o, v, answer in ROWS))
    return folder


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory) -> Path:
    return build_benchmark(tmp_path_factory.mktemp("template") / "tiny")


@pytest.fixture
def tiny(tiny_template, tmp_path) -> Path:
    """A fresh copy of the tiny benchmark folder (tests may edit it)."""
    return Path(shutil.copytree(tiny_template, tmp_path / "tiny"))


@pytest.fixture(scope="session")
def finished_run(tiny_template, tmp_path_factory):
    """One full run of the tiny benchmark (2 jobs): (folder, results CSV, Report)."""
    from verifier.runner import read_expected, read_instances, run_benchmark

    out = tmp_path_factory.mktemp("finished") / "results.csv"
    report = run_benchmark(tiny_template, read_instances(tiny_template / "instances.csv"),
                           out, expected=read_expected(tiny_template / "expected.csv"),
                           jobs=2)
    return tiny_template, out, report
