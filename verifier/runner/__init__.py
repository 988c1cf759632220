"""Run every instance of a VNN-COMP benchmark folder, score it, resume it.

The package, by job:

    instances     instances.csv and expected.csv; --filter; duplicates
    process       one instance in its own ``verify`` process (Task -> Outcome)
    backend       the backend interface and the loop that drives one
    local         backend: a pool of local subprocesses (--jobs N)
    dask_backend  backend: tasks on a Dask cluster (--cluster), optional
    outcome       Outcome -> Row: the answer, counterexample and log files
    check         the independent replay of a counterexample (VNN-COMP 2025)
    scoring       Row, VNN-COMP scores, which rows fail a build (--fail-on)
    results       the results CSV: read, lock, append, rewrite
    summary       counts and times per network and property; Report
    junit         the JUnit XML report
    driver        run_benchmark: resume, run, record, rewrite
    signals       SIGTERM and SIGHUP stop a run like Ctrl-C

Each instance runs in its own process, so that a crash, a hang or a memory
blow-up costs one row (``error`` or ``timeout``) and the run goes on; rows
are appended to the results CSV as they finish, under a lock, and a killed
run loses at most the rows in flight (``resume=True`` goes on).
"""
from __future__ import annotations

from verifier.runner.check import (OUTPUT_RTOL, PROPERTY_TOL, Check, check_counterexample,
                                   parse_counterexample)
from verifier.runner.driver import run_benchmark
from verifier.runner.instances import (Instance, deduplicate, instance_key, read_expected,
                                       read_instances, select)
from verifier.runner.process import DEFAULT_GRACE, start_process, verify_command
from verifier.runner.results import ResultsFile, counterexample_dir, read_results
from verifier.runner.scoring import (DEFAULT_FAIL_ON, SCORE_CORRECT, SCORE_WRONG, Row, failure,
                                     score_row)
from verifier.runner.signals import Stopped, stop_on_signals
from verifier.runner.summary import Report, summarize

__all__ = [
    "Instance", "Row", "Check", "Report", "read_instances", "read_expected", "select",
    "read_results", "instance_key", "check_counterexample", "parse_counterexample",
    "score_row", "summarize", "run_benchmark", "verify_command", "counterexample_dir",
    "deduplicate", "ResultsFile", "start_process", "Stopped", "stop_on_signals", "failure",
    "SCORE_CORRECT", "SCORE_WRONG", "DEFAULT_GRACE", "OUTPUT_RTOL", "PROPERTY_TOL",
    "DEFAULT_FAIL_ON",
]
