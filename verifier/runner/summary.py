"""The summary of a run: counts, times and score overall, per network and
per property file; the :class:`Report` that :func:`run_benchmark` returns."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from verifier.result import Verdict
from verifier.runner.results import counterexample_dir
from verifier.runner.scoring import SCORE_CORRECT, Row


def _group_stats(rows: Sequence[Row]) -> dict:
    counts = {verdict.value: 0 for verdict in Verdict}
    for row in rows:
        counts[row.result.value] += 1
    seconds = [row.seconds for row in rows]
    counts.update(
        count=len(rows),
        solved=counts[Verdict.SAT.value] + counts[Verdict.UNSAT.value],
        total_seconds=round(sum(seconds), 3),
        median_seconds=round(statistics.median(seconds), 3) if seconds else 0.0,
    )
    return counts


def summarize(rows: Sequence[Row], scored: bool) -> dict:
    """Counts of each answer, total and median time: overall, per network and
    per property file; with ``scored``, the score; always the wrong answers."""
    networks: dict[str, list[Row]] = {}
    properties: dict[str, list[Row]] = {}
    for row in rows:
        networks.setdefault(row.network, []).append(row)
        properties.setdefault(row.property_name, []).append(row)
    wrong = [row for row in rows if row.wrong]
    summary = {
        "totals": _group_stats(rows),
        "networks": {name: _group_stats(group) for name, group in networks.items()},
        "properties": {name: _group_stats(group) for name, group in properties.items()},
        "wrong": [row.to_dict() for row in wrong],
        "notes": [row.to_dict() for row in rows if row.note],
        "score": None,
    }
    if scored:
        summary["score"] = {
            "total": sum(row.score for row in rows),
            "correct": sum(1 for row in rows if row.score == SCORE_CORRECT),
            "wrong": len(wrong),
            "unscored": sum(1 for row in rows if row.score == 0),
            "best_possible": SCORE_CORRECT * sum(
                1 for row in rows if row.expected in (Verdict.SAT.value, Verdict.UNSAT.value)),
        }
    return summary


@dataclass
class Report:
    """What :func:`run_benchmark` returns: every row (instance order) and how
    the run went."""

    benchmark: str
    results_path: Path
    rows: list[Row]
    scored: bool
    ran: int
    resumed: int
    wall_seconds: float
    duplicates: int = 0  # repeated rows of the instance list, run once

    @property
    def wrong(self) -> list[Row]:
        return [row for row in self.rows if row.wrong]

    def summary(self) -> dict:
        data = {"benchmark": self.benchmark, "results_file": str(self.results_path),
                "counterexamples": str(counterexample_dir(self.results_path)),
                "instances": len(self.rows), "ran": self.ran, "resumed": self.resumed,
                "duplicates": self.duplicates,
                "wall_seconds": round(self.wall_seconds, 3)}
        data.update(summarize(self.rows, self.scored))
        return data


__all__ = ["summarize", "Report"]
