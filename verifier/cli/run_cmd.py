"""``verifier run``: every instance of a VNN-COMP benchmark folder."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

from verifier.cli import EXIT_OK, handle_errors, require_writable

#: exit code when at least one row fails (a wrong answer, or an answer in --fail-on)
EXIT_WRONG = 1
ANSWERS = ("sat", "unsat", "unknown", "timeout", "error")
FAILABLE = ("sat", "unknown", "timeout", "error")


def _fail_on(ctx, param, value: str) -> frozenset:
    """``--fail-on sat,error`` -> the answer words; ``none`` -> no word."""
    words = {word.strip().lower() for word in value.split(",") if word.strip()}
    if words == {"none"}:
        return frozenset()
    bad = sorted(words - set(FAILABLE))
    if bad:
        raise click.BadParameter(f"{', '.join(bad)} is not one of {', '.join(FAILABLE)} "
                                 f"(or none)")
    return frozenset(words)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RunProgress:
    """Progress of a benchmark run on stderr.

    On a terminal: one bar, redrawn in place (done/total, answers so far, the
    running instances, elapsed, a worst-case ETA); wrong answers and errors
    are printed above it as they come. Elsewhere (CI logs): one plain line
    when an instance starts and one when it finishes.

    The ETA is the time the rows left can still take: the timeouts of the
    rows not started plus what is left of the running rows' timeouts,
    divided by the jobs. It is an upper bound (plus the kill grace), and does
    not grow while an instance runs.
    """

    WIDTH = 24

    def __init__(self, stream=None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.counts = dict.fromkeys(ANSWERS, 0)
        self.total = self.done = self.ran = self.wrong = 0
        self.jobs = 1
        self.budget = 0.0  # seconds of timeout of the rows not started yet
        self.running: dict[tuple[str, str], tuple[str, float, float]] = {}
        self.start_time = time.monotonic()
        self._last_draw = 0.0

    def start(self, total: int, rows, budgets=(), jobs: int = 1) -> None:
        self.total = total
        self.jobs = max(1, jobs)
        self.budget = float(sum(budgets))
        self.start_time = time.monotonic()
        for row in rows:
            self._count(row)
        if rows:
            self._line(f"resuming: {len(rows)} of {total} instances already in the results file")
        self._draw()

    def started(self, instance, timeout: float) -> None:
        """An instance started with this (scaled) timeout."""
        self.budget = max(0.0, self.budget - timeout)
        name = f"{instance.network} {instance.property_name}"
        self.running[instance.key] = (name, time.monotonic(), timeout)
        if not self.tty:
            self._line(f"[start] {name} (timeout {timeout:g} s)")
        self._draw()

    def _count(self, row) -> None:
        self.done += 1
        self.counts[row.result.value] += 1
        self.wrong += bool(row.wrong)

    def eta(self) -> float:
        """Seconds the rows left can still take at most (see the class)."""
        now = time.monotonic()
        left = sum(max(0.0, timeout - (now - since))
                   for _, since, timeout in self.running.values())
        return (self.budget + left) / self.jobs

    def _eta(self) -> str:
        return _duration(self.eta()) if self.done < self.total else "0s"

    def _answers(self) -> str:
        text = "  ".join(f"{self.counts[word]} {word}" for word in ANSWERS
                         if self.counts[word] or word in ("sat", "unsat", "unknown"))
        return text + (f"  {self.wrong} WRONG" if self.wrong else "")

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def _draw(self) -> None:
        if not self.tty:
            return
        elapsed = time.monotonic() - self.start_time
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        names = ", ".join(name for name, _, _ in self.running.values())
        text = (f"[{bar}] {self.done}/{self.total}  {self._answers()}  "
                f"{_duration(elapsed)} elapsed, ETA <= {self._eta()}"
                + (f"  running: {names}" if names else ""))
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width] + "\033[K")
        self.stream.flush()
        self._last_draw = time.monotonic()

    def row(self, row) -> None:
        self.ran += 1
        self._count(row)
        self.running.pop(row.key, None)
        elapsed = time.monotonic() - self.start_time
        status = f"WRONG: {row.wrong}" if row.wrong else (row.reason or "")
        text = (f"[{self.done}/{self.total}] {row.result.value:<7} {row.seconds:7.2f} s  "
                f"{row.network} {row.property_name}  {status}".rstrip())
        if not self.tty:
            self._line(f"{text}  ({_duration(elapsed)} elapsed, ETA <= {self._eta()})")
            return
        if row.wrong or row.result.value == "error":
            self._line(click.style(text, fg="red", bold=bool(row.wrong)))
        self._draw()

    def tick(self) -> None:
        if self.tty and time.monotonic() - self._last_draw >= 0.5:
            self._draw()

    def note(self, text: str) -> None:
        self._line(text)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _table(title: str, groups: dict, totals: dict) -> list[str]:
    """One line per group, then a rule and the totals line."""
    name_width = max([len(title), 3] + [len(name) for name in groups])

    def line(name, cells, seconds, median):
        return (f"{name:<{name_width}}  " + " ".join(f"{c:>7}" for c in cells)
                + f"  {seconds:>9}  {median:>8}")

    def stats_line(name, stats):
        return line(name, [stats[w] for w in ANSWERS], f"{stats['total_seconds']:.2f}",
                    f"{stats['median_seconds']:.2f}")

    lines = [line(title, ANSWERS, "total s", "median s")]
    lines += [stats_line(name, stats) for name, stats in groups.items()]
    lines.append("-" * len(lines[0]))
    lines.append(stats_line("all", totals))
    return lines


def render_summary(summary: dict) -> str:
    """The human-readable summary: per network, per property file, overall."""
    repeated = summary.get("duplicates", 0)
    lines = [f"benchmark {summary['benchmark']}: {summary['instances']} instances "
             f"({summary['ran']} run now, {summary['resumed']} from an earlier run"
             + (f"; {repeated} repeated row{'s' if repeated != 1 else ''} of the instance "
                f"list run once" if repeated else "")
             + f") in {_duration(summary['wall_seconds'])}", ""]
    totals = summary["totals"]
    lines += _table("network", summary["networks"], totals) + [""]
    lines += _table("property", summary["properties"], totals)
    lines += ["", f"solved {totals['solved']}/{totals['count']} "
                  f"({totals['sat']} sat, {totals['unsat']} unsat); "
                  f"total {totals['total_seconds']:.2f} s, median {totals['median_seconds']:.2f} s"]
    score = summary["score"]
    if score is not None:
        lines.append(f"score {score['total']} (best possible {score['best_possible']}): "
                     f"{score['correct']} correct, {score['wrong']} wrong, "
                     f"{score['unscored']} without points")
    lines.append(f"wrong answers: {len(summary['wrong'])}")
    lines.append(f"results: {summary['results_file']}")
    return "\n".join(lines)


def _report_failed(report, fail_on) -> None:
    """List the rows that fail only because of --fail-on (wrong ones are listed apart)."""
    from verifier.runner import failure

    failed = [(row, failure(row, fail_on)) for row in report.rows if not row.wrong]
    failed = [(row, why) for row, why in failed if why]
    if failed:
        click.echo(f"\n{len(failed)} row{'s' if len(failed) != 1 else ''} fail "
                   f"(--fail-on {','.join(sorted(fail_on))}):", err=True)
    for row, why in failed:
        click.echo(f"  FAIL  {row.onnx}  {row.vnnlib}: {why}", err=True)


def _report_wrong(summary: dict) -> None:
    for note in summary["notes"]:
        click.echo(f"note: {note['onnx']} {note['vnnlib']}: {note['note']}", err=True)
    wrong = summary["wrong"]
    if not wrong:
        return
    click.secho(f"\n{len(wrong)} WRONG ANSWER{'S' if len(wrong) != 1 else ''}:", err=True,
                fg="red", bold=True)
    for row in wrong:
        click.secho(f"  WRONG  {row['onnx']}  {row['vnnlib']}: {row['wrong']}", err=True,
                    fg="red", bold=True)


@click.command()
@click.argument("benchmark_dir", type=click.Path(file_okay=False))
@click.option("--instances", "instances_file", type=click.Path(dir_okay=False),
              help="Instance list (onnx,vnnlib,timeout; paths relative to BENCHMARK_DIR). "
                   "Default: BENCHMARK_DIR/instances.csv.")
@click.option("--timeout-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Multiply every row's timeout by this factor.")
@click.option("--grace", type=click.FloatRange(min=0), default=None,
              help="Seconds an instance may overrun its timeout before it is killed "
                   "(its row then reads timeout).  [default: 10]")
@click.option("--results", "results_file", type=click.Path(dir_okay=False),
              help="Results CSV; sat result files go to the folder RESULTS_counterexamples "
                   "next to it.  Default: ./<benchmark>_results.csv.")
@click.option("--resume", is_flag=True, help="Keep the rows already in the results file and "
              "run the other instances.")
@click.option("--overwrite", is_flag=True, help="Start an existing results file afresh "
              "(without --resume or --overwrite, an existing results file is an error).")
@click.option("--expected", "expected_file", type=click.Path(dir_okay=False),
              help="Ground truth (onnx,vnnlib,expected). Default: BENCHMARK_DIR/expected.csv "
                   "when it exists.")
@click.option("--no-expected", is_flag=True, help="Do not score, even if expected.csv exists.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances run at once (times are only comparable with 1).")
@click.option("--filter", "filters", multiple=True, metavar="PATTERN",
              help="Only rows whose onnx or vnnlib path matches PATTERN (glob or substring); "
                   "repeatable.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N (selected) rows.")
@click.option("--cluster", metavar="ADDRESS",
              help="Run each instance as a task on a Dask cluster: a scheduler address "
                   "(tcp://host:8786) or local:N (an embedded cluster of N workers). "
                   "Needs pip install \"verifier[dask]\". See docs/ci.md.")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False),
              help="Also write a JUnit XML report: one testcase per instance.")
@click.option("--fail-on", "fail_on", default="sat,error", show_default=True,
              callback=_fail_on, metavar="ANSWERS",
              help="Answers that fail the run (JUnit failure, exit code 1) unless the "
                   "ground truth expects them: any of sat,unknown,timeout,error, or none. "
                   "Wrong answers always fail.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def run(benchmark_dir, instances_file, timeout_scale, grace, results_file, resume, overwrite,
        expected_file, no_expected, jobs, filters, limit, cluster, junit_file, fail_on, as_json):
    """Run every instance of a VNN-COMP benchmark folder, each in its own process.

    Writes a results CSV (onnx, vnnlib, result, seconds, reason, counterexample,
    check, and expected and score when a ground truth is known), shows progress
    on stderr and prints a summary per network and per property file.

    A sat answer counts only if its counterexample is replayed through
    onnxruntime within relative 1e-6 and violates the property (tolerance 1e-7).
    Scores as VNN-COMP since 2023: +10 correct, -150 wrong or invalid counterexample.

    The results file is locked while a run writes it (RESULTS.lock holds
    the PID); rows are appended as they finish. Failed rows keep their
    output in RESULTS_logs/. SIGINT, SIGTERM and SIGHUP stop the run, kill
    the running instances and keep the finished rows (go on with --resume).

    Exit codes: 0 no row fails, 1 at least one row fails: a wrong answer,
    or an answer named by --fail-on (default sat,error) that the ground truth
    does not expect (listed on stderr); 2 bad input, 130 Ctrl-C, 128+N
    signal N (143 SIGTERM).
    """
    from verifier.errors import DataError, InputFileError
    from verifier.runner import (DEFAULT_GRACE, Stopped, failure, read_expected,
                                 read_instances, run_benchmark, select, stop_on_signals)

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")

    folder = Path(benchmark_dir)
    if not folder.is_dir():
        raise InputFileError(f"benchmark folder not found: {folder}")
    instances = read_instances(Path(instances_file) if instances_file
                               else folder / "instances.csv")
    chosen = select(instances, filters, limit)
    if not chosen:
        raise DataError(f"no instance matches {' or '.join(map(repr, filters))}")
    expected = None
    if expected_file and not no_expected:
        expected = read_expected(expected_file)
    elif not no_expected and (folder / "expected.csv").is_file():
        expected = read_expected(folder / "expected.csv")
    name = folder.resolve().name
    results = Path(results_file) if results_file else Path(f"{name}_results.csv")

    backend = None
    source = click.get_current_context().get_parameter_source("jobs")
    if cluster and source is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--jobs is for the local backend; with --cluster the "
                               "cluster's worker threads set how many rows run at once")
    if cluster:
        from verifier.runner.dask_backend import DaskBackend

        backend = DaskBackend(cluster)
    if junit_file:
        require_writable(junit_file, "the JUnit report")
    progress = RunProgress()
    try:
        with stop_on_signals():
            report = run_benchmark(folder, chosen, results, expected=expected,
                                   timeout_scale=timeout_scale,
                                   grace=DEFAULT_GRACE if grace is None else grace,
                                   jobs=jobs, resume=resume, overwrite=overwrite,
                                   progress=progress, backend=backend)
    except KeyboardInterrupt as exc:
        progress.finish()
        what = f"stopped by {exc.args[0]}" if isinstance(exc, Stopped) else "interrupted"
        click.echo(f"{what}: the finished rows are in {results}; "
                   f"run again with --resume to go on", err=True)
        sys.exit(128 + exc.signum if isinstance(exc, Stopped) else 130)
    if report.duplicates:
        progress.note(f"{report.duplicates} repeated row{'s' if report.duplicates != 1 else ''}"
                      f" of the instance list ran once")
    progress.finish()
    summary = report.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(render_summary(summary))
    _report_wrong(summary)
    _report_failed(report, fail_on)
    if junit_file:
        from verifier.runner.junit import write_junit

        write_junit(junit_file, report, fail_on)
        click.echo(f"JUnit report: {junit_file}", err=True)
    failed = any(failure(row, fail_on) for row in report.rows)
    sys.exit(EXIT_WRONG if failed else EXIT_OK)


__all__ = ["run", "RunProgress", "render_summary", "EXIT_WRONG"]
