"""From a task's outcome to a row of the results file.

The result file is the answer of record (it is what the VNN-COMP harness
reads); the JSON line on stdout only adds the reason. A ``sat`` result file
is kept in the counterexample folder and checked independently; a failed
row keeps the tails of its stderr and stdout in the log folder.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from verifier.result import Verdict
from verifier.runner.check import check_counterexample
from verifier.runner.instances import Instance
from verifier.runner.process import Outcome, Task
from verifier.runner.results import counterexample_dir, log_dir
from verifier.runner.scoring import Row

#: characters of a failed row's stderr and stdout kept in its log file
LOG_TAIL = 16384


class Recorder:
    """Turns outcomes into rows, writing counterexample and log files next
    to the results CSV under names unique within the run."""

    def __init__(self, results_path: Path, instances, resolve):
        self.results_path = results_path
        self.resolve = resolve  # relative path of a row -> its file
        self.names: dict[tuple[str, str], str] = {}
        taken: dict[str, tuple[str, str]] = {}
        for inst in instances:
            base = f"{inst.network}__{inst.property_name}"
            name, n = base, 1
            while name in taken and taken[name] != inst.key:
                n += 1
                name = f"{base}_{n}"
            taken[name] = inst.key
            self.names[inst.key] = name

    def row(self, task: Task, outcome: Outcome) -> Row:
        """The (unscored) row of a finished task."""
        inst = task.instance
        row = Row(inst.onnx, inst.vnnlib, Verdict.ERROR, outcome.seconds)
        if outcome.failure:
            row.reason = outcome.failure
        elif outcome.killed:
            row.result = Verdict.TIMEOUT
            row.reason = (f"killed after {outcome.seconds:.1f} s (timeout {task.timeout:g} s "
                          f"+ {task.grace:g} s grace)")
        else:
            self._read_answer(row, inst, outcome)
        if row.result is Verdict.ERROR or outcome.killed:
            log = self._keep_log(inst, outcome)
            if log:
                row.reason = f"{row.reason} (output: {log})"
        return row

    def _read_answer(self, row: Row, inst: Instance, outcome: Outcome) -> None:
        text = outcome.result_text
        first = text.strip().splitlines()[0].strip().lower() if text.strip() else ""
        try:
            row.result = Verdict(first)
        except ValueError:
            row.reason = _error_reason(outcome.stderr, outcome.returncode)
            if first:
                row.reason = f"the result file starts with {first[:40]!r}; " + row.reason
            return
        row.reason = str(_last_json(outcome.stdout).get("reason") or "")
        if row.result is Verdict.ERROR and not row.reason:
            row.reason = _error_reason(outcome.stderr, outcome.returncode)
        if row.result is Verdict.SAT:
            folder = counterexample_dir(self.results_path)
            folder.mkdir(exist_ok=True)
            target = folder / (self.names[inst.key] + ".counterexample")
            target.write_text(text, encoding="utf-8")
            row.counterexample = os.path.relpath(target, self.results_path.parent)
            row.check = check_counterexample(self.resolve(inst.onnx), self.resolve(inst.vnnlib),
                                             text)

    def _keep_log(self, inst: Instance, outcome: Outcome) -> str:
        """Write the tails of a failed row's stderr and stdout into the log
        folder; the file's path relative to the CSV ("" if both are empty)."""
        stderr, stdout = outcome.stderr[-LOG_TAIL:], outcome.stdout[-LOG_TAIL:]
        if not stderr.strip() and not stdout.strip():
            return ""
        folder = log_dir(self.results_path)
        folder.mkdir(exist_ok=True)
        target = folder / (self.names[inst.key] + ".log")
        target.write_text(f"# {inst.onnx} {inst.vnnlib}\n# stderr (last {LOG_TAIL} characters)\n"
                          f"{stderr}\n# stdout (last {LOG_TAIL} characters)\n{stdout}",
                          encoding="utf-8")
        return os.path.relpath(target, self.results_path.parent)


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


__all__ = ["Recorder", "LOG_TAIL"]
