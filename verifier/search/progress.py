"""Progress lines of long searches (``-v``): one every few seconds."""
from __future__ import annotations

import time

#: seconds between two progress lines
PROGRESS_SECONDS = 3.0


class Progress:
    """One ``ctx.log`` line every :data:`PROGRESS_SECONDS` while a search runs:
    its open sub-problems, the worst open bound (the global lower bound) and
    the sub-problems bounded per second since the previous line.
    ``label``: the search ("ReLU splitting"), ``unit``: what it bounds
    ("sub-problems", "sub-boxes")."""

    def __init__(self, ctx, label: str, unit: str):
        self.ctx, self.label, self.unit = ctx, label, unit
        self.last = time.monotonic()
        self.last_explored = 0

    def report(self, open_count: int, worst: float, explored: int) -> None:
        if not self.ctx.options.verbose:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS:
            return
        rate = (explored - self.last_explored) / max(now - self.last, 1e-9)
        self.ctx.log(f"{self.label}: {open_count} open {self.unit}, global lower bound "
                     f"{worst:.6g}, {rate:.1f} {self.unit}/s ({explored} bounded)")
        self.last, self.last_explored = now, explored
