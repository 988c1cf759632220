"""``run_benchmark``: resume, run what is left on a backend, record each row
as it finishes, rewrite the results file in instance order at the end."""
from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from verifier.errors import DataError, InputFileError
from verifier.result import Verdict
from verifier.runner.backend import drive
from verifier.runner.check import Check, check_counterexample
from verifier.runner.instances import Instance, deduplicate
from verifier.runner.local import LocalBackend
from verifier.runner.outcome import Recorder
from verifier.runner.process import (
    DEFAULT_GRACE, CommandBuilder, Task, cores_per_job, read_text, verify_command,
)
from verifier.runner.results import ResultsFile, read_results
from verifier.runner.scoring import Row, apply_score
from verifier.runner.summary import Report


def run_benchmark(benchmark_dir, instances: Sequence[Instance], results_path, *,
                  expected: dict | None = None, timeout_scale: float = 1.0,
                  grace: float = DEFAULT_GRACE, jobs: int = 1, resume: bool = False,
                  overwrite: bool = False, command: CommandBuilder = verify_command,
                  progress=None, backend=None) -> Report:
    """Run ``instances`` (paths relative to ``benchmark_dir``), one process
    each, on ``backend`` (default: a local pool of ``jobs`` processes; this
    call enters and leaves it, see :mod:`verifier.runner.backend`); write
    ``results_path`` and its counterexample folder; score against
    ``expected`` (from :func:`read_expected`) if given.

    An existing results file with rows is kept: ``resume`` skips the
    instances it already holds, ``overwrite`` starts it afresh; with neither
    the run stops with an error. Counterexample files are only ever written,
    never deleted. A pair listed twice runs once (``Report.duplicates``).

    ``progress``, if given, has ``start(total, rows, budgets, jobs)`` (the
    rows already done by an earlier run, the timeouts of the rows to run),
    ``started(instance, timeout)``, ``row(row)`` after each instance and
    ``tick()`` a few times a second. ``command(model, property, timeout,
    result_file)`` gives the argv of one instance (default:
    :func:`verify_command` with ``--workers`` set to each row's share of the
    cores: the cores available over ``jobs`` on the local pool, 1 on any
    other backend, whose workers run one task per thread).
    """
    if timeout_scale <= 0:
        raise ValueError("timeout_scale must be positive")
    benchmark_dir = Path(benchmark_dir)
    if not benchmark_dir.is_dir():
        raise InputFileError(f"benchmark folder not found: {benchmark_dir}")
    results_path = Path(results_path).resolve()
    instances, duplicates = deduplicate(instances)
    with ResultsFile(results_path, expected is not None) as results:
        if results.has_rows() and not (resume or overwrite):
            raise DataError(f"the results file {results_path} already holds results; use "
                            f"--resume to keep them and run the rest, or --overwrite to "
                            f"start it afresh")
        if command is verify_command:
            command = functools.partial(
                verify_command, workers=cores_per_job(jobs) if backend is None else 1)
        if backend is None:
            backend = LocalBackend(jobs, results_path.parent)
        with backend:  # a cluster that cannot be reached stops the run here
            run = _Run(benchmark_dir, results, instances, expected, progress)
            tasks = run.resume(resume, timeout_scale, grace, command)
            start = time.monotonic()
            if progress is not None:
                progress.start(len(instances), list(run.done.values()),
                               [task.timeout for task in tasks], backend.capacity())
            drive(backend, tasks, run.started, run.finished,
                  progress.tick if progress is not None else (lambda: None))
        report = run.report(len(tasks), time.monotonic() - start)
    report.duplicates = duplicates
    return report


class _Run:
    """The rows of one run: those resumed, those that finish, those kept."""

    def __init__(self, benchmark_dir: Path, results: ResultsFile, instances: list[Instance],
                 expected: dict | None, progress):
        self.benchmark_dir = benchmark_dir
        self.results = results
        self.instances = instances
        self.expected = expected
        self.progress = progress
        self.recorder = Recorder(results.path, instances, self.resolve)
        self.done: dict[tuple[str, str], Row] = {}
        self.others: list[Row] = []  # rows of the file that this run does not select

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

    def resume(self, resume: bool, timeout_scale: float, grace: float,
               command: CommandBuilder) -> list[Task]:
        """Take the earlier rows (checked again), write them, give the tasks left."""
        wanted = {inst.key for inst in self.instances}
        for row in read_results(self.results.path) if resume else []:
            row = apply_score(self.recheck(row), self.expected)
            if row.key in wanted:
                self.done[row.key] = row
            else:
                self.others.append(row)
        self.results.rewrite(list(self.done.values()) + self.others, keep_disk=resume)
        return [Task(i, inst, self.resolve(inst.onnx), self.resolve(inst.vnnlib),
                     inst.timeout * timeout_scale, grace, command)
                for i, inst in enumerate(self.instances) if inst.key not in self.done]

    def recheck(self, row: Row) -> Row:
        """Check a resumed ``sat`` row's counterexample file again."""
        if row.result is not Verdict.SAT:
            return replace(row, check=None)
        if not row.counterexample:
            return replace(row, check=Check(False, "no counterexample file recorded"))
        path = self.results.path.parent / row.counterexample
        text = read_text(path)
        if not text:
            return replace(row, check=Check(False, f"counterexample file {path} is missing"))
        return replace(row, check=check_counterexample(self.resolve(row.onnx),
                                                       self.resolve(row.vnnlib), text))

    def started(self, task: Task) -> None:
        if self.progress is not None:
            self.progress.started(task.instance, task.timeout)

    def finished(self, task: Task, outcome) -> None:
        row = apply_score(self.recorder.row(task, outcome), self.expected)
        self.done[row.key] = row
        self.results.append(row)
        if self.progress is not None:
            self.progress.row(row)

    def report(self, ran: int, wall_seconds: float) -> Report:
        rows = [self.done[inst.key] for inst in self.instances if inst.key in self.done]
        self.results.rewrite(rows + self.others)
        return Report(self.benchmark_dir.resolve().name, self.results.path, rows,
                      self.expected is not None, ran=ran,
                      resumed=sum(1 for row in rows if row.resumed), wall_seconds=wall_seconds)


__all__ = ["run_benchmark"]
