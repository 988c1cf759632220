"""Command-line interface: a thin click layer over the library.

This package is the only place that touches argv, stdout and exit codes.
Sub-commands live in their own modules and are imported lazily, so that
``verifier --help`` does not pay for numpy, onnx or onnxruntime.

Exit codes (shared by every command):
    0    success / ``unsat`` (the property holds)
    1    ``sat`` (a counterexample was found)
    2    error: bad input, bad usage, or an internal failure
    3    ``unknown`` or ``timeout``
    130  interrupted (Ctrl-C)

The failure contract (every command, whatever goes wrong, click's own usage
errors included): a one-paragraph ``error: ...`` message on stderr that names
what is wrong and where (no traceback; an unexpected internal error says so,
and ``VERIFIER_DEBUG=1`` prints its traceback), exit code 2 (130 on Ctrl-C),
the ``--result-file`` (where the command has one) holding ``error`` (or, when
that path itself is unusable, the message says so), and with ``--json`` one
JSON object ``{"result": "error", "reason": ...}`` on stdout.
"""
from __future__ import annotations

import time


def _process_age() -> float:
    """Seconds since this process started (Linux: /proc/self/stat, whose 22nd
    field is the start in clock ticks since boot), so that the interpreter's
    own start-up counts too; 0 where that is not available."""
    import os

    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
    return age if 0.0 <= age < 60.0 else 0.0


#: when the CLI process started, before the heavy imports: the soft time
#: budget of ``verify`` counts from here (see :func:`entry_time`)
_IMPORTED_AT = time.monotonic() - _process_age()

import functools  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

# One BLAS thread per process unless the user says otherwise: set by the
# package (verifier/__init__.py), which is imported before this module and
# before numpy.
import click  # noqa: E402

from verifier import __version__  # noqa: E402

EXIT_OK = 0
EXIT_SAT = 1
EXIT_ERROR = 2
EXIT_UNKNOWN = 3
EXIT_INTERRUPTED = 130

# name -> (module, attribute, short help). Short help is kept here so that
# ``--help`` can list the commands without importing them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "inspect": ("verifier.cli.inspect_cmd", "inspect",
                "Load an ONNX model, show its IR and check it against onnxruntime."),
    "spec": ("verifier.cli.spec_cmd", "spec",
             "Parse a VNN-LIB property and summarise it."),
    "bounds": ("verifier.cli.bounds_cmd", "bounds",
               "Bound the outputs and unsafe rows of a property (IBP/CROWN/alpha-CROWN)."),
    "verify": ("verifier.cli.verify_cmd", "verify",
               "Verify a VNN-LIB property on an ONNX model (sat/unsat/unknown)."),
    "run": ("verifier.cli.run_cmd", "run",
            "Run every instance of a VNN-COMP benchmark folder."),
    "smooth": ("verifier.cli.smooth_cmd", "smooth",
               "Randomized smoothing: certify and predict (Cohen et al. 2019)."),
    "report": ("verifier.cli.report_cmd", "report",
               "Certified accuracy of a model over a data set, per eps and method."),
    "gen-specs": ("verifier.cli.report_cmd", "gen_specs",
                  "Write VNN-LIB robustness properties (and instances.csv) from a data set."),
    "lipschitz": ("verifier.cli.lipschitz_cmd", "lipschitz",
                  "Lipschitz bounds of the margins and certified radii (global, local)."),
}


_entry = {"time": None}

#: held by whoever writes the final answer (the command, a failure, the
#: verify watchdog), so that only one of them does
FINISHING = threading.RLock()


def entry_time() -> float:
    """The ``time.monotonic()`` value at which this CLI invocation started:
    the process's start (before numpy, onnx and onnxruntime are imported)
    when run by :func:`run` (the console script, ``python -m verifier``),
    else the call of :func:`main` (e.g. click's test runner)."""
    return _entry["time"] if _entry["time"] is not None else time.monotonic()


# ------------------------------------------------------------ the failure contract


def describe_failure(exc: BaseException, command: str = "verifier") -> tuple[str, int]:
    """The one-paragraph message and the exit code for any exception."""
    from verifier.errors import VerifierError

    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        return f"interrupted (Ctrl-C) during `{command}`", EXIT_INTERRUPTED
    if isinstance(exc, (VerifierError, PathProblem)):
        text = exc.message
    elif isinstance(exc, click.UsageError):
        text = f"{exc.format_message().rstrip('.')} (see `{command} --help`)"
    elif isinstance(exc, click.ClickException):
        text = exc.format_message()
    elif isinstance(exc, MemoryError):
        text = (f"out of memory during `{command}`: the model or the property needs more "
                f"memory than this machine has")
    elif type(exc).__module__.startswith("onnxruntime"):
        text = f"onnxruntime failed during `{command}`: {type(exc).__name__}: {exc}"
    elif isinstance(exc, (ImportError, AttributeError)) and "onnxruntime" in str(exc):
        text = (f"the onnxruntime installation is broken ({type(exc).__name__}: {exc}); "
                f"reinstall exactly one of onnxruntime or onnxruntime-gpu")
    elif isinstance(exc, OSError):
        where = f" on {exc.filename!r}" if exc.filename else ""
        text = (f"operating-system error during `{command}`{where}: "
                f"{exc.strerror or exc} ({type(exc).__name__})")
    else:
        text = (f"internal error during `{command}` (a bug in verifier): "
                f"{type(exc).__name__}: {str(exc).rstrip('.')}. Run again with "
                f"VERIFIER_DEBUG=1 to see the traceback, and please report it")
    text = " ".join(str(text).split())  # one paragraph
    if len(text) > 4000:
        text = text[:4000] + " ..."
    return text, EXIT_ERROR


def error_json(message: str, context: dict | None = None) -> str:
    """The ``--json`` object of a failure."""
    data = {"result": "error", "reason": message}
    data.update({k: v for k, v in (context or {}).items() if v is not None})
    return json.dumps(data)


def fail(exc: BaseException, command: str = "verifier", *, result_file=None,
         as_json: bool = False, context: dict | None = None):
    """End the process by the failure contract: message, JSON, result file, exit code."""
    message, code = describe_failure(exc, command)
    if os.environ.get("VERIFIER_DEBUG") and not isinstance(exc, click.ClickException):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if not FINISHING.acquire(timeout=10.0):  # the watchdog is answering and exiting
        raise SystemExit(code)
    if result_file:
        try:
            from verifier.result import Result, Verdict, write_result_file

            write_result_file(result_file, Result(Verdict.ERROR, reason=message))
        except Exception as write_exc:  # noqa: BLE001 - the path itself is unusable
            reason = getattr(write_exc, "strerror", None) or write_exc
            message += f" (no result file was written: {result_file}: {reason})"
    for text, err in ((error_json(message, context), False), (f"error: {message}", True)):
        if err or as_json:
            try:
                click.echo(text, err=err)
            except OSError:  # a closed stdout (broken pipe): the exit code still says it
                pass
    raise SystemExit(code)


def _passes(exc: BaseException) -> bool:
    """Exceptions that are not failures: exits, and click's --help/--version."""
    return isinstance(exc, (SystemExit, click.exceptions.Exit))


def handle_errors(func):
    """Apply the failure contract to a command's callback: every exception
    (library errors, onnxruntime's, OSError, MemoryError, bugs, Ctrl-C) ends
    in :func:`fail`, with the command's ``--result-file`` and ``--json``."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - the contract covers everything
            if _passes(exc):
                raise
            ctx = click.get_current_context(silent=True)
            fail(exc, ctx.command_path if ctx else "verifier",
                 result_file=kwargs.get("result_file"), as_json=bool(kwargs.get("as_json")),
                 context=json_context(kwargs))

    return wrapper


def json_context(params: dict) -> dict:
    """The input paths a command's JSON output names."""
    return {"model": params.get("model"),
            "property": params.get("property_file") or params.get("property_path")}


def _raw_option(args: list[str], name: str) -> str | None:
    """The value of option ``name`` in unparsed ``args`` (last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


class Command(click.Command):
    """A click command whose usage errors (bad option values, bad paths,
    missing arguments) follow the failure contract too: they are raised
    while click parses the arguments, before the callback (and
    :func:`handle_errors`) runs, so the raw arguments are read here for
    ``--result-file`` and ``--json``."""

    def make_context(self, info_name, args, parent=None, **extra):
        raw = list(args)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            names = {opt for param in self.params for opt in param.opts}
            path = " ".join(p for p in ((parent.command_path if parent else None), info_name)
                            if p)
            fail(exc, path or "verifier",
                 result_file=(_raw_option(raw, "--result-file")
                              if "--result-file" in names else None),
                 as_json="--json" in names and "--json" in raw[:raw.index("--")
                                                                  if "--" in raw else None])


# -------------------------------------------------------- option value types


class FiniteFloat(click.ParamType):
    """A finite float (nan, inf and overflowing literals such as 1e400 are
    rejected; click's FloatRange lets them through), optionally bounded."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None,
                 min_open: bool = False, max_open: bool = False):
        self.min, self.min_open, self.max, self.max_open = min, min_open, max, max_open

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            relation = ">" if self.min_open else ">="
            self.fail(f"{value!r} is out of range: it must be {relation} {self.min:g}", param, ctx)
        if self.max is not None and (number > self.max or (self.max_open and number == self.max)):
            relation = "<" if self.max_open else "<="
            self.fail(f"{value!r} is out of range: it must be {relation} {self.max:g}", param, ctx)
        return number


def parse_radii(ctx, param, value) -> tuple[float, ...]:
    """A click callback: comma-separated finite, non-negative radii."""
    try:
        radii = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("expected comma-separated numbers, e.g. 0.25,0.5,1.0") from None
    if not all(math.isfinite(r) and r >= 0 for r in radii):
        raise click.BadParameter("radii must be finite and non-negative")
    return radii


class PathProblem(click.UsageError):
    """A path argument or option is unusable; the message says which and why,
    in the words the library uses ("property path is a directory, not a file: x")."""


class InputFile(click.ParamType):
    """An existing, readable file; ``kind`` names it in messages ("model file
    not found: x", "property path is a directory, not a file: x")."""

    name = "path"

    def __init__(self, kind: str):
        self.kind = kind

    def convert(self, value, param, ctx):
        path = os.fspath(value)
        if os.path.isdir(path):
            raise PathProblem(f"{self.kind} path is a directory, not a file: {path}", ctx)
        if not os.path.exists(path):
            raise PathProblem(f"{self.kind} file not found: {path} (it does not exist)", ctx)
        if not os.access(path, os.R_OK):
            raise PathProblem(f"cannot read {self.kind} file {path}: permission denied", ctx)
        return path


def output_problem(path: str) -> str | None:
    """Why a file cannot be written at ``path`` (None when it can): checked
    before any work, by creating and removing a file next to it."""
    import tempfile

    if os.path.isdir(path):
        return "it is a directory, not a file"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return (f"its directory {parent} does not exist" + (" (that path is a file)"
                                                            if os.path.exists(parent) else ""))
    try:
        fd, probe = tempfile.mkstemp(prefix=".verifier-probe-", dir=parent)
    except OSError as exc:
        return f"cannot create a file in {parent}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


def require_writable(path, what: str) -> None:
    """Raise :class:`verifier.errors.InputFileError` naming ``what`` unless a
    file can be written at ``path`` (for paths checked after parsing)."""
    from verifier.errors import InputFileError

    problem = output_problem(os.fspath(path))
    if problem:
        raise InputFileError(f"cannot write {what} {os.fspath(path)}: {problem}")


class OutputFile(click.ParamType):
    """A path where a file can be written (checked at once, before any work)."""

    name = "path"

    def convert(self, value, param, ctx):
        path = os.fspath(value)
        problem = output_problem(path)
        if problem:
            option = param.opts[0] if param is not None and param.opts else "output"
            raise PathProblem(f"{option} {path} cannot be written: {problem}", ctx)
        return path


# ------------------------------------------------------------------ the group


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not built yet in this checkout
            raise
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)
                if importlib.util.find_spec(COMMANDS[name][0]) is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Run the CLI; in standalone mode every failure that escapes a
        command (group-level usage errors, Ctrl-C while a command is being
        imported, a broken install) also follows the failure contract."""
        _entry["time"] = _entry.pop("process", None) or time.monotonic()
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except BaseException as exc:  # noqa: BLE001 - the contract covers everything
            if isinstance(exc, click.exceptions.Exit):
                raise SystemExit(exc.exit_code) from None
            if isinstance(exc, SystemExit):
                raise
            if isinstance(exc, click.exceptions.NoArgsIsHelpError):
                exc.show()  # `verifier` alone prints the help
                raise SystemExit(exc.exit_code) from None
            if isinstance(exc, click.Abort) and isinstance(exc.__context__, KeyboardInterrupt):
                exc = exc.__context__
            fail(exc, "verifier")
        raise SystemExit(EXIT_OK)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="verifier")
def main():
    """verifier: prove or refute properties of neural networks exported to ONNX.

    Exit codes: 0 unsat / success, 1 sat, 2 error (any failure: a one-paragraph
    message on stderr, `error` in --result-file, {"result": "error", ...} with
    --json; VERIFIER_DEBUG=1 shows the traceback of an internal error),
    3 unknown or timeout, 130 interrupted (Ctrl-C).
    """


def run() -> None:
    """The process entry point (console script, ``python -m verifier``):
    :func:`main`, then an immediate exit with its code once stdout and stderr
    are flushed. Skipping the interpreter's teardown (0.25-0.5 s measured with
    onnxruntime loaded, on a loaded 2-core machine) keeps the process within
    its time limit; every file the commands write is closed by then."""
    _entry["process"] = _IMPORTED_AT
    try:
        main()
        code = EXIT_OK
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = EXIT_OK
    elif not isinstance(code, int):
        click.echo(str(code), err=True)
        code = EXIT_ERROR
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
