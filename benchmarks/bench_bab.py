"""ReLU splitting on mnist_fc: with and without LP/MILP refinement of the root's
intermediate bounds (verifier.search.bab.LP_SHARE = 0 turns it off).

Runs each chosen row in-process with ``verify`` (same timeout for both
settings, back to back), compares with expected.csv and prints per setting:
solved / wrong / median seconds, and per row the answer, seconds, the
sub-problems bounded and the root bound before/after refinement.

    VERIFIER_SHARED=/work/shared PYTHONPATH=. python benchmarks/bench_bab.py \
        [--timeout 20] [--rows 256x2:9:0.05,256x2:11:0.05]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import require  # noqa: E402

from verifier.search import bab  # noqa: E402
from verifier.verify import Options, verify  # noqa: E402

DEFAULT_ROWS = ",".join(f"256x2:{p}:0.05" for p in (9, 10, 11, 13, 14))


def expected_answers(folder):
    with open(folder / "expected.csv") as f:
        return {(r[0], r[1]): r[2] for r in csv.reader(f) if r}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help="comma-separated NET:PROP:EPS, e.g. 256x4:3:0.03")
    parser.add_argument("--share", type=float, default=0.2, help="LP_SHARE when on")
    args = parser.parse_args()
    folder = require("vnncomp", "mnist_fc")
    expected = expected_answers(folder)
    rows = []
    for item in args.rows.split(","):
        net, prop, eps = item.split(":")
        rows.append((f"onnx/mnist-net_{net}.onnx", f"vnnlib/prop_{prop}_{eps}.vnnlib"))
    summary = {}
    for onnx, vnnlib in rows:
        for label, share in (("off", 0.0), ("on", args.share)):
            bab.LP_SHARE = share
            tick = time.monotonic()
            result = verify(folder / onnx, folder / vnnlib, Options(timeout=args.timeout))
            seconds = time.monotonic() - tick
            answer = result.verdict.value
            want = expected.get((onnx, vnnlib), "?")
            wrong = answer in ("sat", "unsat") and want in ("sat", "unsat") and answer != want
            lp = result.stats.get("lp_refine", {})
            root = (f"root {lp['root_before']:.4g} -> {lp['root_after']:.4g} "
                    f"({lp['lps']} LPs, {lp['seconds']:.1f} s)" if lp else "")
            print(f"{Path(onnx).stem[10:]:7s} {Path(vnnlib).stem:14s} LP {label:3s} "
                  f"{answer:8s} (expected {want:5s}) {seconds:6.1f} s "
                  f"{result.stats.get('domains', 0):6d} sub-problems {root}"
                  + ("  WRONG" if wrong else ""), flush=True)
            s = summary.setdefault(label, {"solved": 0, "wrong": 0, "times": []})
            s["solved"] += answer == want
            s["wrong"] += wrong
            s["times"].append(seconds)
    for label, s in summary.items():
        print(f"LP {label:3s}: solved {s['solved']}/{len(rows)}, wrong {s['wrong']}, "
              f"median {statistics.median(s['times']):.1f} s")
    return 1 if any(s["wrong"] for s in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
