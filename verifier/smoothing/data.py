"""Inputs and labels for smoothing: .npz, CSV or a VNN-LIB robustness property.

- ``.npz``: arrays ``x`` (N x input shape, or N x anything with as many
  values per row; rows are reshaped in C order) and ``y`` (N integer labels).
  Values are used as stored.
- ``.csv``: one image per line, the label first and then the values (the
  MNIST / CIFAR-10 test CSV layout of ERAN). Values are multiplied by
  ``scale`` (default 1/255: pixels 0..255 become [0, 1]; pass 1 to keep them).
  ``layout="hwc"`` (default) reads the values as height x width x channel
  interleaved, as the CIFAR-10 CSV stores them, and transposes them to the
  model's (C, H, W); ``"chw"`` reads them in the model's own C order. For a
  one-channel image or a model whose input is not 3-D the two agree.
- ``.vnnlib`` / ``.vnnlib.gz``: a classification-robustness property; x is the
  centre of its input box and y the label the property protects.

Every loader guarantees at least one input and finite float32 values (after
``scale``); otherwise it raises :class:`DataError`. Inputs that look
mis-scaled (integer pixels above 1, or values all within [0, 0.1] that were
whole numbers before scaling) give a warning in ``Dataset.warnings`` that names
the likely scale; the data are still used as given.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifier.errors import DataError, InputFileError

DEFAULT_CSV_SCALE = 1.0 / 255.0
LAYOUTS = ("hwc", "chw")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs ``x`` (N, *input_shape) float32 and labels ``y`` (N,) int64."""

    x: np.ndarray
    y: np.ndarray
    source: str
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class PropertyPoint:
    """The centre of a robustness property's input box, its label and half-diagonal."""

    x: np.ndarray          # (n_inputs,) float64, C order
    label: int
    region_radius: float   # L2 distance from the centre to a corner of the box


# Raw maxima of the common integer pixel encodings and the scale that maps each to [0, 1].
PIXEL_MAXIMA = (1, 16, 255, 65535)


def _likely_maximum(raw_max: float) -> int | None:
    return next((m for m in PIXEL_MAXIMA if raw_max <= m), None)


def scale_warnings(raw: np.ndarray, values: np.ndarray, where: str, scale: float | None) -> tuple[str, ...]:
    """Warnings for inputs that look mis-scaled (empty when they look like [0, 1] data).

    ``raw`` are the stored values, ``values`` the ones used (``raw * scale``
    for CSV, ``scale`` None for .npz, which is used as stored).
    """
    if raw.size == 0:
        return ()
    lo, hi = float(values.min()), float(values.max())
    raw_max = float(raw.max())
    whole = bool(np.all(raw == np.round(raw)))
    seen = f"inputs range {lo:.3g}..{hi:.3g}" + (" after scaling" if scale is not None else "")
    likely = _likely_maximum(raw_max) if whole and raw.min() >= 0 else None
    if hi > 1.0 and likely not in (None, 1):
        fix = f"--scale 1/{likely}" if scale is not None else f"divide x by {likely}"
        return (f"{where}: {seen} ({raw.dtype} whole numbers); smoothing uses them as the "
                f"model's input units; if the model takes [0, 1] inputs, {fix}",)
    if 0.0 < hi <= 0.1 and lo >= 0.0 and likely is not None and likely > 1 and scale is not None:
        return (f"{where}: {seen}; did you mean --scale 1/{likely}? (the raw values are "
                f"whole numbers up to {raw_max:g})",)
    return ()


def _fit_rows(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    if len(x) == 0:
        raise DataError(f"{where}: the data set is empty (0 inputs)")
    size = int(np.prod(shape))
    per_row = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per_row != size:
        raise DataError(f"{where}: each input has {per_row} values but the model takes "
                        f"{size} (shape {shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        rows = np.ascontiguousarray(x.reshape((len(x),) + tuple(shape)), dtype=np.float32)
    if not np.all(np.isfinite(rows)):
        raise DataError(f"{where}: some values are NaN or infinite in float32 (the model's "
                        f"input type)")
    return rows


def _labels(y, count: int, where: str, num_classes: int | None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != count:
        raise DataError(f"{where}: expected {count} labels, got an array of shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{where}: labels must be whole numbers")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if count and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise DataError(f"{where}: label {bad} is not a class of the model "
                        f"(0..{(num_classes or 1) - 1})")
    return y


def _load_npz(path: Path, shape, num_classes) -> Dataset:
    where = str(path)
    if not zipfile.is_zipfile(path):
        raise DataError(f"{where} is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"{where}: needs arrays 'x' and 'y', has {sorted(data.files)}")
            x, y = data["x"], data["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).split(".")[0]
        raise DataError(f"{where} is not a readable .npz file ({reason})") from None
    if x.dtype.kind not in "fiu" or x.ndim < 1:
        raise DataError(f"{where}: 'x' must be a numeric array, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: 'x' contains NaN or infinite values")
    return Dataset(_fit_rows(x, shape, where), _labels(y, len(x), where, num_classes), where,
                   scale_warnings(x, x, where, None))


def _load_csv(path: Path, shape, num_classes, scale: float, layout: str) -> Dataset:
    where = str(path)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                rows.append([float(v) for v in text.split(",")])
            except ValueError:
                if line_no == 1 and not rows:
                    continue  # a header line
                raise DataError(f"{where}:{line_no}: not a comma-separated list of numbers") from None
            if len(rows[-1]) != len(rows[0]):
                raise DataError(f"{where}:{line_no}: {len(rows[-1])} columns, "
                                f"the first row has {len(rows[0])}")
    if not rows:
        raise DataError(f"{where}: no data rows")
    table = np.asarray(rows)
    if not np.all(np.isfinite(table)):
        raise DataError(f"{where}: contains NaN or infinite values")
    with np.errstate(over="ignore", invalid="ignore"):
        values = table[:, 1:] * scale
        finite = bool(np.all(np.isfinite(values.astype(np.float32))))
    if not finite:
        raise DataError(f"{where}: the values times --scale {scale:g} are not all finite "
                        f"float32 numbers; use a finite scale such as 1/255")
    size = int(np.prod(shape))
    if values.shape[1] != size:
        raise DataError(f"{where}: each row has {values.shape[1]} values after the label but "
                        f"the model takes {size} (shape {shape})")
    if layout == "hwc" and len(shape) == 3:
        channels, height, width = shape
        values = values.reshape(len(values), height, width, channels).transpose(0, 3, 1, 2)
    return Dataset(_fit_rows(values, shape, where), _labels(table[:, 0], len(table), where,
                                                           num_classes), where,
                   scale_warnings(table[:, 1:], values, where, scale))


def property_point(prop) -> PropertyPoint:
    """Centre, label and box half-diagonal of a robustness property (or its path)."""
    from verifier.spec import load_property, robustness_label

    if isinstance(prop, (str, Path)):
        prop = load_property(prop)
    where = getattr(prop, "path", None) or "the property"
    label = robustness_label(prop)
    if label is None:
        raise DataError(f"{where} is not a classification-robustness property "
                        f"(every unsafe case must read Y_k >= Y_label for one label)")
    if len(prop.cases) != 1:
        raise DataError(f"{where} has {len(prop.cases)} input regions; smoothing needs one box")
    region = prop.cases[0].region
    center = (region.lower + region.upper) / 2.0
    radius = float(np.linalg.norm((region.upper - region.lower) / 2.0))
    return PropertyPoint(center, int(label), radius)


def load_dataset(path, input_shape: tuple[int, ...], *, num_classes: int | None = None,
                 scale: float | None = None, layout: str = "hwc") -> Dataset:
    """Read DATA for a model whose samples have shape ``input_shape``.

    ``scale`` and ``layout`` apply to CSV files only (see the module docstring).
    Raises :class:`InputFileError` for a missing file and :class:`DataError`
    for a malformed one or one that does not fit the model.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"data file {path} does not exist" if not path.exists()
                             else f"data path {path} is not a file")
    name = path.name.lower()
    shape = tuple(int(d) for d in input_shape)
    if name.endswith(".npz"):
        return _load_npz(path, shape, num_classes)
    if name.endswith(".csv"):
        return _load_csv(path, shape, num_classes,
                         DEFAULT_CSV_SCALE if scale is None else float(scale), layout)
    if name.endswith(".vnnlib") or name.endswith(".vnnlib.gz"):
        point = property_point(path)
        x = _fit_rows(point.x[None, :], shape, str(path))
        return Dataset(x, _labels([point.label], 1, str(path), num_classes), str(path))
    raise DataError(f"{path}: unknown data format; expected .npz, .csv or .vnnlib")
