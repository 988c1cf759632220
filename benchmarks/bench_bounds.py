"""Benchmark of the bound engines on real VNN-COMP networks and properties.

For each mnist_fc network and one oval21 and two eran networks (ReLU and
sigmoid), on the first property of that network in ``instances.csv``: the
time of IBP, CROWN and alpha-CROWN and the bound on the worst unsafe
disjunct (min over disjuncts of the best row's lower bound of ``C·y - d``
minus that row's float32 decision margin; the property is proved when it is
above 0). Then the number
of mnist_fc properties at eps = 0.03 that each method alone proves (the
incomplete verification rate), checked against ``expected.csv`` (a "proof" of
an instance known to be sat would be a soundness bug and aborts the run).

Usage: python benchmarks/bench_bounds.py [--shared DIR] [--skip-count]

BLAS threads: OpenBLAS's own threading makes these small matrix products many
times slower on a loaded 2-core machine (measured here: 1.5 s instead of
0.06 s for one alpha-CROWN call on mnist 256x4), so this script asks for one
thread unless OPENBLAS_NUM_THREADS is already set.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from verifier.bounds import METHODS, BoundOptions  # noqa: E402
from verifier.bounds.report import bound_property  # noqa: E402
from verifier.frontend import load_model  # noqa: E402
from verifier.spec import load_property  # noqa: E402
from shared_data import shared_root  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def instances(folder: Path):
    with open(folder / "instances.csv") as handle:
        return [(folder / row[0], folder / row[1]) for row in csv.reader(handle) if row]


def expected(folder: Path) -> dict:
    path = folder / "expected.csv"
    if not path.exists():
        return {}
    with open(path) as handle:
        return {(row["onnx"], row["vnnlib"]): row["expected"] for row in csv.DictReader(handle)}


def timed(graph, prop, method, options, repeat=2):
    """Best of ``repeat`` runs (the first pays the per-graph preprocessing)."""
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        report = bound_property(graph, prop, method=method, options=options)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
    return best, report


def per_network(shared: Path, options):
    picks = []
    mnist = shared / "mnist_fc"
    for net in ("mnist-net_256x2", "mnist-net_256x4", "mnist-net_256x6"):
        picks.append(("mnist_fc", next(i for i in instances(mnist) if i[0].stem == net)))
    picks.append(("oval21", instances(shared / "oval21")[0]))
    eran = instances(shared / "eran")
    picks.append(("eran", next(i for i in eran if "relu" in i[0].stem)))
    picks.append(("eran", next(i for i in eran if "SIGMOID" in i[0].stem)))
    print(f"{'benchmark':<9} {'network':<26} {'property':<44} {'method':<12} "
          f"{'time s':>8} {'worst disjunct':>15}  proved")
    for bench, (onnx_path, prop_path) in picks:
        graph = load_model(onnx_path)
        prop = load_property(prop_path)
        for method in METHODS:
            seconds, report = timed(graph, prop, method, options)
            print(f"{bench:<9} {onnx_path.stem:<26} {prop_path.name[:44]:<44} {method:<12} "
                  f"{seconds:>8.3f} {report.worst_margin:>15.5f}  "
                  f"{'yes' if report.proved else 'no'}", flush=True)


def mnist_count(shared: Path, options):
    folder = shared / "mnist_fc"
    truth = expected(folder)
    chosen = [i for i in instances(folder) if i[1].name.endswith("_0.03.vnnlib")]
    graphs = {}
    counts = {m: 0 for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    for onnx_path, prop_path in chosen:
        graph = graphs.get(onnx_path) or graphs.setdefault(onnx_path, load_model(onnx_path))
        prop = load_property(prop_path)
        key = (str(onnx_path.relative_to(folder)), str(prop_path.relative_to(folder)))
        for method in METHODS:
            start = time.perf_counter()
            report = bound_property(graph, prop, method=method, options=options)
            seconds[method] += time.perf_counter() - start
            if report.proved:
                if truth.get(key) == "sat":
                    sys.exit(f"SOUNDNESS BUG: {method} proves {key}, which is sat")
                counts[method] += 1
    n_unsat = sum(truth.get((str(o.relative_to(folder)), str(p.relative_to(folder)))) == "unsat"
                  for o, p in chosen)
    print(f"\nmnist_fc, eps = 0.03: {len(chosen)} properties ({n_unsat} known unsat); "
          f"proved by each method alone (per-row float32 margins):")
    for method in METHODS:
        print(f"  {method:<12} {counts[method]:>3} / {len(chosen)}   "
              f"total {seconds[method]:7.2f} s, mean {seconds[method] / len(chosen):.3f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=shared_root() / "vnncomp",
                        help="the vnncomp benchmark folder (default: $VERIFIER_SHARED/vnncomp "
                             "or ../shared/vnncomp)")
    parser.add_argument("--skip-count", action="store_true",
                        help="only the per-network table")
    parser.add_argument("--alpha-iterations", type=int, default=BoundOptions().alpha_iterations)
    args = parser.parse_args(argv)
    if not args.shared.exists():
        print(f"error: {args.shared} does not exist (the benchmark needs the shared VNN-COMP "
              "data; set VERIFIER_SHARED or pass --shared)", file=sys.stderr)
        sys.exit(2)
    options = BoundOptions(alpha_iterations=args.alpha_iterations)
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"alpha iterations {options.alpha_iterations}\n")
    per_network(args.shared, options)
    if not args.skip_count:
        mnist_count(args.shared, options)


if __name__ == "__main__":
    main()
