"""Command-line interface: a thin click layer over the library.

This package is the only place that touches argv, stdout and exit codes.
Sub-commands live in their own modules and are imported lazily, so that
``verifier --help`` does not pay for numpy, onnx or onnxruntime.

Exit codes (shared by every command):
    0  success / ``unsat`` (the property holds)
    1  ``sat`` (a counterexample was found)
    2  error: bad input or usage
    3  ``unknown`` or ``timeout``
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys

# One BLAS thread per process unless the user says otherwise (set before numpy
# is imported): the bound engines run many small products between Python
# steps, and on small machines a second BLAS thread contending with the
# process (or with a second instance of `verifier run --jobs 2`) made one
# alpha-CROWN call 25x slower here. onnxruntime's own threads are unaffected.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import click  # noqa: E402

EXIT_OK = 0
EXIT_SAT = 1
EXIT_ERROR = 2
EXIT_UNKNOWN = 3

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


def handle_errors(func):
    """Turn library errors into a one-paragraph message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from verifier.errors import VerifierError

        try:
            return func(*args, **kwargs)
        except VerifierError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="verifier")
def main():
    """verifier: prove or refute properties of neural networks exported to ONNX.

    Exit codes: 0 unsat / success, 1 sat, 2 error, 3 unknown or timeout.
    """
