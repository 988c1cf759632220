"""``verifier smooth certify`` and ``verifier smooth predict`` (randomized smoothing)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from verifier.cli import FiniteFloat, handle_errors, parse_radii, require_writable

SIGMA_HELP = ("Noise level sigma, in the model's input units (any normalisation sits "
              "inside the ONNX graph). Use the sigma the model was trained with.")


class Progress:
    """A progress bar over inputs on stderr when it is a terminal; plain lines otherwise."""

    WIDTH = 30

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.done = 0
        self._last_tenth = 0

    def clear(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def update(self, note: str = "") -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        if self.tty:
            filled = self.WIDTH * self.done // max(self.total, 1)
            eta = elapsed / self.done * (self.total - self.done)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}  {note}  "
                              f"{elapsed:.0f}s elapsed, {eta:.0f}s left\033[K")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        tenth = 10 * self.done // max(self.total, 1)
        if tenth > self._last_tenth or self.done == self.total:
            self._last_tenth = tenth
            self.stream.write(f"progress: {self.done}/{self.total} inputs, {note}, "
                              f"{elapsed:.1f} s\n")
            self.stream.flush()


def _common_options(func):
    """Options shared by certify and predict (applied bottom-up)."""
    options = [
        click.argument("model", type=click.Path(dir_okay=False)),
        click.argument("data", type=click.Path()),
        click.option("--sigma", type=FiniteFloat(min=0, min_open=True), required=True,
                     help=SIGMA_HELP),
        click.option("--batch", type=click.IntRange(min=1), default=1024, show_default=True,
                     help="Noise samples per onnxruntime call."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of every random number: the same seed gives the same results."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True,
                     help="auto: CUDA when it really loads, else CPU; the provider used is printed."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="onnxruntime intra-op threads (default: its own choice)."),
        click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
                     help="Write the per-input TSV here (default: stdout, and the summary "
                          "goes to stderr)."),
        click.option("--scale", type=FiniteFloat(), default=None,
                     help="CSV only: multiply the values by this (default 1/255, for pixels "
                          "0..255 to [0,1]; 1 keeps them)."),
        click.option("--csv-layout", type=click.Choice(["hwc", "chw"]), default="hwc",
                     show_default=True,
                     help="CSV only: hwc reads height x width x channel interleaved values (the "
                          "MNIST/CIFAR-10 test CSVs) into the model's (C,H,W); chw reads them "
                          "in the model's own order."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first LIMIT selected inputs."),
        click.option("--skip", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Use every SKIP-th input."),
        click.option("--bank-mb", type=click.IntRange(min=0), default=None,
                     help="Memory for the noise bank shared by all inputs (default: min(2048, "
                          "a quarter of free memory); 0 draws fresh noise for every input)."),
        click.option("--no-reduce", is_flag=True,
                     help="Always draw noise in input space (by default, a first Flatten->Gemm "
                          "layer with fewer outputs than inputs gets its output noise drawn "
                          "directly: exact, faster, other random numbers)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
def smooth():
    """Randomized smoothing (Cohen, Rosenfeld and Kolter 2019).

    Certifies the smoothed classifier g(x) = argmax_c P(f(x + eps) = c),
    eps ~ N(0, sigma^2 I), not the ONNX network f itself. sigma and the L2
    radii are in the model's input units.

    DATA: an .npz with x (N x input shape) and y (N labels); a CSV of label then
    values (see --scale, --csv-layout); or a VNN-LIB robustness property (the
    centre of its input box, the label it protects). Inputs must be finite;
    a noise sample whose logits are NaN or infinite is an abstaining vote
    (counted in n for no class; the number is reported).
    """


def _setup(model, data, sigma, batch, seed, device, threads, scale, csv_layout, limit,
           skip, bank_mb, no_reduce, outputs=()):
    """Check the output paths, load the model and the data (in this order)."""
    from verifier.smoothing import SmoothedClassifier, load_dataset

    for path in outputs:
        if path is not None:
            require_writable(path, "the output file")
    classifier = SmoothedClassifier(model, sigma, device=device, threads=threads, batch=batch,
                                    seed=seed, reduce=not no_reduce,
                                    bank_bytes=None if bank_mb is None else bank_mb << 20)
    dataset = load_dataset(data, classifier.input_shape, num_classes=classifier.num_classes,
                           scale=scale, layout=csv_layout)
    for message in dataset.warnings:
        click.echo(f"warning: {message}", err=True)
    indices = list(range(0, len(dataset), skip))[:limit]
    return classifier, dataset, indices


def _run(classifier, dataset, indices, header, one, row, out):
    """Run ``one(idx)`` over the inputs, streaming TSV rows; return the results."""
    handle = open(out, "w", encoding="utf-8") if out else None
    try:
        stream = handle or sys.stdout
        progress = Progress(len(indices))
        stream.write(header + "\n")
        results = []
        for idx in indices:
            result = one(idx)
            results.append(result)
            if handle is None:
                progress.clear()
            stream.write(row(idx, result) + "\n")
            stream.flush()
            correct = sum(r.correct for r in results)
            progress.update(f"{correct}/{len(results)} correct")
    finally:
        if handle is not None:
            handle.close()
    return results


def _describe(classifier, dataset, indices) -> None:
    click.echo(f"model: {classifier.describe()}", err=True)
    click.echo(f"data: {dataset.source}, {len(indices)} of {len(dataset)} inputs", err=True)


def _report_abstain_votes(results, per_input: int) -> None:
    votes = sum(r.abstain_votes for r in results)
    if votes:
        hit = sum(r.abstain_votes > 0 for r in results)
        click.echo(f"warning: {votes} of {per_input * len(results)} noise samples ({hit} "
                   f"inputs) gave NaN or infinite logits; they were counted as abstaining "
                   f"votes (for no class)", err=True)


@smooth.command()
@_common_options
@click.option("--n0", type=click.IntRange(min=1), default=100, show_default=True,
              help="Selection samples (pick the top class).")
@click.option("--n", "n", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Estimation samples (bound its probability), drawn separately.")
@click.option("--alpha", type=FiniteFloat(0, 1, min_open=True, max_open=True),
              default=0.001, show_default=True,
              help="Failure probability: each certificate holds with probability 1 - alpha.")
@click.option("--radii", default="0.25,0.5,1.0", show_default=True, callback=parse_radii,
              help="L2 radii (model input units) of the certified-accuracy columns.")
@click.option("--curve", type=click.Path(dir_okay=False), default=None,
              help="Write the certified accuracy against L2 radius (radius,certified_accuracy,"
                   "certified,inputs; radii 0, sigma/100, ... up to the largest certified "
                   "radius) as CSV here. Default with --out: OUT's name with .curve.csv.")
@handle_errors
def certify(model, data, sigma, batch, seed, device, threads, out, scale, csv_layout, limit,
            skip, bank_mb, no_reduce, n0, n, alpha, radii, curve):
    """CERTIFY each input of DATA: the smoothed class and a certified L2 radius.

    Writes a TSV (idx, label, predict, radius, correct, time; predict -1 =
    abstain, radius in the model's input units, time in seconds per input; the
    noise bank shared by all inputs is built once before them) and a summary:
    clean accuracy of the smoothed classifier, abstain rate and certified
    accuracy at each radius. The largest radius n samples can certify is
    sigma * Phi^-1(alpha^(1/n)), e.g. 3.8 sigma at n = 100000, alpha = 0.001.
    TSV radii are rounded down to 4 decimals; the tables use the exact values.
    """
    from verifier.smoothing import (CERTIFY_HEADER, Summary, certify_row, curve_rows,
                                    format_table, radius_ceiling, sample_size_warnings)

    if curve is None and out is not None:
        curve = str(Path(out).with_suffix("")) + ".curve.csv"
    classifier, dataset, indices = _setup(model, data, sigma, batch, seed, device, threads,
                                          scale, csv_layout, limit, skip, bank_mb, no_reduce,
                                          outputs=(out, curve))
    for message in sample_size_warnings(sigma, n, alpha, radii):
        click.echo(f"warning: {message}", err=True)
    classifier.noise.reserve(n0 + n)
    _describe(classifier, dataset, indices)

    def one(idx):
        return classifier.certify(dataset.x[idx], n0, n, alpha, idx=idx,
                                  label=int(dataset.y[idx]))

    results = _run(classifier, dataset, indices, CERTIFY_HEADER, one, certify_row, out)
    _report_abstain_votes(results, n0 + n)
    if curve is not None:
        Path(curve).write_text("\n".join(curve_rows(results, sigma)) + "\n", encoding="utf-8")
        click.echo(f"curve: {curve}", err=True)
    summary = Summary.of(results, radii)
    ceiling = radius_ceiling(sigma, n, alpha)
    title = (f"smoothed classifier: sigma={sigma:g} n0={n0} n={n} alpha={alpha:g} "
             f"seed={seed}; radius ceiling "
             f"{'none' if ceiling is None else f'{ceiling:.3f}'}")
    text = title + "\n" + format_table([(str(model), summary)])
    click.echo(text, err=out is None)


@smooth.command()
@_common_options
@click.option("--n", "n", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples for the prediction.")
@click.option("--alpha", type=FiniteFloat(0, 1, min_open=True, max_open=True),
              default=0.001, show_default=True,
              help="Abstain unless a binomial test separates the top two classes at this "
                   "level; a returned class is wrong with probability at most alpha.")
@handle_errors
def predict(model, data, sigma, batch, seed, device, threads, out, scale, csv_layout, limit,
            skip, bank_mb, no_reduce, n, alpha):
    """PREDICT each input of DATA with the smoothed classifier (or abstain).

    Writes a TSV (idx, label, predict, correct, time; predict -1 = abstain) and
    the accuracy and abstain rate of the smoothed classifier.
    """
    from verifier.smoothing import PREDICT_HEADER, Summary, predict_row

    classifier, dataset, indices = _setup(model, data, sigma, batch, seed, device, threads,
                                          scale, csv_layout, limit, skip, bank_mb, no_reduce,
                                          outputs=(out,))
    classifier.noise.reserve(n)
    _describe(classifier, dataset, indices)

    def one(idx):
        return classifier.predict(dataset.x[idx], n, alpha, idx=idx, label=int(dataset.y[idx]))

    results = _run(classifier, dataset, indices, PREDICT_HEADER, one, predict_row, out)
    _report_abstain_votes(results, n)
    summary = Summary.of(results, ())
    click.echo(f"smoothed prediction: sigma={sigma:g} n={n} alpha={alpha:g} seed={seed}: "
               f"accuracy {summary.clean_accuracy:.3f}, abstain {100 * summary.abstain_rate:.1f}% "
               f"over {summary.count} inputs, {summary.mean_seconds:.3f} s/input",
               err=out is None)
