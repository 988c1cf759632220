"""Robustness properties from data: one VNN-LIB file per correctly classified image.

    robustness_property(x, label, eps, n_outputs, clip=None) -> Property
    generate_specs(model, data, eps, out_dir, ...) -> GeneratedSpecs

The input region is the L-infinity ball ``[x - eps, x + eps]`` intersected
with the data domain ``clip = (lo, hi)`` when given; the unsafe set is "some
other class scores at least the label": the disjunction over ``j != label``
of ``Y_j >= Y_label``, written as the row ``Y_label - Y_j <= 0`` (the
VNN-COMP robustness convention, which :func:`verifier.spec.robustness_label`
recognises). ``unsat`` therefore means the model keeps the label on the whole
region. L2 balls are not boxes and cannot be written in VNN-LIB 1.0.

``generate_specs`` writes, under ``out_dir``, the model as ``onnx/<name>``,
one ``vnnlib/<stem>_img<idx>_eps<eps>.vnnlib`` per image and an
``instances.csv`` (``onnx,vnnlib,timeout`` relative to ``out_dir``, no
header), the layout ``verifier run`` and the VNN-COMP scripts read.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifier.errors import DataError, InputFileError
from verifier.spec.property import Case, InputRegion, OutputPolytope, Property
from verifier.spec.writer import write_vnnlib


def clip_box(x: np.ndarray, eps: float, clip: tuple[float, float] | None):
    """``[x - eps, x + eps]``, intersected with ``[clip[0], clip[1]]`` when given.

    Raises DataError when an image lies outside the clip range (the region
    would not contain the image).
    """
    x = np.asarray(x, np.float64)
    lower, upper = x - eps, x + eps
    if clip is not None:
        lo, hi = clip
        if np.any(x < lo) or np.any(x > hi):
            raise DataError(f"an input has values in [{x.min():g}, {x.max():g}], outside the "
                            f"clip range [{lo:g}, {hi:g}]; widen --clip or leave it out")
        lower, upper = np.maximum(lower, lo), np.minimum(upper, hi)
    return lower, upper


def margin_rows(label: int, n_outputs: int) -> np.ndarray:
    """``(n_outputs - 1, n_outputs)``: row k is e_label - e_j for the k-th class j != label."""
    others = [j for j in range(n_outputs) if j != label]
    rows = np.zeros((n_outputs - 1, n_outputs))
    rows[:, label] = 1.0
    rows[np.arange(n_outputs - 1), others] = -1.0
    return rows


def robustness_property(x, label: int, eps: float, n_outputs: int,
                        clip: tuple[float, float] | None = None, path: str | None = None
                        ) -> Property:
    """The L-infinity robustness property of image ``x`` (flattened in C order)."""
    lower, upper = clip_box(np.asarray(x).reshape(-1), eps, clip)
    unsafe = tuple(OutputPolytope(row[None, :], np.zeros(1)) for row in
                   margin_rows(int(label), n_outputs))
    return Property(lower.size, n_outputs, (Case(InputRegion(lower, upper), unsafe),), path)


@dataclass(frozen=True)
class GeneratedSpecs:
    """What :func:`generate_specs` wrote: the instances and the images it skipped."""

    instances: Path
    properties: tuple[Path, ...]
    misclassified: tuple[int, ...]


def _eps_text(eps: float) -> str:
    return np.format_float_positional(eps, trim="-")


def prepare_out_dir(out_dir) -> Path:
    """Create ``out_dir`` (its parent must exist) and check it is writable."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"output directory {out} is a file")
    if not out.parent.is_dir():
        raise InputFileError(f"cannot create {out}: directory {out.parent} does not exist")
    try:
        out.mkdir(exist_ok=True)
        probe = out / ".verifier-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputFileError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return out


def generate_specs(model, x: np.ndarray, y: np.ndarray, predictions: np.ndarray,
                   n_outputs: int, eps: float, out_dir, *, clip=None, indices=None,
                   timeout: float = 60.0) -> GeneratedSpecs:
    """Write the robustness properties of the correctly classified images among ``indices``.

    ``x`` (N, ...) and ``y`` (N,) are the data, ``predictions`` (N,) the
    model's classes (from onnxruntime), ``n_outputs`` its number of classes;
    ``indices`` None means all images.
    """
    if not (math.isfinite(eps) and eps >= 0):
        raise DataError(f"eps must be finite and non-negative, got {eps}")
    out = prepare_out_dir(out_dir)
    model = Path(model)
    (out / "onnx").mkdir(exist_ok=True)
    (out / "vnnlib").mkdir(exist_ok=True)
    target = out / "onnx" / model.name
    if not target.exists() or not os.path.samefile(model, target):
        shutil.copyfile(model, target)
    chosen = range(len(y)) if indices is None else indices
    lines, written, wrong = [], [], []
    for idx in chosen:
        if predictions[idx] != y[idx]:
            wrong.append(int(idx))
            continue
        name = f"{model.name.split('.')[0]}_img{idx}_eps{_eps_text(eps)}.vnnlib"
        prop = robustness_property(x[idx], int(y[idx]), eps, n_outputs, clip)
        path = out / "vnnlib" / name
        path.write_text(write_vnnlib(prop), encoding="utf-8")
        written.append(path)
        lines.append(f"onnx/{model.name},vnnlib/{name},{timeout:g}")
    instances = out / "instances.csv"
    instances.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return GeneratedSpecs(instances, tuple(written), tuple(wrong))
