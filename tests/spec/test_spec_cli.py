"""`verifier spec PROPERTY [--json]`: the summary, and errors as exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from verifier.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"


def run(*args):
    return CliRunner().invoke(main, ["spec", *map(str, args)])


def test_text_summary_of_two_regions():
    result = run(EXAMPLES / "two_regions.vnnlib")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    assert lines["inputs"].strip() == "2" and lines["outputs"].strip() == "2"
    assert lines["input regions"].strip() == "2"
    assert lines["unsafe disjuncts"].strip() == "3 (1, 2 by region)"
    assert lines["output rows"].strip() == "6 (3 strict)"
    assert lines["box widths"].strip() == "min 1, max 1"


def test_json_summary():
    result = run(EXAMPLES / "robustness_v2.vnnlib", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["inputs"] == 4 and info["outputs"] == 3
    assert (info["input_regions"], info["disjuncts"], info["rows"]) == (1, 2, 2)
    assert info["disjuncts_per_region"] == [2]
    assert info["box_width_min"] == pytest.approx(0.2) and info["box_width_max"] == \
        pytest.approx(0.2)
    assert info["robustness_label"] == 1


def test_bad_property_is_exit_2_with_position(tmp_path):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                   "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 Z_9))\n")
    result = run(bad)
    assert result.exit_code == 2
    assert f"error: {bad}:5:17: unknown symbol 'Z_9'" in result.output
    assert "Traceback" not in result.output


def test_missing_file_is_exit_2():
    result = run("no/such/file.vnnlib")
    assert result.exit_code == 2
    assert "error: property file not found: no/such/file.vnnlib" in result.output


def test_a_real_process_prints_no_traceback(tmp_path):
    bad = tmp_path / "unbalanced.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1)\n")
    process = subprocess.run([sys.executable, "-m", "verifier", "spec", str(bad)],
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 2
    assert process.stdout == ""
    assert process.stderr.strip() == (f"error: {bad}:3:1: unbalanced parentheses: "
                                      "this '(' is never closed")
