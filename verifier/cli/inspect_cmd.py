"""``verifier inspect``."""
from __future__ import annotations

import json
import sys

import click

from verifier.cli import EXIT_ERROR, Command, InputFile, handle_errors


@click.command(cls=Command)
@click.argument("model", type=InputFile("model"))
@click.option("--samples", default=8, show_default=True,
              help="Random inputs for the IR-vs-onnxruntime self-check (0 skips it).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def inspect(model, samples, seed, as_json):
    """Load MODEL (.onnx or .onnx.gz), show its layer IR, and check that the IR
    evaluates it as onnxruntime does (max relative error <= 1e-5).

    Exit 0 when the model is supported and consistent, 2 otherwise.
    """
    import onnx  # noqa: F401 - imported here so that "loaded in" times the model only
    from verifier.inspect import SELF_CHECK_TOLERANCE, inspect_model

    report = inspect_model(model, samples=samples, seed=seed)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(f"model      {report.path}  (opset {report.opset})")
        click.echo(f"input      {report.input_name}  {report.input_shape}")
        click.echo(f"output     {report.output_name}  {report.output_shape}")
        click.echo(f"parameters {report.parameters:,}")
        click.echo(f"loaded in  {report.load_seconds * 1000:.1f} ms, "
                   f"{len(report.layers)} IR layers:")
        for layer in report.layers:
            inputs = ",".join(str(i) for i in layer.inputs) or "-"
            click.echo(f"  {layer.index:>4}  {layer.op:<14} <- {inputs:<8} "
                       f"{str(layer.shape):<18} {layer.detail}")
        if report.max_relative_error is not None:
            verdict = "ok" if report.consistent else "MISMATCH"
            click.echo(f"self-check {report.samples} random inputs vs onnxruntime "
                       f"({report.provider}): max relative error "
                       f"{report.max_relative_error:.2e} [{verdict}]")
    if report.max_relative_error is not None and not report.consistent:
        click.echo(f"error: the IR disagrees with onnxruntime on {report.path}: max relative "
                   f"error {report.max_relative_error:.2e} > {SELF_CHECK_TOLERANCE:g}",
                   err=True)
        sys.exit(EXIT_ERROR)
