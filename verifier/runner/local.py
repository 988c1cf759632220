"""The default execution backend: ``jobs`` instances at once on this machine.

Each running instance has a thread that waits on its process
(:func:`verifier.runner.process.run_task`); the process files live in a
scratch folder ``.verifier-run-<pid>-*`` next to the results CSV, removed
when the run ends (and, after a SIGKILL, by the next run in that folder).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from concurrent import futures
from pathlib import Path

from verifier.runner.process import Outcome, Running, Task, run_task

SCRATCH_PREFIX = ".verifier-run-"


class LocalBackend:
    """A pool of ``jobs`` subprocesses (see :class:`verifier.runner.backend.Backend`)."""

    name = "local"

    def __init__(self, jobs: int, scratch_parent: Path):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.jobs = jobs
        self.scratch_parent = Path(scratch_parent)
        self.running = Running()
        self.pool: futures.ThreadPoolExecutor | None = None
        self.workdir: Path | None = None

    def __enter__(self) -> "LocalBackend":
        remove_dead_scratch(self.scratch_parent)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                             dir=self.scratch_parent))
        self.pool = futures.ThreadPoolExecutor(self.jobs, thread_name_prefix="verifier-run")
        return self

    def capacity(self) -> int:
        return self.jobs

    def submit(self, task: Task) -> futures.Future:
        return self.pool.submit(run_task, task, self.workdir, self.running)

    def wait(self, handles, timeout: float) -> list:
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: futures.Future) -> Outcome:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - a bug in a thread costs one row
            return Outcome(failure=f"the runner could not run it: {exc!r}")

    def __exit__(self, *exc) -> None:
        self.running.kill_all()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.running.kill_all()  # a process started while shutting down
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def remove_dead_scratch(folder: Path) -> None:
    """Remove the scratch folders that runs killed with SIGKILL left in
    ``folder`` (their name holds the PID of a process that is gone)."""
    for path in Path(folder).glob(SCRATCH_PREFIX + "*"):
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


__all__ = ["LocalBackend", "remove_dead_scratch", "SCRATCH_PREFIX"]
