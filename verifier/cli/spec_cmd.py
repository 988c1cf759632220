"""`verifier spec PROPERTY`: parse a VNN-LIB property and summarise it."""
from __future__ import annotations

import json

import click

from verifier.cli import Command, InputFile, handle_errors


def _render(info: dict) -> str:
    label = info["robustness_label"]
    per_region = sorted(set(info["disjuncts_per_region"]))
    if info["input_regions"] == 1:
        split = ""
    elif len(per_region) == 1:
        split = f" ({per_region[0]} per region)"
    else:
        split = f" ({', '.join(map(str, info['disjuncts_per_region']))} by region)"
    lines = [
        f"property:          {info['path']}",
        f"inputs:            {info['inputs']}",
        f"outputs:           {info['outputs']}",
        f"input regions:     {info['input_regions']}"
        + (f" (+{info['input_constraints']} linear input constraints)"
           if info["input_constraints"] else ""),
        f"unsafe disjuncts:  {info['disjuncts']}{split}",
        f"output rows:       {info['rows']}"
        + (f" ({info['strict_rows']} strict)" if info["strict_rows"] else ""),
        f"box widths:        min {info['box_width_min']:.6g}, max {info['box_width_max']:.6g}",
    ]
    if label is not None:
        lines.append(f"robustness label:  {label} (unsafe iff some Y_k >= Y_{label})")
    return "\n".join(lines)


@click.command(cls=Command,
               help="Parse a VNN-LIB property (1.0 or 2.0, .vnnlib or .vnnlib.gz) and "
                    "summarise it: inputs, outputs, input regions, unsafe disjuncts, rows "
                    "and the range of the input box widths.")
@click.argument("property_path", metavar="PROPERTY", type=InputFile("property"))
@click.option("--max-disjuncts", type=click.IntRange(min=1),
              help="Refuse properties with more unsafe disjuncts than this "
                   "(default: the reader's limit, 100000).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def spec(property_path: str, max_disjuncts: int | None, as_json: bool) -> None:
    from verifier.spec import load_property, summarize

    limit = {} if max_disjuncts is None else {"max_disjuncts": max_disjuncts}
    info = summarize(load_property(property_path, **limit))
    click.echo(json.dumps(info, indent=2) if as_json else _render(info))
