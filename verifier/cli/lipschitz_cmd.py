"""``verifier lipschitz MODEL [DATA]``: Lipschitz bounds and certified radii."""
from __future__ import annotations

import json
import time

import click

from verifier.cli import handle_errors, parse_radii

_MATRIX_CLASSES = 16  # print the margin matrix up to this many classes


def _global_text(model, bound) -> str:
    import numpy as np

    k = len(bound.logit)
    lines = [f"model     {model}",
             f"norm      {bound.norm} (input); global Lipschitz bounds, certified upper bounds",
             "logits    " + " ".join(f"L(f_{j})={v:.6g}" for j, v in enumerate(bound.logit))]
    if k > 1:
        off = bound.margin[~np.eye(k, dtype=bool)]
        lines.append(f"margins   L(f_y - f_j): max {off.max():.6g}, min {off.min():.6g}")
        if k <= _MATRIX_CLASSES:
            lines.append("          y\\j " + " ".join(f"{j:>9}" for j in range(k)))
            for y in range(k):
                lines.append(f"          {y:<3} " + " ".join(f"{v:9.4g}" for v in bound.margin[y]))
    return "\n".join(lines)


def _global_dict(bound) -> dict:
    return {"norm": bound.norm, "logit": bound.logit.tolist(), "margin": bound.margin.tolist()}


def _summary_line(summary, norm, local, seconds) -> str:
    how = f"local on balls of radius {local:g} (and global)" if local is not None else "global"
    cells = [f"r={radius:g}: {accuracy:.3f}" for radius, accuracy in summary.certified]
    return (f"certified accuracy ({norm}, {how}) over {summary.count} inputs: clean "
            f"{summary.clean_accuracy:.3f}; " + ", ".join(cells) + f"; {seconds:.2f} s")


def _write(out, text):
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        from verifier.errors import InputFileError

        raise InputFileError(f"cannot write {out}: {exc.strerror}") from None


@click.command(help="Bound the Lipschitz constant of every logit and every margin f_y - f_j of "
                    "MODEL (certified upper bounds, in the input norm --norm). With DATA (.npz, "
                    "CSV or VNN-LIB robustness property, as for `verifier smooth`), certify "
                    "each input: the radius r = min_j (f_y - f_j)(x) / L_j within which the "
                    "class cannot change (0 when misclassified). --local EPS also bounds the "
                    "constants on the ball of radius EPS around each input from the bound "
                    "engine's pre-activation bounds; that radius is min(EPS, m / L_local), "
                    "and the larger of it and the global radius is reported. Radii are in the "
                    "model's input units. Writes a TSV (idx label predict margin lipschitz "
                    "radius correct) and a summary (certified accuracy at --radii).")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(), required=False)
@click.option("--norm", type=click.Choice(["l2", "linf"]), default="l2", show_default=True,
              help="Input norm of the constants and radii.")
@click.option("--local", "local", type=click.FloatRange(min=0), default=None, metavar="EPS",
              help="Also compute local constants on balls of radius EPS.")
@click.option("--method", type=click.Choice(["ibp", "crown", "alpha-crown"]), default="crown",
              show_default=True, help="Pre-activation bounds of the local constants.")
@click.option("--radii", default="0.1,0.25,0.5", show_default=True, callback=parse_radii,
              help="Radii of the certified-accuracy summary.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the TSV (or JSON) here instead of stdout.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Use only the first LIMIT inputs.")
@click.option("--scale", type=float, default=None,
              help="CSV only: multiply the values by this (default 1/255).")
@click.option("--csv-layout", type=click.Choice(["hwc", "chw"]), default="hwc",
              show_default=True, help="CSV only: value order (see `verifier smooth`).")
@handle_errors
def lipschitz(model, data, norm, local, method, radii, as_json, out, limit, scale, csv_layout):
    from verifier.frontend import load_model
    from verifier.lipschitz import HEADER, certify, global_lipschitz
    from verifier.smoothing import Summary, load_dataset

    start = time.perf_counter()
    graph = load_model(model)
    bound = global_lipschitz(graph, norm)
    if data is None:
        text = (json.dumps({"model": str(model), **_global_dict(bound)}, indent=2) if as_json
                else _global_text(model, bound))
        _write(out, text + "\n")
        return
    classes = max(2, graph.output_size)
    dataset = load_dataset(data, graph.input_shape[1:] if graph.input_shape[0] == 1
                           else graph.input_shape, num_classes=classes, scale=scale,
                           layout=csv_layout)
    x, y = dataset.x[:limit], dataset.y[:limit]
    if len(x) == 0:
        from verifier.errors import DataError

        raise DataError(f"{dataset.source}: no inputs to certify")
    results = certify(graph, x, y, norm, local_eps=local, method=method, global_bound=bound)
    summary = Summary.of(results, radii)
    seconds = time.perf_counter() - start
    line = _summary_line(summary, norm, local, seconds)
    if as_json:
        payload = {"model": str(model), "data": dataset.source, "local": local,
                   "method": method if local is not None else None,
                   "global": _global_dict(bound),
                   "summary": {"count": summary.count, "clean_accuracy": summary.clean_accuracy,
                               "certified": [{"radius": r, "accuracy": a}
                                             for r, a in summary.certified],
                               "seconds": seconds},
                   "inputs": [dict(idx=i, **c.to_dict()) for i, c in enumerate(results)]}
        _write(out, json.dumps(payload, indent=2) + "\n")
        return
    _write(out, "\n".join([HEADER] + [c.row(i) for i, c in enumerate(results)]) + "\n")
    click.echo(line, err=out is None)

