"""Scoring, the independent counterexample check and the summary."""
from __future__ import annotations

import pytest

from verifier.result import Verdict
from verifier.runner import (SCORE_CORRECT, SCORE_WRONG, Check, Row, check_counterexample,
                             parse_counterexample, score_row, summarize)

VALID = Check(True)
INVALID = Check(False, "Y_0 differs")


@pytest.mark.parametrize("result, check, expected, score, wrong", [
    (Verdict.SAT, VALID, "sat", SCORE_CORRECT, False),
    (Verdict.SAT, VALID, "unknown", SCORE_CORRECT, False),
    (Verdict.SAT, VALID, None, SCORE_CORRECT, False),
    (Verdict.SAT, VALID, "unsat", SCORE_CORRECT, False),  # a checked counterexample wins
    (Verdict.SAT, INVALID, "sat", SCORE_WRONG, True),
    (Verdict.SAT, INVALID, None, SCORE_WRONG, True),
    (Verdict.SAT, None, "sat", SCORE_WRONG, True),
    (Verdict.UNSAT, None, "unsat", SCORE_CORRECT, False),
    (Verdict.UNSAT, None, "sat", SCORE_WRONG, True),
    (Verdict.UNSAT, None, "unknown", 0, False),
    (Verdict.UNSAT, None, None, 0, False),
    (Verdict.UNKNOWN, None, "sat", 0, False),
    (Verdict.TIMEOUT, None, "unsat", 0, False),
    (Verdict.ERROR, None, "sat", 0, False),
])
def test_score_row_follows_vnncomp_2023(result, check, expected, score, wrong):
    got_score, why, _ = score_row(result, check, expected)
    assert got_score == score
    assert bool(why) == wrong


def test_a_valid_counterexample_against_unsat_ground_truth_is_noted():
    _, _, note = score_row(Verdict.SAT, VALID, "unsat")
    assert "ground truth says unsat" in note


def result_text(x, y):
    entries = [f"(X_{i} {v!r})" for i, v in enumerate(x)] + [f"(Y_{j} {v!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n".join(entries) + ")\n"


def test_parse_counterexample_reads_values_by_index():
    x, y = parse_counterexample("sat\n((X_1 0.5)\n(X_0 -1e-3)\n(Y_0 2.0))\n")
    assert x.tolist() == [-1e-3, 0.5] and y.tolist() == [2.0]


@pytest.mark.parametrize("text, message", [
    ("unsat\n", "does not start with 'sat'"),
    ("sat\n((X_0 1)\n(X_2 1)\n(Y_0 1))", "X_1 is missing"),
    ("sat\n((X_0 1)\n(X_0 2)\n(Y_0 1))", "X_0 is given twice"),
    ("sat\n((X_0 1))", "no Y values"),
    ("sat\n((X_0 one)\n(Y_0 1))", "not a number"),
])
def test_parse_counterexample_rejects_broken_blocks(text, message):
    with pytest.raises(ValueError, match=message):
        parse_counterexample(text)


def test_check_counterexample_accepts_a_true_one(tiny):
    model, prop = tiny / "onnx/linear.onnx", tiny / "vnnlib/linear_sat.vnnlib"
    assert check_counterexample(model, prop, result_text([1.0, 1.0], [2.0, 0.0])) == VALID
    # .gz network and property
    model, prop = tiny / "onnx/relu.onnx.gz", tiny / "vnnlib/relu_sat.vnnlib.gz"
    assert check_counterexample(model, prop, result_text([0.0, 1.0], [-1.0, 1.0])).valid


@pytest.mark.parametrize("x, y, message", [
    ([1.0, 1.0], [2.0000021, 0.0], "Y_0 is 2.0000021 in the file but the model gives 2.0"),
    ([1.0, 1.0], [2.0, 1e-30], "Y_1"),  # an exact zero output must be given as zero
    ([0.5, 0.5], [1.0, 0.0], "does not violate"),
    ([1.0, 1.5], [2.5, -0.5], "does not violate"),  # outside the input box
    ([1.0, 1.0, 1.0], [2.0, 0.0], "3 X values"),
    ([1.0, 1.0], [2.0], "1 Y values"),
])
def test_check_counterexample_rejects_false_ones(tiny, x, y, message):
    model, prop = tiny / "onnx/linear.onnx", tiny / "vnnlib/linear_sat.vnnlib"
    check = check_counterexample(model, prop, result_text(x, y))
    assert not check.valid and message in check.reason


def test_check_counterexample_allows_the_strict_output_tolerance(tiny):
    model, prop = tiny / "onnx/linear.onnx", tiny / "vnnlib/linear_sat.vnnlib"
    assert check_counterexample(model, prop, result_text([1.0, 1.0], [2.0 * (1 + 5e-7), 0.0])).valid


def test_check_counterexample_reports_a_replay_failure(tiny):
    check = check_counterexample(tiny / "onnx/missing.onnx",
                                 tiny / "vnnlib/linear_sat.vnnlib",
                                 result_text([1.0, 1.0], [2.0, 0.0]))
    assert not check.valid and check.reason.startswith("replay failed")


def test_check_round_trips_through_text():
    assert Check.parse(str(VALID)) == VALID
    assert Check.parse(str(INVALID)) == INVALID
    assert Check.parse("") is None


def row(onnx, vnnlib, result, seconds, score=0, wrong=""):
    return Row(onnx, vnnlib, result, seconds, score=score, wrong=wrong,
               expected="sat" if score else None)


def test_summarize_counts_and_times_per_network_and_property():
    rows = [row("onnx/a.onnx", "p1.vnnlib", Verdict.SAT, 1.0, SCORE_CORRECT),
            row("onnx/a.onnx", "p2.vnnlib", Verdict.UNSAT, 3.0),
            row("onnx/b.onnx.gz", "p1.vnnlib", Verdict.TIMEOUT, 10.0),
            row("onnx/b.onnx.gz", "p2.vnnlib", Verdict.UNSAT, 2.0, SCORE_WRONG, "unsat vs sat")]
    summary = summarize(rows, scored=True)
    totals = summary["totals"]
    assert (totals["sat"], totals["unsat"], totals["timeout"], totals["count"]) == (1, 2, 1, 4)
    assert totals["solved"] == 3
    assert totals["total_seconds"] == 16.0 and totals["median_seconds"] == 2.5
    assert set(summary["networks"]) == {"a", "b"}
    assert summary["networks"]["b"]["median_seconds"] == 6.0
    assert summary["properties"]["p2"]["unsat"] == 2
    assert summary["score"]["total"] == SCORE_CORRECT + SCORE_WRONG
    assert summary["score"]["wrong"] == 1
    assert [w["onnx"] for w in summary["wrong"]] == ["onnx/b.onnx.gz"]
    assert summarize(rows, scored=False)["score"] is None
