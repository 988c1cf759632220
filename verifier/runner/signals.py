"""SIGTERM and SIGHUP stop a run the way Ctrl-C does."""
from __future__ import annotations

import signal
from contextlib import contextmanager


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


__all__ = ["Stopped", "stop_on_signals"]
