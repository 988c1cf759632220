"""Long-running differential fuzzing of the verifier.

    python benchmarks/fuzz.py --cases N --seed S [--ops Conv --ops MaxPool ...]
                              [--out DIR] [--timeout SECONDS]

Generates N random ONNX networks (seeds S, S+1, ...; tests/fuzz/generator.py)
and checks each against onnxruntime (tests/fuzz/oracle.py): the IR, IBP,
CROWN, alpha-CROWN and the forward symbolic bounds, and ``verify`` (an
``unsat`` answer is attacked in float32). Prints one progress line every
``--every`` cases, and at the end the op coverage counts, the verdicts and
the failures grouped by kind and by traced cause: a known bug class (at
commit 7a3fb1e) or NEW. With ``--out``, each failing case is saved to
``DIR/seed<k>/`` (model.onnx, prop.vnnlib, failure.txt); reproduce one with
``verifier verify DIR/seed<k>/model.onnx DIR/seed<k>/prop.vnnlib``.

Exit status: 0 when no case failed, 1 otherwise (2 on bad arguments).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from tests.fuzz import generator, oracle  # noqa: E402


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100, help="networks to check")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--ops", action="append", default=[],
                        help="only steps that emit this ONNX op (repeatable)")
    parser.add_argument("--out", type=Path, help="save failing cases to this folder")
    parser.add_argument("--timeout", type=float, default=2.0, help="verify's time limit")
    parser.add_argument("--every", type=int, default=25, help="progress line period")
    parser.add_argument("--no-diagnose", action="store_true",
                        help="do not trace failures to known bug classes (faster)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.ops) - set(generator.OPS))
    if unknown:
        parser.error(f"--ops {', '.join(unknown)}: not generated; choose from "
                     f"{', '.join(generator.OPS)}")
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    return args


def main(argv=None) -> int:
    args = _arguments(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN bounds are reported as failures
    ops, patterns, verdicts, kinds, causes = Counter(), Counter(), Counter(), Counter(), Counter()
    failed, rejected = [], 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        for k, seed in enumerate(range(args.seed, args.seed + args.cases), start=1):
            case = generator.generate(seed, args.ops or None)
            ops.update(case.ops)
            patterns.update(case.patterns)
            outcome = oracle.check(case, work, verify_timeout=args.timeout)
            verdicts[outcome.verdict or ("rejected" if outcome.rejected else "-")] += 1
            rejected += bool(outcome.rejected)
            if not outcome.ok:
                if args.no_diagnose:
                    cause = "not traced"
                else:
                    traced = oracle.diagnose(outcome, work)
                    cause = " + ".join(traced) if traced and "unexplained" not in traced \
                        else "NEW"
                kinds.update(f.kind for f in outcome.failures)
                causes[cause] += 1
                if args.out:
                    folder = args.out / f"seed{seed}"
                    oracle.save(outcome, folder)
                    (folder / "failure.txt").write_text(
                        f"{outcome.describe()}\ncause: {cause}\n")
                failed.append(seed)
                print(f"FAIL [{cause}] {outcome.describe()}", flush=True)
            if k % args.every == 0 or k == args.cases:
                rate = k / (time.monotonic() - start)
                print(f"[{time.monotonic() - start:8.1f}s] {k}/{args.cases} cases "
                      f"({rate:.2f}/s), {len(failed)} failing, {rejected} rejected", flush=True)
    print(f"\nop coverage ({len(ops)} of {len(generator.OPS)} ops):")
    for name in generator.OPS:
        print(f"  {name:<20} {ops[name]}")
    print("patterns: " + ", ".join(f"{p} {n}" for p, n in patterns.most_common()))
    print("verify answers: " + ", ".join(f"{v} {n}" for v, n in verdicts.most_common()))
    print(f"failing cases: {len(failed)} of {args.cases}")
    for kind, n in kinds.most_common():
        print(f"  kind  {kind:<28} {n}")
    for cause, n in causes.most_common():
        print(f"  cause {cause:<60} {n}")
    if failed:
        print("failing seeds: " + " ".join(map(str, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
