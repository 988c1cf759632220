"""Per-input TSV rows and the summary table of a smoothing run.

The TSV has one line per input: ``idx label predict radius correct time``,
with ``predict`` = -1 where the smoothed classifier abstained (as in Cohen et
al.'s code), the radius in the model's input units (0 on abstain) and the time
in seconds. PREDICT writes the same columns without ``radius``.

The summary follows the published tables: the smoothed classifier's clean
accuracy (correct and not abstained; certified accuracy at radius 0), its
abstain rate, and the certified accuracy at each radius r: the fraction of
inputs that are correct with a certified radius >= r.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

DEFAULT_RADII = (0.25, 0.5, 1.0)
CERTIFY_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
PREDICT_HEADER = "idx\tlabel\tpredict\tcorrect\ttime"


def _predicted(result) -> int:
    return -1 if result.prediction is None else int(result.prediction)


def certify_row(idx: int, result) -> str:
    """One TSV line for a :class:`Certificate` (``result.label`` must be set)."""
    return (f"{idx}\t{result.label}\t{_predicted(result)}\t{result.radius:.4f}\t"
            f"{int(result.correct)}\t{result.seconds:.4f}")


def predict_row(idx: int, result) -> str:
    """One TSV line for a :class:`Prediction`."""
    return f"{idx}\t{result.label}\t{_predicted(result)}\t{int(result.correct)}\t{result.seconds:.4f}"


@dataclass(frozen=True)
class Summary:
    """Aggregate figures of one run over ``count`` inputs."""

    count: int
    clean_accuracy: float
    abstain_rate: float
    certified: tuple[tuple[float, float], ...]  # (radius, certified accuracy)
    mean_seconds: float

    @classmethod
    def of(cls, results: Sequence, radii: Sequence[float] = DEFAULT_RADII) -> Summary:
        """Summarise certificates (with labels) or predictions (radii ignored)."""
        count = len(results)
        if count == 0:
            return cls(0, 0.0, 0.0, tuple((float(r), 0.0) for r in radii), 0.0)
        correct = [r for r in results if r.correct]
        certified = []
        if all(hasattr(r, "radius") for r in results):
            certified = [(float(radius), sum(r.radius >= radius for r in correct) / count)
                         for radius in radii]
        return cls(count, len(correct) / count,
                   sum(r.abstained for r in results) / count, tuple(certified),
                   sum(r.seconds for r in results) / count)


def format_table(rows: Sequence[tuple[str, Summary]]) -> str:
    """A Markdown table with one line per (name, summary), as in the published tables."""
    if not rows:
        return ""
    radii = [radius for radius, _ in rows[0][1].certified]
    head = ["model", "inputs", "clean acc (r=0)"] + [f"r={radius:g}" for radius in radii]
    head += ["abstain", "s/input"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, summary in rows:
        cells = [name, str(summary.count), f"{summary.clean_accuracy:.3f}"]
        cells += [f"{acc:.3f}" for _, acc in summary.certified]
        cells += [f"{100 * summary.abstain_rate:.1f}%", f"{summary.mean_seconds:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
