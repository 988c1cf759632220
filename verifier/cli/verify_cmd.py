"""``verifier verify``."""
from __future__ import annotations

import json
import os
import sys
import threading

import click

from verifier.cli import handle_errors

#: the process returns within --timeout + this many seconds, whatever happens
HARD_STOP_GRACE = 1.5


def _watchdog(timeout: float, result_file: str | None, as_json: bool):
    """Write a ``timeout`` answer and end the process if the search overruns."""

    def fire():
        from verifier.result import Result, Verdict, write_result_file

        result = Result(Verdict.TIMEOUT, reason="hard time limit reached")
        if result_file:
            try:
                write_result_file(result_file, result)
            except OSError:
                pass
        click.echo(json.dumps(result.to_dict()) if as_json else "timeout")
        sys.stdout.flush()
        os._exit(3)

    timer = threading.Timer(timeout + HARD_STOP_GRACE, fire)
    timer.daemon = True
    timer.start()
    return timer


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("property_file", metavar="PROPERTY", type=click.Path(dir_okay=False))
@click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              help="Seconds; the answer is written before it runs out.")
@click.option("--result-file", type=click.Path(dir_okay=False),
              help="Write the VNN-COMP result file here.")
@click.option("--seed", default=0, show_default=True, help="Seed of the attacks.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (and why) as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Log the phases to stderr.")
@click.option("--smoothing-sigma", type=click.FloatRange(min=0, min_open=True),
              help="When the answer is unknown/timeout on a robustness property, also "
                   "certify the smoothed classifier (noise std in the model's input units) "
                   "and report it in --json. Never changes the answer.")
@click.option("--smoothing-n", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Estimation samples for --smoothing-sigma (n0 = 100, alpha = 0.001).")
@handle_errors
def verify(model, property_file, timeout, result_file, seed, as_json, verbose,
           smoothing_sigma, smoothing_n):
    """Verify that no input of PROPERTY's region makes MODEL reach its unsafe set.

    Prints sat (counterexample found, exit 1), unsat (the property holds,
    exit 0), unknown or timeout (exit 3), or error (bad input, exit 2).
    With --smoothing-sigma, 10% of the time is kept for the smoothing
    certificate of an unknown/timeout answer.
    """
    from verifier.errors import VerifierError
    from verifier.result import Result, Verdict, write_result_file
    from verifier.verify import Options, verify as run_verify

    timer = _watchdog(timeout, result_file, as_json)
    budget = 0.9 * timeout if smoothing_sigma else timeout
    try:
        result = run_verify(model, property_file,
                            Options(timeout=budget, seed=seed, verbose=verbose))
    except VerifierError as exc:
        timer.cancel()
        if result_file:
            write_result_file(result_file, Result(Verdict.ERROR, reason=exc.message))
        raise
    if smoothing_sigma and result.verdict in (Verdict.UNKNOWN, Verdict.TIMEOUT):
        result.stats["smoothing"] = _smoothing_certificate(
            model, property_file, smoothing_sigma, smoothing_n, seed)
    timer.cancel()
    if result_file:
        write_result_file(result_file, result)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(result.verdict.value)
        if result.reason:
            click.echo(f"  {result.reason} ({result.seconds:.2f} s)", err=True)
    sys.exit(result.verdict.exit_code)


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
    return certificate.to_dict()


__all__ = ["verify"]
