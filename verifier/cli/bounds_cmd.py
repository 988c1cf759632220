"""``verifier bounds MODEL PROPERTY``: bounds of every unsafe row and output."""
from __future__ import annotations

import json

import click

from verifier.cli import Command, FiniteFloat, InputFile, entry_time, handle_errors


def _interval(lower, upper) -> str:
    return f"[{lower:.6g}, {upper:.6g}]"


def _render(model, prop_path, report, max_outputs=32) -> str:
    lines = [f"model     {model}", f"property  {prop_path}",
             f"method    {report.method} ({report.seconds:.3f} s); a row C·y - d is refuted "
             f"when its lower bound is > its float32 margin"
             + (f" (here at most {report.margins.max():.3g})" if report.margins.size else "")]
    for c, case in enumerate(report.cases):
        lines.append(f"input region {c + 1}/{len(report.cases)}"
                     + (f" (its {case.ignored_input_constraints} linear input constraints are "
                        f"not used: bounds are over the box)"
                        if case.ignored_input_constraints else ""))
        lines.append("  outputs:")
        shown = min(len(case.output_lower), max_outputs)
        for j in range(shown):
            lines.append(f"    Y_{j:<4} {_interval(case.output_lower[j], case.output_upper[j])}")
        if shown < len(case.output_lower):
            lines.append(f"    ... {len(case.output_lower) - shown} more (see --json)")
        lines.append("  unsafe disjuncts (C·y <= d):")
        for k, disjunct in enumerate(case.disjuncts):
            if disjunct.lower.size == 0:
                lines.append(f"    #{k:<4} no output constraint: every output is unsafe "
                             "(nothing to refute)")
                continue
            status = "refuted    " if disjunct.refuted else "NOT refuted"
            for r in range(disjunct.lower.size):
                head = f"    #{k:<4} {status}" if r == 0 else " " * 22
                mark = "  <- refutes" if r == disjunct.refuting_row else ""
                lines.append(f"{head} row {r}: C·y - d in "
                             f"{_interval(disjunct.lower[r], disjunct.upper[r])}{mark}")
    total = sum(len(case.disjuncts) for case in report.cases)
    done = sum(d.refuted for case in report.cases for d in case.disjuncts)
    verdict = ("the property holds (every unsafe disjunct refuted)" if report.proved
               else f"not proved by {report.method} alone")
    if report.unconstrained:
        lines.append("summary   the property has no output constraint (every output is unsafe, "
                     "nothing to refute): any input of its input region violates it")
    else:
        lines.append(f"summary   {done}/{total} disjuncts refuted; {verdict}")
    return "\n".join(lines)


@click.command(cls=Command,
               help="Bound, for each input region of PROPERTY, every output of MODEL and every "
                    "unsafe row C·y - d, by IBP, CROWN or alpha-CROWN, and say which unsafe "
                    "disjuncts the bounds already refute. Exit 0 (2 on errors) whether or not "
                    "the property is proved.")
@click.argument("model", type=InputFile("model"))
@click.argument("property_path", metavar="PROPERTY", type=InputFile("property"))
@click.option("--method", type=click.Choice(["ibp", "crown", "alpha-crown"]), default="crown",
              show_default=True, help="Bound propagation method.")
@click.option("--timeout", type=FiniteFloat(min=0, min_open=True),
              help="Seconds (from the start of the process) after which the bound "
                   "computation stops tightening and reports the sound bounds reached.")
@click.option("--max-disjuncts", type=click.IntRange(min=1),
              help="Refuse properties with more unsafe disjuncts than this "
                   "(default: the reader's limit, 100000).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def bounds(model, property_path, method, timeout, max_disjuncts, as_json):
    from verifier.bounds.report import bound_property
    from verifier.bounds.result import BoundOptions
    from verifier.crosscheck import check_lowering
    from verifier.frontend import load_model, read_model_proto
    from verifier.spec import load_property

    proto = read_model_proto(model)
    graph = load_model(proto, name=model)
    limit = {} if max_disjuncts is None else {"max_disjuncts": max_disjuncts}
    prop = load_property(property_path, **limit)
    prop.check_sizes(graph.input_size, graph.output_size, model=f"model {model}")
    check_lowering(graph, proto, prop, where=model)  # bounds of the model, not of a wrong IR
    options = BoundOptions(deadline=None if timeout is None else entry_time() + timeout)
    report = bound_property(graph, prop, method=method, options=options)
    if as_json:
        data = {"model": str(model), "property": str(property_path)}
        data.update(report.to_dict())
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(_render(model, property_path, report))
