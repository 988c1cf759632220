"""The report's results, its soundness check and its tables (Markdown, CSV, JSON).

A :class:`Column` holds one method at one eps: a status per image and the
seconds spent on it (for batched methods, the batch time divided evenly).
Statuses: ``wrong`` (the model misclassifies the clean image: never robust,
as in every published table), ``certified`` / ``not certified`` (bound
methods), ``robust`` / ``broken`` (PGD), ``certified`` / ``broken`` /
``undecided`` (complete). A column's accuracy is the fraction of *all*
images that are ``certified`` or ``robust``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from verifier.errors import VerifierError

WRONG, CERTIFIED, NOT_CERTIFIED = "wrong", "certified", "not certified"
ROBUST, BROKEN, UNDECIDED = "robust", "broken", "undecided"
SOUND_METHODS = ("ibp", "naive-ibp", "crown", "crown+ibp", "alpha-crown", "complete")
GOOD = (CERTIFIED, ROBUST)


class SoundnessError(VerifierError):
    """An image was certified by a sound method and broken by an attack: a bug."""


@dataclass(frozen=True)
class Column:
    """One method at one eps: per-image statuses and seconds."""

    method: str
    eps: float
    status: tuple[str, ...]
    seconds: tuple[float, ...]

    def count(self, *statuses: str) -> int:
        return sum(s in statuses for s in self.status)

    @property
    def accuracy(self) -> float:
        return self.count(*GOOD) / len(self.status) if self.status else 0.0


@dataclass(frozen=True)
class SmoothingPart:
    """CERTIFY of the smoothed classifier on every image (L2 radii)."""

    sigma: float
    radii: tuple[float, ...]
    certificates: tuple
    input_size: int

    def certified_at(self, radius: float) -> float:
        from verifier.smoothing import certified_fraction

        return certified_fraction(self.certificates, radius)

    @property
    def abstain_rate(self) -> float:
        return sum(c.abstained for c in self.certificates) / max(1, len(self.certificates))


@dataclass(frozen=True)
class Report:
    """Everything a report prints; built by :func:`verifier.report.robustness_report`."""

    model: str
    data: str
    norm: str
    clip: tuple[float, float] | None
    eps: tuple[float, ...]
    methods: tuple[str, ...]
    images: tuple[int, ...]
    labels: tuple[int, ...]
    predictions: tuple[int, ...]
    columns: tuple[Column, ...]
    smoothing: SmoothingPart | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def clean_accuracy(self) -> float:
        right = sum(p == y for p, y in zip(self.predictions, self.labels))
        return right / len(self.labels) if self.labels else 0.0

    def column(self, method: str, eps: float) -> Column | None:
        return next((c for c in self.columns if c.method == method and c.eps == eps), None)


def check_soundness(columns: Sequence[Column], images: Sequence[int]) -> None:
    """Raise :class:`SoundnessError` when an image certified by a sound method at some
    eps is broken by an attack (PGD or complete) at that eps."""
    for eps in sorted({c.eps for c in columns}):
        at = [c for c in columns if c.eps == eps]
        certified = {i for c in at if c.method in SOUND_METHODS
                     for i, s in enumerate(c.status) if s == CERTIFIED}
        broken = {i for c in at for i, s in enumerate(c.status) if s == BROKEN}
        both = sorted(certified & broken)
        if both:
            who = ", ".join(
                f"image {images[i]} ({'/'.join(c.method for c in at if c.status[i] == CERTIFIED)}"
                f" certified, {'/'.join(c.method for c in at if c.status[i] == BROKEN)} broke it)"
                for i in both[:5])
            raise SoundnessError(
                f"soundness check failed at eps={eps:g}: {len(both)} image(s) certified by a "
                f"sound method were broken by an attack whose point onnxruntime replayed: {who}. "
                f"This is a bug in the verifier; no table is printed. Please report it with "
                f"the model and the data.")


def _header(report: Report) -> list[str]:
    return ["eps", "clean"] + [m for m in report.methods]


def _converted(report: Report) -> bool:
    return report.smoothing is not None and report.norm == "linf"


def summary_rows(report: Report) -> list[dict]:
    """One dict per eps: clean accuracy, each method's accuracy (complete: also its
    undecided count), and for an L-infinity report with smoothing the converted column."""
    rows = []
    for eps in report.eps:
        row = {"eps": eps, "clean": report.clean_accuracy}
        for method in report.methods:
            column = report.column(method, eps)
            row[method] = None if column is None else column.accuracy
            if method == "complete" and column is not None:
                row["complete_undecided"] = column.count(UNDECIDED)
        if _converted(report):
            radius = eps * math.sqrt(report.smoothing.input_size)
            row["smoothing_l2_to_linf"] = report.smoothing.certified_at(radius)
        rows.append(row)
    return rows


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def markdown(report: Report) -> str:
    """The summary tables in Markdown (rows eps; smoothing rows sigma)."""
    clip = "none" if report.clip is None else f"[{report.clip[0]:g}, {report.clip[1]:g}]"
    lines = [f"model {report.model}, data {report.data}, {len(report.labels)} images, "
             f"norm {report.norm}, clip {clip}; accuracy = fraction of all images "
             f"(misclassified images are never robust)", ""]
    head = _header(report)
    if _converted(report):
        head.append(f"smoothed g, L2 r >= eps*sqrt({report.smoothing.input_size})")
    if report.eps:
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary_rows(report):
        cells = [f"{row['eps']:g}", f"{row['clean']:.3f}"]
        for method in report.methods:
            text = _cell(row[method])
            if "complete_undecided" in row and method == "complete":
                text += f" ({row['complete_undecided']} undecided)"
            cells.append(text)
        if _converted(report):
            cells.append(_cell(row["smoothing_l2_to_linf"]))
        lines.append("| " + " | ".join(cells) + " |")
    if report.smoothing is not None:
        part = report.smoothing
        radii = [r for r in part.radii if r > 0]
        head = ["sigma", "clean (r=0)"] + [f"r={r:g}" for r in radii] + ["abstain"]
        lines += ["", "Smoothed classifier g (Cohen et al. 2019), certified accuracy at L2 "
                  "radius r:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        cells = [f"{part.sigma:g}", _cell(part.certified_at(0.0))]
        cells += [_cell(part.certified_at(r)) for r in radii]
        cells.append(f"{100 * part.abstain_rate:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    if report.seconds:
        spent = ", ".join(f"{m} {s:.1f} s" for m, s in report.seconds.items())
        lines += ["", f"time: {spent}"]
    return "\n".join(lines) + "\n"


def summary_csv(report: Report) -> str:
    """The eps table as CSV: eps, clean, one column per method (+ complete_undecided)."""
    rows = summary_rows(report)
    keys = list(rows[0]) if rows else ["eps", "clean"]
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in keys))
    return "\n".join(lines) + "\n"


def per_image_csv(report: Report) -> str:
    """One line per image, eps and method: image,label,prediction,eps,method,result,seconds."""
    lines = ["image,label,prediction,eps,method,result,seconds"]
    for column in report.columns:
        for k, image in enumerate(report.images):
            lines.append(f"{image},{report.labels[k]},{report.predictions[k]},{column.eps:g},"
                         f"{column.method},{column.status[k]},{column.seconds[k]:.6f}")
    if report.smoothing is not None:
        for k, (image, cert) in enumerate(zip(report.images, report.smoothing.certificates)):
            result = "abstain" if cert.abstained else f"class {cert.prediction} radius " \
                                                      f"{cert.radius:.6f}"
            lines.append(f"{image},{report.labels[k]},{report.predictions[k]},,"
                         f"smoothing sigma={report.smoothing.sigma:g},{result},"
                         f"{cert.seconds:.6f}")
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> dict:
    """The summary as a JSON-ready dict."""
    data = {"model": report.model, "data": report.data, "images": len(report.labels),
            "norm": report.norm, "clip": None if report.clip is None else list(report.clip),
            "eps": list(report.eps), "methods": list(report.methods),
            "clean_accuracy": report.clean_accuracy, "rows": summary_rows(report),
            "seconds": {m: round(s, 3) for m, s in report.seconds.items()}}
    if report.smoothing is not None:
        part = report.smoothing
        data["smoothing"] = {"sigma": part.sigma, "abstain_rate": part.abstain_rate,
                             "certified": {f"{r:g}": part.certified_at(r)
                                           for r in sorted(set(part.radii) | {0.0})}}
    return data


def accuracy_curve(report: Report, method: str) -> np.ndarray:
    """Accuracy of ``method`` at each eps of the report (NaN where not run)."""
    return np.array([np.nan if report.column(method, e) is None else
                     report.column(method, e).accuracy for e in report.eps])
