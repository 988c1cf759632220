"""The results CSV: reading an earlier one, and writing one under a lock.

Columns: onnx, vnnlib, result, seconds, reason, counterexample, check, and
expected and score when a ground truth is known. ``sat`` result files are
kept in ``<results>_counterexamples/``, the output of failed rows in
``<results>_logs/``; neither folder is ever emptied.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Sequence

from verifier.errors import DataError, InputFileError
from verifier.result import Verdict
from verifier.runner.check import Check
from verifier.runner.scoring import Row

BASE_COLUMNS = ("onnx", "vnnlib", "result", "seconds", "reason", "counterexample", "check")
SCORE_COLUMNS = ("expected", "score")


def counterexample_dir(results_path) -> Path:
    """The folder next to the results CSV that keeps the ``sat`` result files."""
    results_path = Path(results_path)
    return results_path.with_name(results_path.stem + "_counterexamples")


def read_results(path) -> list[Row]:
    """Rows of an earlier results CSV (rows cut short by a crash are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a results file of 'verifier run': byte {exc.start} "
                        f"is not UTF-8 text; choose another --results file, or "
                        f"--overwrite to replace it") from None
    except OSError as exc:
        raise InputFileError(f"cannot read results file {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    missing = {"onnx", "vnnlib", "result"} - set(reader.fieldnames)
    if missing:
        raise DataError(f"{path} is not a results file of 'verifier run' "
                        f"(no column {', '.join(sorted(missing))})")
    rows = []
    for record in reader:
        try:
            verdict = Verdict((record.get("result") or "").strip())
            seconds = float(record.get("seconds") or 0.0)
        except ValueError:
            continue
        if not record.get("onnx") or not record.get("vnnlib"):
            continue
        rows.append(Row(record["onnx"], record["vnnlib"], verdict, seconds,
                        record.get("reason") or "", record.get("counterexample") or "",
                        Check.parse(record.get("check") or ""), resumed=True))
    return rows


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class ResultsFile:
    """The results CSV of one run, held under a lock for the whole run.

    - ``open()`` fails early (``InputFileError``) when the CSV's folder is
      missing or not writable, and takes the lock file ``<csv>.lock`` next
      to it: an exclusive ``flock`` (Linux, macOS) that names the holder's
      PID. A second run on the same CSV stops with an error naming that PID;
      a lock left by a dead run is not held by anyone and is taken over (the
      kernel drops a ``flock`` when its process dies).
    - ``append(row)`` adds a row as it finishes, flushed and fsynced.
    - ``rewrite(rows)`` replaces the file atomically, in the given order,
      and keeps every row already on disk that ``rows`` does not replace.
    Files are created with the usual permissions (0666 less the umask).
    """

    def __init__(self, path: Path, scored: bool):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.columns = BASE_COLUMNS + (SCORE_COLUMNS if scored else ())
        self.scored = scored
        self._lock_fd: int | None = None

    def open(self) -> "ResultsFile":
        folder = self.path.parent
        if not folder.is_dir():
            raise InputFileError(f"the folder of the results file {self.path} does not exist "
                                 f"(create it first, or choose another --results)")
        if self.path.is_dir():
            raise InputFileError(f"the results file {self.path} is a directory")
        if not os.access(folder, os.W_OK | os.X_OK) or (
                self.path.exists() and not os.access(self.path, os.W_OK)):
            raise InputFileError(f"cannot write the results file {self.path}: permission "
                                 f"denied (choose another --results)")
        self._lock()
        return self

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise InputFileError(f"cannot create the lock file {self.lock_path}: "
                                     f"{exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.read(fd, 200).decode("utf-8", "replace").split()
                os.close(fd)
                pid = owner[0] if owner else "unknown"
                raise DataError(
                    f"the results file {self.path} is in use by another 'verifier run' "
                    f"(PID {pid}, lock file {self.lock_path}); wait for it to finish or "
                    f"choose another --results") from None
            try:  # the file we locked may have been removed by its last holder
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock and remove the lock file."""
        if self._lock_fd is None:
            return
        try:
            os.unlink(self.lock_path)
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> "ResultsFile":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def has_rows(self) -> bool:
        """Whether the file exists with anything past a header line."""
        try:
            with open(self.path, "rb") as handle:
                return len([line for line in handle.read(1 << 16).splitlines()
                            if line.strip()]) > 1
        except FileNotFoundError:
            return False

    def rewrite(self, rows: Sequence[Row], keep_disk: bool = True) -> None:
        keep = {row.key for row in rows}
        on_disk = [row for row in (read_results(self.path) if keep_disk else [])
                   if row.key not in keep]
        fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".csv", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                for row in list(rows) + on_disk:
                    writer.writerow(row.csv_row(self.scored))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def append(self, row: Row) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row.csv_row(self.scored))
            handle.flush()
            os.fsync(handle.fileno())


def log_dir(results_path) -> Path:
    """The folder next to the results CSV that keeps failed rows' output."""
    results_path = Path(results_path)
    return results_path.with_name(results_path.stem + "_logs")


__all__ = ["read_results", "ResultsFile", "counterexample_dir", "log_dir", "BASE_COLUMNS",
           "SCORE_COLUMNS"]
