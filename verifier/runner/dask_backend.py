"""The Dask backend: each instance a task on a Dask cluster (``--cluster``).

``--cluster tcp://host:8786`` uses a running scheduler; ``--cluster local:N``
starts an embedded ``LocalCluster`` of N worker processes on the loopback
interface. Each task runs the same isolated ``verify`` subprocess on its
worker (:func:`verifier.runner.process.run_task`), so a crash or a memory
blow-up still costs one row; the answer, the output tails and the result
file's text come back to this process, which scores, checks counterexamples
and writes the results CSV as for the local backend.

Files travel with the tasks: a task carries the bytes of its model and
property file (read here, once per file) and writes them into a scratch
folder on its worker. No shared filesystem is needed, so the same command
works on a laptop, SLURM (``dask-jobqueue``) or Kubernetes, and a task can
be re-run anywhere after its worker is lost (data scattered to a worker
would be lost with it). The price is one copy per task: only the tasks in
flight (one per worker thread) are submitted at a time, which bounds the
memory, and a model of a few MB costs milliseconds; for models of hundreds
of MB, run the scheduler close to the workers. The workers need the
verifier installed (``pip install "verifier[dask]"``).

A lost worker: Dask runs its task again on another worker, up to the
scheduler's ``distributed.scheduler.allowed-failures`` losses (3 by default
on a scheduler you start; ``local:N`` sets 1, so a task is re-run once);
after that its row is ``error`` ("the Dask worker running it was lost ...")
and the run goes on.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import CancelledError
from dataclasses import replace
from pathlib import Path

from verifier.errors import VerifierError
from verifier.runner.process import Outcome, Task, run_task

INSTALL_HINT = 'pip install "verifier[dask]" (or pip install "dask[distributed]")'
#: losses of a worker a task survives on a ``local:N`` cluster
LOCAL_ALLOWED_FAILURES = 1


class ClusterError(VerifierError):
    """--cluster is unusable: Dask is missing, or the scheduler cannot be reached."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask, which is not installed: {INSTALL_HINT}") \
            from None
    return distributed


def start_local_cluster(workers: int, processes: bool = True):
    """An embedded LocalCluster of ``workers`` single-threaded workers on the
    loopback interface, without a dashboard, that re-runs a task once when
    its worker dies; the workers import this checkout of the verifier."""
    import dask

    distributed = _distributed()
    from verifier.runner.process import _child_env

    env = {"PYTHONPATH": _child_env()["PYTHONPATH"]}
    with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                        processes=processes, host="127.0.0.1",
                                        dashboard_address=None, env=env)


def parse_cluster(address: str) -> tuple[str, int]:
    """``("local", N)`` for ``local:N``, ``("address", 0)`` for a scheduler address."""
    if address.startswith("local:"):
        count = address[len("local:"):]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {address!r}: the number of local workers must be "
                               f"a positive integer, as in local:4")
        return "local", int(count)
    if "://" not in address and ":" not in address:
        raise ClusterError(f"--cluster {address!r} is neither a scheduler address "
                           f"(tcp://host:8786) nor local:N")
    return "address", 0


def run_remote(task: Task, model: bytes | None, prop: bytes | None) -> Outcome:
    """On a worker: write the task's files into a scratch folder, run it."""
    with tempfile.TemporaryDirectory(prefix="verifier-task-") as scratch:
        folder = Path(scratch)
        paths = []
        for kind, path, data in (("model", task.model, model), ("property", task.prop, prop)):
            target = folder / kind / path.name
            target.parent.mkdir()
            if data is not None:  # a missing file stays missing: verify says so
                target.write_bytes(data)
            paths.append(target)
        return run_task(replace(task, model=paths[0], prop=paths[1]), folder)


class DaskBackend:
    """Tasks on a Dask cluster (see :class:`verifier.runner.backend.Backend`)."""

    name = "dask"

    def __init__(self, address: str):
        self.kind, self.workers = parse_cluster(address)
        self.address = address
        self.distributed = _distributed()
        self.cluster = self.client = None
        self.files: dict[Path, bytes | None] = {}

    def __enter__(self) -> "DaskBackend":
        try:
            if self.kind == "local":
                self.cluster = start_local_cluster(self.workers)
                self.client = self.distributed.Client(self.cluster)
            else:
                self.client = self.distributed.Client(self.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            raise ClusterError(f"cannot reach the Dask scheduler at {self.address}: {exc}") \
                from None
        return self

    def capacity(self) -> int:
        return sum(self.client.nthreads().values())

    def _bytes(self, path: Path) -> bytes | None:
        if path not in self.files:
            try:
                self.files[path] = path.read_bytes()
            except OSError:
                self.files[path] = None
        return self.files[path]

    def submit(self, task: Task):
        return self.client.submit(run_remote, task, self._bytes(task.model),
                                  self._bytes(task.prop), pure=False,
                                  key=f"verify-{task.index}-{os.urandom(4).hex()}")

    def wait(self, handles, timeout: float) -> list:
        try:
            self.distributed.wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        except (TimeoutError, Exception, CancelledError):  # noqa: BLE001 - see outcome()
            pass
        return [handle for handle in handles if handle.done() or handle.cancelled()]

    def outcome(self, handle) -> Outcome:
        try:
            return handle.result()
        except self.distributed.KilledWorker as exc:
            try:
                where = f"{exc.allowed_failures + 1} times, last on {exc.last_worker.address}"
            except (AttributeError, IndexError, TypeError):
                where = str(exc)
            return Outcome(failure=f"the Dask workers running it were lost ({where})")
        except (Exception, CancelledError) as exc:  # noqa: BLE001 - a failed task: one row
            return Outcome(failure=f"the Dask task failed: {exc!r}")

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


__all__ = ["DaskBackend", "ClusterError", "start_local_cluster", "parse_cluster", "run_remote",
           "INSTALL_HINT"]
