"""One region's input-split queue shared by worker processes (``--workers N``).

After ``fork_after`` seconds of search (easy instances never pay for
processes), the parent deals its open boxes, sorted by bound, round-robin
into N parts, keeps part 0 and forks one child per other part. Each child
runs :func:`verifier.search.input_split.run_queue` on its part and reports
through a queue:

* ``("candidates", points, margins)``: points whose float64 margin is
  violated. Children never run onnxruntime (its thread pools do not survive
  a fork); the parent replays the points, so every ``sat`` is still built
  by :func:`verifier.result.replay_counterexample` in the parent.
* ``("done", proved, reason, boxes)`` when its part is closed, or time ran out.

* ``("boxes", lower, upper, bound, hint, known)``: half of its open boxes
  (every other one by bound), handed back when the parent has asked for
  work (the ``hungry`` event, set while the parent's own part is empty and
  children still split); the parent searches them itself.

The first replayed counterexample, or the first child that could not close
its part, ends the search; the region is proved when the parent's part,
every child's and every part handed back are. Work is rebalanced both
ways: a child that closes its part is replaced by a new one forked with
half of the parent's queue (at least :data:`MIN_SHARE` boxes each), and an
idle parent gets half of a child's. Children exit when the parent goes away
(they watch their parent's pid) and are terminated when the search ends.

Default: one process per core this process may use (``--workers`` or
``Options.workers`` sets it; ``verifier run`` gives each of its ``--jobs``
rows its share of the cores). Easy instances never fork (``fork_after``).
Measured on the 2-core machine, quiet, one instance at a time, one process
against two: acasxu 1_1 prop_3 9.88 s / 5.86 s, 1_1 prop_5 8.31 / 5.72 (a
second worker forked after the first closed its part), 5_3 prop_2 (sat)
9.24 / 4.77, 2_9 prop_8 (sat) 5.50 / 4.09, 3_3 prop_9 3.99 / 3.20, 4_6
prop_1 1.60 / 1.56. (Before the rebalancing, and with the other core busy,
two processes had been slower: 4_6 prop_1 3.1 s against 2.2 s.)
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import threading
import time

import numpy as np


#: the fewest boxes a process hands over (a worker to its idle parent, the
#: parent to a new worker once one has closed its part)
MIN_SHARE = 64


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Team:
    """The parent's side: forks the workers, relays their news."""

    def __init__(self, workers, settings, search_case):
        self.workers = workers
        self.settings = settings
        self.search_case = search_case
        self.processes = []
        self.messages = None
        self.context = self.hungry = None
        self.running = 0
        self.child_boxes = 0
        self.returned = []      # BoxQueues handed back by children, not yet searched

    @classmethod
    def for_run(cls, ctx, settings, search_case=None):
        """A team when more than one worker is asked for (default: one per core
        this process may use) and fork exists, else None."""
        workers = settings.workers or getattr(ctx.options, "workers", None) or available_cores()
        if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        return cls(workers, settings, search_case)

    def poll(self, ctx, case_index, queue, elapsed):
        """Fork once the search has run ``fork_after`` seconds with enough
        boxes; then relay the children's news: an outcome that ends the
        search (a counterexample, a child that could not close its part) or None."""
        if not self.processes and elapsed >= self.settings.fork_after \
                and len(queue) >= 2 * self.workers:
            self._fork(ctx, case_index, queue)
        elif self.processes and self.running < self.workers - 1 \
                and len(queue) >= 2 * MIN_SHARE:
            self._spawn(ctx, case_index, queue, 1)  # a worker closed its part: deal again
        return self._drain(ctx, case_index, block=0.0)

    def finish(self, ctx, case_index, outcome):
        """The region's outcome once the parent's own part ended with ``outcome``."""
        from verifier.search.input_split import SplitOutcome, run_queue
        from verifier.verify import try_candidates

        if not outcome.proved or not self.processes:
            return outcome
        boxes = outcome.boxes
        while self.running or self.returned:
            if self.returned:  # boxes a worker handed back: search them here
                self.hungry.clear()
                outcome = run_queue(ctx, case_index, self.search_case, self.settings,
                                    self.returned.pop(), try_candidates, self)
                boxes += outcome.boxes
                if not outcome.proved:
                    outcome.boxes = boxes + self.child_boxes
                    return outcome
                continue
            self.hungry.set()  # idle: ask the workers for part of their boxes
            left = ctx.time_left()
            if left <= 0:
                return SplitOutcome(False, f"time ran out with {self.running} worker "
                                           "process(es) still splitting",
                                    boxes=boxes + self.child_boxes)
            news = self._drain(ctx, case_index, block=min(left, 0.5))
            if news is None and self.messages.empty() and sum(
                    p.exitcode is not None for p in self.processes) > len(self.processes) - \
                    self.running:
                news = SplitOutcome(False, "a worker process ended without reporting",
                                    boxes=self.child_boxes)
            if news is not None:
                news.boxes += boxes
                return news
        return SplitOutcome(True, outcome.reason + f" ({self.workers} processes)",
                            boxes=boxes + self.child_boxes)

    def stop(self):
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=1.0)

    # -------------------------------------------------------------- internals
    def _fork(self, ctx, case_index, queue):
        self.context = multiprocessing.get_context("fork")
        self.messages = self.context.Queue()
        self.hungry = self.context.Event()
        self._spawn(ctx, case_index, queue, self.workers - 1)
        ctx.stats["workers"] = self.workers

    def _spawn(self, ctx, case_index, queue, count):
        """Deal the queue's boxes into ``count + 1`` parts (:meth:`BoxQueue.deal`);
        keep the first and fork a worker for each other one."""
        self.hungry.clear()
        parts = queue.deal(count + 1)
        queue.replace(parts[0])
        parent = os.getpid()
        for j in range(1, count + 1):
            process = self.context.Process(
                target=_child, daemon=True,
                args=(ctx, case_index, self.search_case, self.settings, parts[j],
                      self.messages, self.hungry, parent, len(self.processes) + 1))
            process.start()
            self.processes.append(process)
            self.running += 1
        ctx.stats["worker_forks"] = len(self.processes)

    def _drain(self, ctx, case_index, block):
        from verifier.search.input_split import SplitOutcome
        from verifier.verify import try_candidates

        if self.messages is None:
            return None
        while True:
            try:
                message = self.messages.get(timeout=block) if block else \
                    self.messages.get_nowait()
            except queue_module.Empty:
                return None
            block = 0.0
            if message[0] == "boxes":
                from verifier.search.input_split import BoxQueue

                self.returned.append(BoxQueue.of(*message[1:]))
                ctx.stats["boxes_handed_back"] = ctx.stats.get("boxes_handed_back", 0) + \
                    len(message[1])
            elif message[0] == "candidates":
                _, points, margins = message
                cex = try_candidates(ctx, case_index, points, margins, len(points), np.inf)
                if cex is not None:
                    ctx.stats["found_by"] = "input splitting (worker process)"
                    return SplitOutcome(False, "counterexample found during input splitting",
                                        cex, self.child_boxes)
            else:
                _, proved, reason, boxes = message
                self.running -= 1
                self.child_boxes += boxes
                if not proved:
                    return SplitOutcome(False, f"worker process: {reason}",
                                        boxes=self.child_boxes)


def _child(ctx, case_index, search_case, settings, queue, messages, hungry, parent, number):
    """A worker: search its part of the queue, report candidates and the end;
    hand half of its open boxes back when the parent is idle (``hungry``)."""
    from verifier.search.input_split import run_queue

    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    ctx.rng = np.random.default_rng((ctx.options.seed, number))

    def share(queue):
        if hungry.is_set() and len(queue) >= 2 * MIN_SHARE:
            hungry.clear()
            kept, given = queue.deal(2)
            queue.replace(kept)
            messages.put(("boxes", given.lower, given.upper, given.bound, given.hint,
                          given.known))

    def report(ctx, case_index, points, margins, count, slack):
        best = np.argsort(margins)[:count]
        best = best[margins[best] <= slack]
        if len(best):
            messages.put(("candidates", points[best], margins[best]))
        return None

    outcome = run_queue(ctx, case_index, search_case, settings, queue, report, share=share)
    messages.put(("done", outcome.proved, outcome.reason, outcome.boxes))
    messages.close()
    messages.join_thread()


def _exit_with(parent):
    """End this worker when its parent process is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)
