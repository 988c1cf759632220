"""Per-input TSV rows and the summary table of a smoothing run.

The TSV has one line per input: ``idx label predict radius correct time``,
with ``predict`` = -1 where the smoothed classifier abstained (as in Cohen et
al.'s code), the radius in the model's input units (0 on abstain) and the time
in seconds. PREDICT writes the same columns without ``radius``. Radii are
written rounded *down* to ``RADIUS_DECIMALS`` decimals, so a table computed
from the TSV never claims more than the certificates; the summary and the
curve are computed from the exact in-memory radii.

The curve (``curve_rows``, written as CSV by ``smooth certify --curve``, like
``analyze.py`` of Cohen et al.) gives the certified accuracy at every radius of
a grid from 0 up to the largest certified radius.

The summary follows the published tables: the smoothed classifier's clean
accuracy (correct and not abstained; certified accuracy at radius 0), its
abstain rate, and the certified accuracy at each radius r: the fraction of
inputs that are correct with a certified radius >= r.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Sequence

DEFAULT_RADII = (0.25, 0.5, 1.0)
CERTIFY_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
PREDICT_HEADER = "idx\tlabel\tpredict\tcorrect\ttime"
RADIUS_DECIMALS = 4
CURVE_HEADER = "radius,certified_accuracy,certified,inputs"


def floor_text(value: float, decimals: int = RADIUS_DECIMALS) -> str:
    """``value`` rounded down (exactly, in decimal) to ``decimals`` places."""
    step = Decimal(1).scaleb(-decimals)
    return str(Decimal(float(value)).quantize(step, rounding=ROUND_FLOOR))


def _predicted(result) -> int:
    return -1 if result.prediction is None else int(result.prediction)


def certify_row(idx: int, result) -> str:
    """One TSV line for a :class:`Certificate` (``result.label`` must be set)."""
    return (f"{idx}\t{result.label}\t{_predicted(result)}\t{floor_text(result.radius)}\t"
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
            certified = [(float(radius), certified_fraction(results, radius)) for radius in radii]
        return cls(count, len(correct) / count,
                   sum(r.abstained for r in results) / count, tuple(certified),
                   sum(r.seconds for r in results) / count)


def certified_count(results: Sequence, radius: float) -> int:
    """How many ``results`` are correct with a certified radius >= ``radius``."""
    return sum(bool(r.correct and r.radius >= radius) for r in results)


def certified_fraction(results: Sequence, radius: float) -> float:
    """The fraction of ``results`` that are correct with a certified radius >= ``radius``."""
    return certified_count(results, radius) / len(results) if results else 0.0


def curve_grid(results: Sequence, sigma: float, points_per_sigma: int = 100) -> list[float]:
    """Radii 0, sigma/100, 2 sigma/100, ... up to the largest certified radius.

    Each radius is rounded to 6 decimals before the accuracy is computed at it,
    so the printed radius is the one the accuracy holds at.
    """
    top = max((r.radius for r in results if r.correct), default=0.0)
    steps = int(top * points_per_sigma / sigma) if sigma > 0 else 0
    return [round(k * sigma / points_per_sigma, 6) for k in range(steps + 1)]


def curve_rows(results: Sequence, sigma: float) -> list[str]:
    """CSV lines (with header) of certified accuracy against L2 radius on :func:`curve_grid`."""
    lines = [CURVE_HEADER]
    for radius in curve_grid(results, sigma):
        count = certified_count(results, radius)
        lines.append(f"{radius!r},{count / len(results):.6g},{count},{len(results)}")
    return lines


def format_table(rows: Sequence[tuple[str, Summary]]) -> str:
    """A Markdown table with one line per (name, summary), as in the published tables.

    Radius 0 has no column of its own: it is the clean accuracy column.
    """
    if not rows:
        return ""
    radii = [radius for radius, _ in rows[0][1].certified if radius > 0]
    head = ["model", "inputs", "clean acc (r=0)"] + [f"r={radius:g}" for radius in radii]
    head += ["abstain", "s/input"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, summary in rows:
        cells = [name, str(summary.count), f"{summary.clean_accuracy:.3f}"]
        cells += [f"{acc:.3f}" for radius, acc in summary.certified if radius > 0]
        cells += [f"{100 * summary.abstain_rate:.1f}%", f"{summary.mean_seconds:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
