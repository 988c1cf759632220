"""Run every instance of a VNN-COMP benchmark folder, score it, resume it.

    read_instances(path) -> [Instance]         instances.csv: onnx,vnnlib,timeout (no header)
    read_expected(path) -> {key: answer}       expected.csv: onnx,vnnlib,expected[,...]
    select(instances, patterns, limit)         a subset (glob or substring filters)
    run_benchmark(benchmark_dir, instances, results_path, ...) -> Report
    check_counterexample(model, property, result_text) -> Check
    score_row(result, check, expected) -> (score, why_wrong, note)
    summarize(rows) -> dict                    counts and times per network / property

Each instance runs in its own ``python -m verifier verify ... --json
--result-file ...`` process, so that a crash, a hang or a memory blow-up costs
one row (``error`` or ``timeout``) and the run goes on. A process still alive
``grace`` seconds after its (scaled) timeout is killed, with its process group.

The result file is the answer of record (it is what the VNN-COMP harness
reads); the JSON line on stdout only adds the reason. A ``sat`` counts as
correct only if its counterexample passes :func:`check_counterexample`, an
independent replay through onnxruntime at the VNN-COMP 2025 tolerances.

Scoring (VNN-COMP since 2023): +10 for a correct ``sat``/``unsat``, -150 for a
wrong answer or a ``sat`` whose counterexample does not check, 0 otherwise.
An ``unsat`` where the ground truth is ``unknown`` scores 0 here: nothing can
confirm it (the competition would give +10 when no other tool disagrees).

Results are appended to the CSV as each row finishes (a killed run loses at
most the rows in flight; ``resume=True`` skips the rows already there) and
the file is rewritten in instance order at the end.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from verifier.errors import DataError, InputFileError
from verifier.result import Verdict

SCORE_CORRECT = 10
SCORE_WRONG = -150
#: the file's Y values must equal the replayed outputs within this relative error
OUTPUT_RTOL = 1e-6
#: the property must be violated at this tolerance (VNN-COMP 2025)
PROPERTY_TOL = 1e-7
#: seconds a process may outlive its timeout before it is killed
DEFAULT_GRACE = 10.0
#: bytes of a failed row's stderr and stdout kept in ``<results>_logs/``
LOG_TAIL = 16384
#: expected answers (ground truth) a benchmark can give
EXPECTED_WORDS = (Verdict.SAT.value, Verdict.UNSAT.value, Verdict.UNKNOWN.value)

BASE_COLUMNS = ("onnx", "vnnlib", "result", "seconds", "reason", "counterexample", "check")
SCORE_COLUMNS = ("expected", "score")


# --------------------------------------------------------------------------
# Instance lists


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


# --------------------------------------------------------------------------
# Counterexample check


@dataclass(frozen=True)
class Check:
    """The outcome of checking a ``sat`` result's counterexample."""

    valid: bool
    reason: str = ""

    def __str__(self) -> str:
        return "valid" if self.valid else f"invalid: {self.reason}"

    @classmethod
    def parse(cls, text: str) -> "Check | None":
        text = (text or "").strip()
        if text == "valid":
            return cls(True)
        if text.startswith("invalid"):
            return cls(False, text.partition(":")[2].strip())
        return None


_ENTRY = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def parse_counterexample(text: str):
    """The X and Y values of a VNN-COMP result file (float64 arrays, by index).

    Raises ValueError when the first line is not ``sat`` or an index is
    missing or repeated.
    """
    import numpy as np

    lines = text.strip().splitlines()
    if not lines or lines[0].strip().lower() != Verdict.SAT.value:
        raise ValueError("the result file does not start with 'sat'")
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for name, index, number in _ENTRY.findall("\n".join(lines[1:])):
        if int(index) in values[name]:
            raise ValueError(f"{name}_{index} is given twice")
        try:
            values[name][int(index)] = float(number)
        except ValueError:
            raise ValueError(f"{name}_{index} has a value that is not a number: {number!r}") from None
    arrays = []
    for name in ("X", "Y"):
        entries = values[name]
        if not entries:
            raise ValueError(f"no {name} values")
        missing = sorted(set(range(len(entries))) - set(entries))
        if missing:
            raise ValueError(f"{name}_{missing[0]} is missing")
        arrays.append(np.array([entries[i] for i in range(len(entries))], dtype=np.float64))
    return arrays[0], arrays[1]


def check_counterexample(model, property_path, result_text: str) -> Check:
    """Replay a ``sat`` result file's counterexample independently.

    The X values run through onnxruntime (CPU, float32, the model's input
    shape, rows one at a time as a checker does); the file's Y values must
    match the outputs within relative ``OUTPUT_RTOL``, and the point must
    violate the property at tolerance ``PROPERTY_TOL``.
    """
    import numpy as np

    try:
        x, y_file = parse_counterexample(result_text)
    except ValueError as exc:
        return Check(False, str(exc))
    try:
        from verifier.runtime import open_session
        from verifier.spec import load_property

        prop = load_property(property_path)
        session = open_session(model, device="cpu", batching="loop")
        if x.size != session.input_size or x.size != prop.n_inputs:
            return Check(False, f"{x.size} X values for a model with {session.input_size} "
                                f"inputs and a property with {prop.n_inputs}")
        y = session.run(x.astype(np.float32).reshape((1,) + tuple(session.input_shape)))
    except Exception as exc:  # noqa: BLE001 - any failure means "not shown valid"
        return Check(False, f"replay failed: {exc}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.size != y_file.size or y.size != prop.n_outputs:
        return Check(False, f"{y_file.size} Y values, the model gives {y.size} outputs "
                            f"and the property has {prop.n_outputs}")
    if not np.all(np.isfinite(y)):
        return Check(False, "the model's outputs are not finite")
    deviation = np.abs(y_file - y)
    bad = np.flatnonzero(~(deviation <= OUTPUT_RTOL * np.abs(y)))
    if bad.size:
        j = int(bad[0])
        return Check(False, f"Y_{j} is {float(y_file[j])!r} in the file but the model "
                            f"gives {float(y[j])!r}")
    if not prop.is_counterexample(x, y, tol=PROPERTY_TOL):
        return Check(False, f"the point does not violate the property (tolerance {PROPERTY_TOL:g})")
    return Check(True)


# --------------------------------------------------------------------------
# Rows and scoring


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


# --------------------------------------------------------------------------
# Summary


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


# --------------------------------------------------------------------------
# The results file


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


# --------------------------------------------------------------------------
# Running one instance in its own process


def verify_command(model: Path, prop: Path, timeout: float, result_file: Path) -> list[str]:
    """The default per-instance command: this verifier, in a fresh interpreter."""
    return [sys.executable, "-m", "verifier", "verify", str(model), str(prop),
            "--timeout", f"{max(timeout, 0.1):g}", "--json", "--result-file", str(result_file)]


CommandBuilder = Callable[[Path, Path, float, Path], list]


@dataclass
class _Job:
    index: int
    instance: Instance
    timeout: float
    process: subprocess.Popen
    started: float
    deadline: float
    result_file: Path
    stdout: Path
    stderr: Path


def _child_env() -> dict:
    """The environment of a child: the same verifier package as this process."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    parts = [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when the
    thread that started it dies (``prctl(PR_SET_PDEATHSIG)``, Linux only), so
    that a runner killed with SIGKILL leaves no orphan; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: do not run
            os._exit(1)

    return preexec


def start_process(argv: list, stdout, stderr) -> subprocess.Popen:
    """Start one instance's process in its own session (so that its process
    group can be killed) that dies with the thread that started it."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            env=_child_env(), start_new_session=True,
                            preexec_fn=_parent_death_signal())


def _kill(process: subprocess.Popen) -> None:
    """Kill a child and everything it started (its own process group)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _read_text(path: Path, tail: int | None = None) -> str:
    """A file's text ("" if it cannot be read); only its last ``tail`` bytes if given."""
    try:
        with open(path, "rb") as handle:
            if tail is not None:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return {}


def _error_reason(stderr: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()[:500]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"the process was killed by {name}{hint}"
    if lines:
        return f"exit code {returncode}: {lines[-1][:500]}"
    return f"exit code {returncode} and no result file"


class _Runner:
    def __init__(self, benchmark_dir: Path, results_path: Path, expected, timeout_scale,
                 grace, jobs, command: CommandBuilder, progress):
        self.benchmark_dir = benchmark_dir
        self.results_path = results_path
        self.cex_dir = counterexample_dir(results_path)
        self.log_dir = results_path.with_name(results_path.stem + "_logs")
        self.expected = expected
        self.timeout_scale = timeout_scale
        self.grace = grace
        self.jobs = jobs
        self.command = command
        self.progress = progress
        self.cex_names: dict[tuple[str, str], str] = {}

    def resolve(self, relative: str) -> Path:
        """The file of a row; a missing one is also tried with ``.gz`` added or
        removed (benchmark repositories ship compressed files that their
        instance lists name uncompressed)."""
        path = self.benchmark_dir / relative
        if not path.exists():
            other = path.with_name(path.name[:-3] if path.name.endswith(".gz")
                                   else path.name + ".gz")
            if other.exists():
                return other
        return path

    def name_files(self, instances: Sequence[Instance]) -> None:
        """A counterexample file name per instance, unique within the run."""
        taken: dict[str, tuple[str, str]] = {}
        for inst in instances:
            base = f"{inst.network}__{inst.property_name}"
            name, n = base, 1
            while name in taken and taken[name] != inst.key:
                n += 1
                name = f"{base}_{n}"
            taken[name] = inst.key
            self.cex_names[inst.key] = name + ".counterexample"

    def start(self, index: int, inst: Instance, workdir: Path) -> _Job | Row:
        """Start an instance's process; an ``error`` row if it cannot start."""
        timeout = inst.timeout * self.timeout_scale
        result_file = workdir / f"row-{index}.result"
        stdout, stderr = workdir / f"row-{index}.out", workdir / f"row-{index}.err"
        argv = self.command(self.resolve(inst.onnx), self.resolve(inst.vnnlib), timeout,
                            result_file)
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            started = time.monotonic()
            try:
                process = start_process(argv, out, err)
            except OSError as exc:
                row = Row(inst.onnx, inst.vnnlib, Verdict.ERROR, 0.0,
                          f"cannot start {argv[0]}: {exc.strerror or exc}")
                return apply_score(row, self.expected)
        return _Job(index, inst, timeout, process, started, started + timeout + self.grace,
                    result_file, stdout, stderr)

    def finish(self, job: _Job, killed: bool) -> Row:
        inst = job.instance
        seconds = time.monotonic() - job.started
        row = Row(inst.onnx, inst.vnnlib, Verdict.ERROR, seconds)
        row = self._finish(job, killed, row)
        if row.result is Verdict.ERROR or killed:
            log = self.keep_log(inst, job)
            if log:
                row.reason = f"{row.reason} (output: {log})"
        return row

    def keep_log(self, inst: Instance, job: _Job) -> str:
        """Copy the tails of a failed row's stdout and stderr into
        ``<results>_logs/`` and give that file's path relative to the CSV."""
        stderr = _read_text(job.stderr, tail=LOG_TAIL)
        stdout = _read_text(job.stdout, tail=LOG_TAIL)
        if not stderr.strip() and not stdout.strip():
            return ""
        self.log_dir.mkdir(exist_ok=True)
        target = self.log_dir / (self.cex_names[inst.key][: -len(".counterexample")] + ".log")
        target.write_text(f"# {inst.onnx} {inst.vnnlib}\n# stderr (last {LOG_TAIL} bytes)\n"
                          f"{stderr}\n# stdout (last {LOG_TAIL} bytes)\n{stdout}",
                          encoding="utf-8")
        return os.path.relpath(target, self.results_path.parent)

    def _finish(self, job: _Job, killed: bool, row: Row) -> Row:
        inst = job.instance
        seconds = row.seconds
        if killed:
            row.result = Verdict.TIMEOUT
            row.reason = (f"killed after {seconds:.1f} s (timeout {job.timeout:g} s "
                          f"+ {self.grace:g} s grace)")
            return apply_score(row, self.expected)
        text = _read_text(job.result_file)
        first = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
        details = _last_json(_read_text(job.stdout, tail=1 << 20))
        returncode = job.process.returncode
        try:
            row.result = Verdict(first)
        except ValueError:
            row.reason = _error_reason(_read_text(job.stderr, tail=1 << 16), returncode)
            if first:
                row.reason = f"the result file starts with {first[:40]!r}; " + row.reason
            return apply_score(row, self.expected)
        row.reason = str(details.get("reason") or "")
        if row.result is Verdict.ERROR and not row.reason:
            row.reason = _error_reason(_read_text(job.stderr, tail=1 << 16), returncode)
        if row.result is Verdict.SAT:
            self.cex_dir.mkdir(parents=True, exist_ok=True)
            target = self.cex_dir / self.cex_names[inst.key]
            shutil.copyfile(job.result_file, target)
            row.counterexample = os.path.relpath(target, self.results_path.parent)
            row.check = check_counterexample(self.resolve(inst.onnx), self.resolve(inst.vnnlib),
                                             text)
        return apply_score(row, self.expected)

    def recheck(self, row: Row) -> Row:
        """Check a resumed ``sat`` row's counterexample file again."""
        if row.result is not Verdict.SAT:
            return replace(row, check=None)
        if not row.counterexample:
            return replace(row, check=Check(False, "no counterexample file recorded"))
        path = self.results_path.parent / row.counterexample
        text = _read_text(path)
        if not text:
            return replace(row, check=Check(False, f"counterexample file {path} is missing"))
        return replace(row, check=check_counterexample(self.resolve(row.onnx),
                                                       self.resolve(row.vnnlib), text))

    def run(self, todo: list[tuple[int, Instance]], record: Callable[[int, Row], None]) -> None:
        pending = deque(todo)
        running: list[_Job] = []
        workdir = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                        dir=self.results_path.parent))
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    index, inst = pending.popleft()
                    job = self.start(index, inst, workdir)
                    if isinstance(job, Row):
                        record(index, job)
                        continue
                    running.append(job)
                    if self.progress is not None:
                        self.progress.started(inst, job.timeout)
                time.sleep(0.02)
                for job in list(running):
                    alive = job.process.poll() is None
                    if alive and time.monotonic() < job.deadline:
                        continue
                    _kill(job.process)  # also whatever it left behind in its group
                    running.remove(job)
                    record(job.index, self.finish(job, killed=alive))
                if self.progress is not None:
                    self.progress.tick()
        finally:
            for job in running:
                _kill(job.process)
            shutil.rmtree(workdir, ignore_errors=True)


SCRATCH_PREFIX = ".verifier-run-"


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so that every
    ``finally`` kills the running children and removes the scratch folder."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals():
    """Within the block, SIGTERM and SIGHUP raise :class:`Stopped` (main
    thread only; elsewhere the block runs unchanged)."""

    def handler(signum, frame):
        raise Stopped(signum)

    previous = {}
    try:
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                number = getattr(signal, name)
                previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _remove_dead_scratch(folder: Path) -> None:
    """Remove the scratch folders that runs killed with SIGKILL left in
    ``folder`` (their name holds the PID of a process that is gone)."""
    for path in folder.glob(SCRATCH_PREFIX + "*"):
        pid = path.name[len(SCRATCH_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_benchmark(benchmark_dir, instances: Sequence[Instance], results_path, *,
                  expected: dict | None = None, timeout_scale: float = 1.0,
                  grace: float = DEFAULT_GRACE, jobs: int = 1, resume: bool = False,
                  overwrite: bool = False, command: CommandBuilder = verify_command,
                  progress=None) -> Report:
    """Run ``instances`` (paths relative to ``benchmark_dir``), one process
    each, ``jobs`` at a time; write ``results_path`` and its counterexample
    folder; score against ``expected`` (from :func:`read_expected`) if given.

    An existing results file with rows is kept: ``resume`` skips the
    instances it already holds, ``overwrite`` starts it afresh; with neither
    the run stops with an error. Counterexample files are only ever written,
    never deleted. A pair listed twice runs once (``Report.duplicates``).

    ``progress``, if given, has ``start(total, rows, budgets, jobs)`` (the
    rows already done by an earlier run, the timeouts of the rows to run),
    ``started(instance, timeout)``, ``row(row)`` after each instance and
    ``tick()`` a few times a second. ``command(model, property, timeout,
    result_file)`` gives the argv of one instance (default:
    :func:`verify_command`).
    """
    if timeout_scale <= 0:
        raise ValueError("timeout_scale must be positive")
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    benchmark_dir = Path(benchmark_dir)
    if not benchmark_dir.is_dir():
        raise InputFileError(f"benchmark folder not found: {benchmark_dir}")
    results_path = Path(results_path).resolve()
    instances, duplicates = deduplicate(instances)
    scored = expected is not None
    with ResultsFile(results_path, scored) as results:
        if results.has_rows() and not (resume or overwrite):
            raise DataError(f"the results file {results_path} already holds results; use "
                            f"--resume to keep them and run the rest, or --overwrite to "
                            f"start it afresh")
        _remove_dead_scratch(results_path.parent)
        runner = _Runner(benchmark_dir, results_path, expected, timeout_scale, grace, jobs,
                         command, progress)
        report = _run(runner, results, instances, resume)
    report.duplicates = duplicates
    return report


def _run(runner: _Runner, results: ResultsFile, instances: list[Instance],
         resume: bool) -> Report:
    """Resume, run what is left, record rows as they come, rewrite in order."""
    runner.name_files(instances)
    expected = runner.expected
    wanted = {inst.key for inst in instances}
    earlier = read_results(results.path) if resume else []
    done: dict[tuple[str, str], Row] = {}
    others: list[Row] = []  # rows of the file that this run does not select: kept
    for row in earlier:
        row = apply_score(runner.recheck(row), expected)
        if row.key in wanted:
            done[row.key] = row
        else:
            others.append(row)
    results.rewrite(list(done.values()) + others, keep_disk=resume)

    slots: dict[tuple[str, str], Row] = dict(done)
    todo = [(i, inst) for i, inst in enumerate(instances) if inst.key not in done]
    if runner.progress is not None:
        runner.progress.start(len(instances), list(done.values()),
                              [inst.timeout * runner.timeout_scale for _, inst in todo],
                              runner.jobs)
    start = time.monotonic()

    def record(index: int, row: Row) -> None:
        slots[row.key] = row
        results.append(row)
        if runner.progress is not None:
            runner.progress.row(row)

    runner.run(todo, record)
    rows = [slots[inst.key] for inst in instances if inst.key in slots]
    results.rewrite(rows + others)
    return Report(runner.benchmark_dir.resolve().name, results.path, rows,
                  expected is not None, ran=len(todo),
                  resumed=sum(1 for row in rows if row.resumed),
                  wall_seconds=time.monotonic() - start)


__all__ = [
    "Instance", "Row", "Check", "Report", "read_instances", "read_expected", "select",
    "read_results", "instance_key", "check_counterexample", "parse_counterexample",
    "score_row", "summarize", "run_benchmark", "deduplicate", "ResultsFile", "start_process",
    "Stopped", "stop_on_signals", "verify_command", "counterexample_dir",
    "SCORE_CORRECT", "SCORE_WRONG", "DEFAULT_GRACE", "OUTPUT_RTOL", "PROPERTY_TOL",
]
