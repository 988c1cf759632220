"""``verifier report`` (robustness over a data set) and ``verifier gen-specs`` (VNN-LIB from data)."""
from __future__ import annotations

import json
import math
import sys

import click
import numpy as np

from verifier.cli import FiniteFloat, handle_errors, parse_radii

METHOD_NAMES = ("ibp", "naive-ibp", "crown", "crown+ibp", "alpha-crown", "lipschitz", "pgd",
                "complete")
#: the default columns (lipschitz is asked for by name: it has no rule for Softmax)
DEFAULT_METHODS = ("ibp", "naive-ibp", "crown", "alpha-crown", "pgd", "complete")


def _numbers(value: str, what: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers for {what}") from None
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise click.BadParameter(f"{what} must be finite numbers")
    return numbers


def _parse_eps(ctx, param, value):
    eps = _numbers(value, "eps")
    if any(e < 0 for e in eps):
        raise click.BadParameter("eps must be non-negative")
    return eps


def _parse_clip(ctx, param, value):
    if value is None or value.lower() == "none":
        return None
    bounds = _numbers(value, "clip")
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise click.BadParameter("expected LO,HI with LO < HI, e.g. 0,1")
    return bounds


def _parse_methods(ctx, param, value):
    methods = tuple(m.strip() for m in value.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise click.BadParameter(f"unknown method(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {', '.join(METHOD_NAMES)}")
    return methods


def _parse_indices(ctx, param, value):
    if value is None:
        return None
    chosen = []
    try:
        for part in value.split(","):
            if "-" in part.strip()[1:]:
                first, last = part.split("-", 1)
                chosen += range(int(first), int(last) + 1)
            elif part.strip():
                chosen.append(int(part))
    except ValueError:
        raise click.BadParameter("expected indices such as 0,3,10-19") from None
    if any(i < 0 for i in chosen):
        raise click.BadParameter("indices must be non-negative")
    return chosen


class StageProgress:
    """Running counts per stage: one live line on a terminal; otherwise a plain line at
    every tenth of a per-image stage (complete, smoothing) and one per batched stage."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, stage: str, done: int, total: int) -> None:
        per_image = stage.endswith("images done")
        if self.tty:
            self.stream.write(f"\r{stage}: {done}/{total}\033[K")
            if not per_image or done >= total:
                self.stream.write("\n")
        elif not per_image or done >= total or (10 * done // max(total, 1)
                                                 > 10 * (done - 1) // max(total, 1)):
            self.stream.write(f"progress: {stage}: {done}/{total}\n")
        self.stream.flush()


def _load(model, data, scale, csv_layout):
    from verifier.runtime import open_session
    from verifier.smoothing import load_dataset

    session = open_session(model, device="cpu")
    probe = np.zeros((1,) + tuple(session.input_shape), session.input.dtype)
    num_classes = int(session.run(probe).size)
    dataset = load_dataset(data, session.input_shape, num_classes=num_classes, scale=scale,
                           layout=csv_layout)
    for message in dataset.warnings:
        click.echo(f"warning: {message}", err=True)
    return session, num_classes, dataset


def _select(dataset, indices, skip, limit):
    chosen = list(range(0, len(dataset), skip)) if indices is None else indices
    from verifier.errors import DataError

    bad = [i for i in chosen if i >= len(dataset)]
    if bad:
        raise DataError(f"{dataset.source} has {len(dataset)} inputs; index {bad[0]} does "
                        f"not exist")
    return chosen[:limit]


def _data_options(func):
    options = [
        click.argument("model", type=click.Path(dir_okay=False)),
        click.argument("data", type=click.Path()),
        click.option("--clip", default=None, callback=_parse_clip,
                     help="Data domain LO,HI intersected with every eps-ball (e.g. 0,1 for "
                          "image pixels in [0,1]); default none."),
        click.option("--indices", default=None, callback=_parse_indices,
                     help="Images to use, e.g. 0,3,10-19 (default: all)."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first LIMIT selected images."),
        click.option("--scale", type=FiniteFloat(), default=None,
                     help="CSV only: multiply the values by this (default 1/255)."),
        click.option("--csv-layout", type=click.Choice(["hwc", "chw"]), default="hwc",
                     show_default=True, help="CSV only: value order (see smooth --help)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@_data_options
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
@click.option("--eps", default="0.01,0.02,0.05,0.1", show_default=True, callback=_parse_eps,
              help="Budgets (model input units), comma-separated.")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              callback=_parse_methods, help="Methods, comma-separated.")
@click.option("--timeout-per-image", type=FiniteFloat(min=0, min_open=True),
              default=10.0, show_default=True,
              help="Seconds of the complete verifier per open image.")
@click.option("--smoothing-sigma", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Also CERTIFY the smoothed classifier at this sigma.")
@click.option("--radii", default="0,0.25,0.5,0.75,1", show_default=True,
              callback=parse_radii, help="L2 radii of the smoothing table.")
@click.option("--n", "n", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Smoothing estimation samples per image.")
@click.option("--skip", type=click.IntRange(min=1), default=1, show_default=True,
              help="Use every SKIP-th image.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write per_image.csv, summary.md, summary.csv, summary.json and the plots "
                   "(PNG, SVG) into this directory (created; its parent must exist).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@handle_errors
def report(model, data, clip, indices, limit, scale, csv_layout, norm, eps, methods,
           timeout_per_image, smoothing_sigma, radii, n, skip, seed, out, as_json):
    """Robustness of MODEL over the images of DATA: certified accuracy per eps.

    DATA is read as `verifier smooth` reads it (.npz, CSV, VNN-LIB). For each
    image and eps the input set is the eps-ball of --norm around the image,
    intersected with --clip. Bound methods certify every margin f_y - f_j > 0
    (ibp with the last layer folded into the margins; naive-ibp on separate
    logits; crown: textbook CROWN, intermediate bounds by back-substitution
    only, as published; crown+ibp: CROWN and IBP intersected at every layer,
    the larger of the two lower bounds per margin (never below ibp);
    alpha-crown;
    lipschitz: the local Lipschitz radius reaches eps, about the real-valued
    network); pgd is an attack (50 steps of eps/10, 10
    restarts, cross-entropy and margin losses): an upper bound on robust
    accuracy; complete runs falsification and branch and bound (an exact MILP
    for small ReLU MLPs) on the images the others left open (linf only). Misclassified images count as not
    robust. An image certified by a sound method and broken by an attack
    stops the command with exit 2 (a bug). With --smoothing-sigma the
    smoothed classifier's certified accuracy per L2 radius is added (and, for
    linf, at the L2 radius eps*sqrt(d) that implies linf robustness at eps).
    """
    from verifier.report import (SmoothingOptions, markdown, per_image_csv, robustness_report,
                                 summary_csv, to_json, write_plots)
    from verifier.spec.generate import prepare_out_dir

    out_dir = prepare_out_dir(out) if out is not None else None
    _, _, dataset = _load(model, data, scale, csv_layout)
    chosen = _select(dataset, indices, skip, limit)
    if norm == "l2" and "complete" in methods:
        click.echo("warning: complete runs on linf boxes only; it is left out for l2", err=True)
    smoothing = None
    if smoothing_sigma is not None:
        smoothing = SmoothingOptions(smoothing_sigma, tuple(radii), n=n)
    result = robustness_report(model, dataset, eps, norm=norm, methods=methods, clip=clip,
                               timeout_per_image=timeout_per_image, indices=chosen,
                               smoothing=smoothing, seed=seed, progress=StageProgress())
    text = markdown(result)
    summary = to_json(result)
    if out_dir is not None:
        (out_dir / "per_image.csv").write_text(per_image_csv(result), encoding="utf-8")
        (out_dir / "summary.md").write_text(text, encoding="utf-8")
        (out_dir / "summary.csv").write_text(summary_csv(result), encoding="utf-8")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                              encoding="utf-8")
        plots, reason = write_plots(result, out_dir)
        click.echo(f"wrote {out_dir}/: per_image.csv, summary.md, summary.csv, summary.json"
                   + (", " + ", ".join(p.name for p in plots) if plots else ""), err=True)
        if reason:
            click.echo(f"note: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        click.echo(text, err=True, nl=False)
    else:
        click.echo(text, nl=False)


@click.command("gen-specs")
@_data_options
@click.option("--eps", type=FiniteFloat(min=0), required=True,
              help="L-infinity budget (model input units).")
@click.option("--timeout", type=FiniteFloat(min=0, min_open=True), default=60.0,
              show_default=True, help="Timeout column of instances.csv.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Directory to write onnx/, vnnlib/ and instances.csv into.")
@handle_errors
def gen_specs(model, data, clip, indices, limit, scale, csv_layout, eps, timeout, out):
    """Write one VNN-LIB robustness property per correctly classified image of DATA.

    Each property is the box [x - eps, x + eps] (intersected with --clip) and
    the unsafe set "some class j != label has Y_j >= Y_label"; instances.csv
    lists them (onnx,vnnlib,timeout) for `verifier run` and VNN-COMP tools.
    Misclassified images are skipped (and counted).
    """
    from verifier.spec.generate import generate_specs, prepare_out_dir

    out_dir = prepare_out_dir(out)
    session, num_classes, dataset = _load(model, data, scale, csv_layout)
    chosen = _select(dataset, indices, 1, limit)
    predictions = session.run(dataset.x).reshape(len(dataset), -1).argmax(axis=1)
    written = generate_specs(model, dataset.x, dataset.y, predictions, num_classes, eps,
                             out_dir, clip=clip, indices=chosen, timeout=timeout)
    click.echo(f"wrote {len(written.properties)} properties and {written.instances}; "
               f"skipped {len(written.misclassified)} misclassified image(s)", err=True)
