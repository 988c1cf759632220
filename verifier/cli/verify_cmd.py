"""``verifier verify``."""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import click

from verifier.cli import (FINISHING, Command, FiniteFloat, InputFile, OutputFile, entry_time,
                          handle_errors, json_context)

#: the process returns within --timeout + this many seconds, whatever happens
HARD_STOP_GRACE = 1.5

#: entries of the counterexample shown on stderr by plain ``verify``
SHOWN_ENTRIES = 8



def smoothing_reserve(timeout: float) -> float:
    """Seconds kept for the --smoothing-sigma certificate, out of ``timeout``:
    10 %, at least 1 s, at most half the time."""
    return min(max(0.1 * timeout, 1.0), 0.5 * timeout)


def result_json(result, context: dict) -> str:
    """The --json object: result, reason, the input paths, then the rest."""
    data = result.to_dict()
    head = {"result": data.pop("result"), "reason": data.pop("reason")}
    head.update({k: v for k, v in context.items() if v is not None})
    head.update(data)
    return json.dumps(head)


def _snapshot(stats: dict) -> dict:
    """A JSON-safe copy of a dict another thread may be filling."""
    for _ in range(5):
        try:
            return json.loads(json.dumps(dict(stats), default=str))
        except (RuntimeError, ValueError):
            continue  # changed while copied: try again
    return {}


class Watchdog:
    """The hard stop: if the run is still going ``HARD_STOP_GRACE`` seconds
    after the deadline, answer ``timeout`` with what the run reached (its
    phase and live ``stats``, the real elapsed time), write the result file
    and end the process. A last resort: the search stops at its own deadline."""

    def __init__(self, start, timeout, result_file, as_json, stats, context):
        from verifier.result import Result, Verdict, write_result_file

        self._make = (Result, Verdict, write_result_file)  # imported now, not in the thread
        self.start, self.timeout = start, timeout
        self.result_file, self.as_json = result_file, as_json
        self.stats, self.context = stats, context
        delay = start + timeout + HARD_STOP_GRACE - time.monotonic()
        self.timer = threading.Timer(min(max(delay, 0.0), threading.TIMEOUT_MAX), self.fire)
        self.timer.daemon = True
        self.timer.start()

    def cancel(self):
        self.timer.cancel()

    def fire(self):
        if not FINISHING.acquire(blocking=False):
            return  # the main thread is writing its answer
        Result, Verdict, write_result_file = self._make
        stats = _snapshot(self.stats)
        phase = stats.get("phase", "start-up")
        result = Result(Verdict.TIMEOUT, seconds=time.monotonic() - self.start, stats=stats,
                        reason=f"hard time limit reached during {phase} "
                               f"(--timeout {self.timeout:g} s + {HARD_STOP_GRACE:g} s)")
        if self.result_file:
            try:
                write_result_file(self.result_file, result)
            except Exception:  # noqa: BLE001 - checked before the run; nothing else to do
                pass
        try:
            if self.as_json:
                click.echo(result_json(result, self.context))
            else:
                click.echo("timeout")
                click.echo(f"  {result.reason} ({result.seconds:.2f} s)", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(3)


def _show_counterexample(cex) -> str:
    def head(values):
        shown = ", ".join(repr(float(v)) for v in values[:SHOWN_ENTRIES])
        more = f", ... ({len(values)} values)" if len(values) > SHOWN_ENTRIES else ""
        return f"[{shown}{more}]"

    return (f"  counterexample (input region {cex.case + 1}): X = {head(cex.x)}\n"
            f"                                     Y = {head(cex.y)}\n"
            f"  (every value: --result-file or --json)")


@click.command(cls=Command)
@click.argument("model", type=InputFile("model"))
@click.argument("property_file", metavar="PROPERTY", type=InputFile("property"))
@click.option("--timeout", type=FiniteFloat(min=0.1), default=300.0, show_default=True,
              help="Seconds, counted from the start of the process; the answer is "
                   "written before they run out (the process ends by --timeout + 2 s).")
@click.option("--result-file", type=OutputFile(),
              help="Write the VNN-COMP result file here (checked before the search starts).")
@click.option("--seed", default=0, show_default=True, help="Seed of the attacks.")
@click.option("--max-disjuncts", type=click.IntRange(min=1),
              help="Refuse properties with more unsafe disjuncts than this "
                   "(default: the reader's limit, 100000).")
@click.option("--json", "as_json", is_flag=True, help="Print the result (and why) as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log the phases to stderr.")
@click.option("--smoothing-sigma", type=FiniteFloat(min=0, min_open=True),
              help="When the answer is unknown/timeout on a robustness property, also "
                   "certify the smoothed classifier (noise std in the model's input units) "
                   "and report it in --json. Never changes the answer.")
@click.option("--smoothing-n", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Estimation samples for --smoothing-sigma (n0 = 100, alpha = 0.001).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes sharing one instance's input-split search (see "
                   "verifier/search/split_workers.py), and rows of the exact MILP of small "
                   "ReLU MLPs solved at once (default: the CPUs available to the process).")
@handle_errors
def verify(model, property_file, timeout, result_file, seed, max_disjuncts, as_json, verbose,
           smoothing_sigma, smoothing_n, workers):
    """Verify that no input of PROPERTY's region makes MODEL reach its unsafe set.

    Prints sat (counterexample found, exit 1; its first values go to
    stderr), unsat (the property holds, exit 0), unknown or timeout (exit 3),
    or error (bad input or any failure, exit 2; 130 on Ctrl-C). With
    --smoothing-sigma, 10% of the time (at least 1 s) is reserved for the
    smoothing certificate of an unknown/timeout answer; it is computed even
    when the search overruns its share.
    """
    from verifier.result import Verdict, write_result_file
    from verifier.verify import Options, verify as run_verify

    start = entry_time()
    context = json_context({"model": model, "property_file": property_file})
    stats: dict = {}
    watchdog = Watchdog(start, timeout, result_file, as_json, stats, context)
    certificate = None
    if smoothing_sigma:
        reserve = smoothing_reserve(timeout)
        certificate = CertificateJob(model, property_file, smoothing_sigma, smoothing_n, seed,
                                     stats, begin_at=start + timeout - reserve)
    else:
        reserve = 0.0
    options = Options(timeout=timeout - reserve, start=start, seed=seed, verbose=verbose,
                      max_disjuncts=max_disjuncts, workers=workers)
    try:
        result = run_verify(model, property_file, options, stats=stats)
        if certificate is not None and result.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT):
            stats["phase"] = "smoothing certificate"
            # the reserve, from now if the search overran, but ending well
            # before the hard stop
            certificate.wait(min(max(start + timeout, time.monotonic() + reserve),
                                 start + timeout + HARD_STOP_GRACE - 0.5))
    except BaseException:
        watchdog.cancel()
        raise
    finally:
        abandoned = certificate is not None and certificate.close()
    with FINISHING:
        watchdog.cancel()
        if result_file:
            write_result_file(result_file, result)
        if as_json:
            click.echo(result_json(result, context))
        else:
            click.echo(result.verdict.value)
            if result.reason:
                click.echo(f"  {result.reason} ({result.seconds:.2f} s)", err=True)
            if result.counterexample is not None:
                click.echo(_show_counterexample(result.counterexample), err=True)
    if abandoned:  # the certificate thread is still in onnxruntime: do not wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result.verdict.exit_code)
    sys.exit(result.verdict.exit_code)


class CertificateJob:
    """The --smoothing-sigma certificate, computed in a thread that writes
    ``stats["smoothing"]`` (so that the hard stop reports it too). The thread
    starts at ``begin_at`` (a ``time.monotonic()`` value: the end of the
    search's share of the time) if the search is still running then, or when
    :meth:`wait` is called, whichever comes first."""

    def __init__(self, model, property_file, sigma, n, seed, stats, begin_at):
        import verifier.smoothing  # noqa: F401 - imported here, not in a thread, once

        self.args = (model, property_file, sigma, n, seed)
        self.stats = stats
        self.lock = threading.Lock()
        self.closed = False
        self.thread = None
        self.timer = threading.Timer(min(max(begin_at - time.monotonic(), 0.0),
                                         threading.TIMEOUT_MAX), self.start)
        self.timer.daemon = True
        self.timer.start()

    def start(self):
        with self.lock:
            if self.thread is None and not self.closed:
                self.thread = threading.Thread(target=self._work, daemon=True)
                self.thread.start()

    def _work(self):
        certificate = _smoothing_certificate(*self.args)
        with self.lock:
            if not self.closed:
                self.stats["smoothing"] = certificate

    def wait(self, until: float) -> None:
        """Start (if not yet) and wait for the certificate until ``until``."""
        self.timer.cancel()
        self.start()
        self.thread.join(max(until - time.monotonic(), 0.0))
        with self.lock:
            if "smoothing" not in self.stats:
                self.stats["smoothing"] = {"skipped": "time ran out before the certificate "
                                                      "was computed"}

    def close(self) -> bool:
        """Stop writing into ``stats``; whether the thread is still running."""
        self.timer.cancel()
        with self.lock:
            self.closed = True
            return self.thread is not None and self.thread.is_alive()


def _smoothing_certificate(model, property_file, sigma, n, seed) -> dict:
    """The smoothed classifier's certificate at the property's box centre, or
    why there is none (it is extra information and never an error)."""
    from verifier.errors import VerifierError
    from verifier.smoothing import certify_property

    try:
        certificate = certify_property(model, property_file, sigma, n=n, seed=seed,
                                       device="auto")
    except VerifierError as exc:
        return {"skipped": exc.message}
    except Exception as exc:  # noqa: BLE001 - extra information, never the answer
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    return certificate.to_dict()


__all__ = ["verify", "CertificateJob", "HARD_STOP_GRACE", "Watchdog", "smoothing_reserve"]
