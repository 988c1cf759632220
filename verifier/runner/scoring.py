"""Rows of a results file, their score, and which rows fail a build.

Scoring (VNN-COMP since 2023): +10 for a correct ``sat``/``unsat``, -150 for
a wrong answer or a ``sat`` whose counterexample does not check, 0
otherwise. An ``unsat`` where the ground truth is ``unknown`` scores 0 here:
nothing can confirm it (the competition would give +10 when no other tool
disagrees).

A row *fails* (JUnit failure, exit code 1) when it is wrong, or when its
answer is one of the ``fail_on`` words (default ``sat`` and ``error``) and
is not the answer the ground truth expects.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from verifier.result import Verdict
from verifier.runner.check import Check
from verifier.runner.instances import _Paths

SCORE_CORRECT = 10
SCORE_WRONG = -150
#: the answers that fail a build unless told otherwise
DEFAULT_FAIL_ON = frozenset({Verdict.SAT.value, Verdict.ERROR.value})


@dataclass
class Row(_Paths):
    """The outcome of one instance, as one line of the results CSV."""

    onnx: str
    vnnlib: str
    result: Verdict
    seconds: float
    reason: str = ""
    counterexample: str = ""  # path of the kept result file, relative to the CSV's folder
    check: Check | None = None  # for sat only
    expected: str | None = None
    score: int = 0
    wrong: str = ""  # why the answer is wrong; "" when it is not
    note: str = ""  # e.g. a valid counterexample against an 'unsat' ground truth
    resumed: bool = False

    def csv_row(self, scored: bool) -> dict:
        data = {"onnx": self.onnx, "vnnlib": self.vnnlib, "result": self.result.value,
                "seconds": f"{self.seconds:.3f}", "reason": self.reason,
                "counterexample": self.counterexample,
                "check": "" if self.check is None else str(self.check)}
        if scored:
            data["expected"] = self.expected or ""
            data["score"] = str(self.score)
        return data

    def to_dict(self) -> dict:
        data = self.csv_row(scored=True)
        data["seconds"] = round(self.seconds, 3)
        data.update(wrong=self.wrong, note=self.note)
        return data


def score_row(result: Verdict, check: Check | None, expected: str | None):
    """(score, why it is wrong or "", note) of one answer.

    ``expected`` is the ground truth (sat, unsat, unknown) or None. A ``sat``
    with a valid counterexample is correct whatever the ground truth says (a
    checked counterexample is a proof); the disagreement is returned as a note.
    """
    if result is Verdict.SAT:
        if check is None or not check.valid:
            why = check.reason if check is not None else "not checked"
            return SCORE_WRONG, f"sat with an invalid counterexample ({why})", ""
        note = ("the ground truth says unsat, but the counterexample is valid"
                if expected == Verdict.UNSAT.value else "")
        return SCORE_CORRECT, "", note
    if result is Verdict.UNSAT:
        if expected == Verdict.SAT.value:
            return SCORE_WRONG, "answered unsat, the ground truth is sat", ""
        if expected == Verdict.UNSAT.value:
            return SCORE_CORRECT, "", ""
        return 0, "", "unsat without a ground truth to confirm it" if expected else ""
    return 0, "", ""


def apply_score(row: Row, expected: dict | None) -> Row:
    truth = expected.get(row.key) if expected is not None else None
    score, wrong, note = score_row(row.result, row.check, truth)
    return replace(row, expected=truth, score=score, wrong=wrong, note=note)


def failure(row: Row, fail_on=DEFAULT_FAIL_ON) -> str:
    """Why ``row`` fails a build ("" when it passes): it is wrong, or its
    answer is in ``fail_on`` and differs from its expected answer."""
    if row.wrong:
        return f"wrong answer: {row.wrong}"
    answer = row.result.value
    if answer not in fail_on or answer == row.expected:
        return ""
    if row.result is Verdict.SAT:
        return "sat: the property is violated (a checked counterexample exists)"
    return f"{answer}: {row.reason}" if row.reason else answer


__all__ = ["Row", "score_row", "apply_score", "failure", "SCORE_CORRECT", "SCORE_WRONG",
           "DEFAULT_FAIL_ON"]
