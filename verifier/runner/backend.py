"""The interface of an execution backend, and the loop that drives one.

A backend is a context manager with four methods:

    capacity() -> int            how many tasks it runs at once now
    submit(task) -> handle       start a task (Task from runner.process)
    wait(handles, timeout)       the handles done within timeout seconds
    outcome(handle) -> Outcome   never raises: failures become Outcome.failure

Leaving the context stops what still runs (kills the local processes,
cancels the Dask tasks). Backends: :mod:`runner.local` (``--jobs N``) and
:mod:`runner.dask_backend` (``--cluster``).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Protocol, Sequence

from verifier.runner.process import Outcome, Task


class Backend(Protocol):
    name: str

    def capacity(self) -> int: ...

    def submit(self, task: Task): ...

    def wait(self, handles, timeout: float) -> list: ...

    def outcome(self, handle) -> Outcome: ...


def drive(backend: Backend, tasks: Sequence[Task], started: Callable[[Task], None],
          finished: Callable[[Task, Outcome], None], tick: Callable[[], None] = lambda: None,
          poll: float = 0.2) -> None:
    """Run ``tasks`` in order, at most ``backend.capacity()`` at a time, so
    that a task starts when it is submitted (``started`` is then accurate);
    ``finished`` is called in this thread as each one ends."""
    pending = deque(tasks)
    running: dict = {}
    while pending or running:
        if pending:
            free = backend.capacity() - len(running)
            while pending and free > 0:
                task = pending.popleft()
                running[backend.submit(task)] = task
                started(task)
                free -= 1
        if not running:  # no capacity yet (a cluster without workers)
            time.sleep(poll)
            continue
        for handle in backend.wait(list(running), poll):
            finished(running.pop(handle), backend.outcome(handle))
        tick()


__all__ = ["Backend", "drive"]
