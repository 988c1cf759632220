"""One instance in its own process: the command, the process, its outcome.

:func:`run_task` is what both execution backends run (the local pool in a
thread per job, Dask on a worker): it starts ``python -m verifier verify
... --json --result-file ...`` in a new session, so that a crash, a hang or
a memory blow-up costs one row, waits at most ``timeout + grace`` seconds,
then kills the process group (whatever the instance left behind too). On
Linux the child also dies with the thread that started it
(``PR_SET_PDEATHSIG``), so a runner or a worker killed with SIGKILL leaves
no orphan.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from verifier.runner.instances import Instance

#: seconds a process may outlive its timeout before it is killed
DEFAULT_GRACE = 10.0
#: bytes of stdout and stderr an outcome keeps (the tails)
OUTPUT_TAIL = 1 << 20


def verify_command(model: Path, prop: Path, timeout: float, result_file: Path,
                   workers: int | None = None) -> list[str]:
    """The default per-instance command: this verifier, in a fresh interpreter
    (``workers``: its ``--workers``, else the verifier's default)."""
    command = [sys.executable, "-m", "verifier", "verify", str(model), str(prop),
               "--timeout", f"{max(timeout, 0.1):g}", "--json", "--result-file",
               str(result_file)]
    return command + (["--workers", str(int(workers))] if workers else [])


def cores_per_job(jobs: int) -> int:
    """The cores this process may use, shared among ``jobs`` rows run at once."""
    from verifier.search.split_workers import available_cores

    return max(1, available_cores() // max(1, jobs))


CommandBuilder = Callable[[Path, Path, float, Path], list]


@dataclass(frozen=True)
class Task:
    """One instance to run: its files, its (scaled) timeout and the command."""

    index: int
    instance: Instance
    model: Path
    prop: Path
    timeout: float
    grace: float = DEFAULT_GRACE
    command: CommandBuilder = verify_command


@dataclass(frozen=True)
class Outcome:
    """What running a task gave: the result file's text, the tails of its
    output, how it ended. ``failure`` says why it could not run at all."""

    result_text: str = ""
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    killed: bool = False  # still running at timeout + grace
    failure: str = ""


class Running:
    """The processes the threads of one runner have started (thread-safe),
    so that the main thread can kill them all when it stops."""

    def __init__(self):
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.add(process)

    def discard(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def kill_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            kill(process)


def run_task(task: Task, workdir: Path, running: Running | None = None) -> Outcome:
    """Run ``task`` in its own process, with its files in ``workdir``."""
    result_file = workdir / f"row-{task.index}.result"
    stdout, stderr = workdir / f"row-{task.index}.out", workdir / f"row-{task.index}.err"
    argv = task.command(task.model, task.prop, task.timeout, result_file)
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        started = time.monotonic()
        try:
            process = start_process(argv, out, err)
        except OSError as exc:
            return Outcome(failure=f"cannot start {argv[0]}: {exc.strerror or exc}")
    if running is not None:
        running.add(process)
    try:
        process.wait(timeout=task.timeout + task.grace)
        killed = False
    except subprocess.TimeoutExpired:
        killed = True
    finally:
        kill(process)  # also whatever it left behind in its group
        if running is not None:
            running.discard(process)
    return Outcome(read_text(result_file), read_text(stdout, tail=OUTPUT_TAIL),
                   read_text(stderr, tail=OUTPUT_TAIL), process.returncode,
                   time.monotonic() - started, killed)


def _child_env() -> dict:
    """The environment of a child: the same verifier package as this process."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
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


def kill(process: subprocess.Popen) -> None:
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


def read_text(path: Path, tail: int | None = None) -> str:
    """A file's text ("" if it cannot be read); only its last ``tail`` bytes if given."""
    try:
        with open(path, "rb") as handle:
            if tail is not None:
                handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


__all__ = ["Task", "Outcome", "Running", "run_task", "verify_command", "start_process", "kill",
           "read_text", "CommandBuilder", "DEFAULT_GRACE"]
