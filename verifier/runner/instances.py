"""The instance list and the expected answers of a VNN-COMP benchmark folder.

    read_instances(path) -> [Instance]    instances.csv: onnx,vnnlib,timeout (no header)
    read_expected(path) -> {key: answer}  expected.csv: onnx,vnnlib,expected[,...]
    select(instances, patterns, limit)    a subset (glob or substring filters)
    deduplicate(instances)                each (onnx, vnnlib) pair once

Rows of instances.csv, expected.csv and a results file are tied together by
:func:`instance_key`: normalised relative paths without a ``.gz`` suffix.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from verifier.errors import DataError, InputFileError
from verifier.result import Verdict

#: expected answers (ground truth) a benchmark can give
EXPECTED_WORDS = (Verdict.SAT.value, Verdict.UNSAT.value, Verdict.UNKNOWN.value)


def _strip_suffixes(name: str, suffixes: Sequence[str]) -> str:
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def instance_key(onnx: str, vnnlib: str) -> tuple[str, str]:
    """The key that ties rows of instances.csv, expected.csv and a results
    file together: normalised relative paths, without a ``.gz`` suffix."""

    def norm(path: str) -> str:
        path = os.path.normpath(path.strip().replace("\\", "/"))
        return path[:-3] if path.endswith(".gz") else path

    return norm(onnx), norm(vnnlib)


class _Paths:
    """Names derived from a row's ``onnx`` and ``vnnlib`` paths."""

    onnx: str
    vnnlib: str

    @property
    def key(self) -> tuple[str, str]:
        return instance_key(self.onnx, self.vnnlib)

    @property
    def network(self) -> str:
        return _strip_suffixes(os.path.basename(self.onnx), (".onnx",))

    @property
    def property_name(self) -> str:
        return _strip_suffixes(os.path.basename(self.vnnlib), (".vnnlib",))


@dataclass(frozen=True)
class Instance(_Paths):
    """One row of instances.csv; paths are relative to the benchmark folder."""

    onnx: str
    vnnlib: str
    timeout: float
    line: int = 0


def _read_csv_rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """Non-blank, non-comment rows of a CSV file with their line numbers."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc}") from None
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        rows.append((number, cells))
    return rows


def read_instances(path) -> list[Instance]:
    """Read a VNN-COMP ``instances.csv``: ``onnx,vnnlib,timeout`` per line,
    no header (a header line is tolerated), paths relative to the folder."""
    instances = []
    for number, cells in _read_csv_rows(Path(path), "instance list"):
        if len(cells) < 3 or not cells[0] or not cells[1]:
            raise DataError(f"{path}:{number}: expected onnx,vnnlib,timeout, got {','.join(cells)!r}")
        try:
            timeout = float(cells[2])
        except ValueError:
            if not instances and cells[2].lower().startswith("timeout"):
                continue  # a header line
            raise DataError(f"{path}:{number}: timeout {cells[2]!r} is not a number") from None
        if not timeout > 0:
            raise DataError(f"{path}:{number}: timeout must be positive, got {cells[2]}")
        instances.append(Instance(cells[0], cells[1], timeout, number))
    if not instances:
        raise DataError(f"{path}: no instances")
    return instances


def read_expected(path) -> dict[tuple[str, str], str]:
    """Read ``expected.csv``: columns onnx, vnnlib, expected (sat, unsat or
    unknown), with or without a header line; further columns are ignored."""
    rows = _read_csv_rows(Path(path), "expected answers file")
    column = 2
    if rows and rows[0][1][0].lower() == "onnx" and len(rows[0][1]) >= 3:
        header = [cell.lower() for cell in rows[0][1]]
        if "expected" in header:
            column = header.index("expected")
        rows = rows[1:]
    expected = {}
    for number, cells in rows:
        if len(cells) <= column:
            raise DataError(f"{path}:{number}: expected onnx,vnnlib,expected, got {','.join(cells)!r}")
        answer = cells[column].lower()
        if answer not in EXPECTED_WORDS:
            raise DataError(f"{path}:{number}: expected answer must be one of "
                            f"{', '.join(EXPECTED_WORDS)}, got {cells[column]!r}")
        expected[instance_key(cells[0], cells[1])] = answer
    return expected


def select(instances: Sequence[Instance], patterns: Iterable[str] = (),
           limit: int | None = None) -> list[Instance]:
    """Rows whose onnx or vnnlib path matches any pattern, then the first
    ``limit`` of them. A pattern matches a path when it is a substring of
    it, or a glob (``prop_2*``, ``*_unsat.vnnlib``) that matches the whole
    relative path, the file name, or the file name without its suffixes
    (the network or property name)."""
    patterns = [p for p in patterns if p]

    def names(inst: Instance):
        yield from (inst.onnx, inst.vnnlib, os.path.basename(inst.onnx),
                    os.path.basename(inst.vnnlib), inst.network, inst.property_name)

    def matches(inst: Instance) -> bool:
        return any(pattern in name or fnmatch.fnmatchcase(name, pattern)
                   for pattern in patterns for name in names(inst))

    chosen = [inst for inst in instances if not patterns or matches(inst)]
    return chosen[:limit] if limit is not None else chosen


def deduplicate(instances: Sequence[Instance]) -> tuple[list[Instance], int]:
    """The instances with each (onnx, vnnlib) pair kept once (its first row),
    and how many repeated rows were dropped."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for inst in instances:
        if inst.key not in seen:
            seen.add(inst.key)
            unique.append(inst)
    return unique, len(instances) - len(unique)


__all__ = ["Instance", "instance_key", "read_instances", "read_expected", "select", "deduplicate",
           "EXPECTED_WORDS"]
