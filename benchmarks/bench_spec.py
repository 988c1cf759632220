"""Parse time of every shared VNN-LIB property and of a generated large one.

    python benchmarks/bench_spec.py [--repeats 5] [--lines 100000]

Prints, per property file under ../shared/vnncomp, the median wall time of
`load_property` (file read and decompression included) over the repeats,
then the median for a generated property of `--lines` lines (many inputs with
box bounds, plus an output disjunction with linear terms). Targets: the
largest shared file < 20 ms, the generated 100 000-line property < 1 s.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shared_data import shared_root  # noqa: E402

from verifier.spec import load_property, parse_vnnlib, summarize  # noqa: E402


def generate(lines: int, seed: int = 0, n_outputs: int = 10) -> str:
    """A VNN-LIB 1.0 property of about ``lines`` lines.

    Nine tenths are input declarations and bounds, one line each, the rest
    the disjuncts of one output ``or``, each two rows with linear terms.
    """
    rng = random.Random(seed)
    n_inputs = (lines * 9 // 10) // 3
    n_disjuncts = max(1, lines - 3 * n_inputs - n_outputs - 2)
    out = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    out += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    for i in range(n_inputs):
        center = rng.uniform(-1.0, 1.0)
        out.append(f"(assert (<= X_{i} {center + 0.01!r}))")
        out.append(f"(assert (>= X_{i} {center - 0.01!r}))")
    out.append("(assert (or")
    for _ in range(n_disjuncts):
        a, b, c, e = rng.sample(range(n_outputs), 4)
        out.append(f"    (and (<= Y_{a} Y_{b}) "
                   f"(>= (+ Y_{c} (* {rng.uniform(-2, 2)!r} Y_{e}) (- 0.5)) {rng.uniform(-1, 1)!r}))")
    out.append("))")
    return "\n".join(out) + "\n"


def median(func, repeats: int) -> float:
    return statistics.median(timeit.repeat(func, number=1, repeat=repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()

    shared = shared_root() / "vnncomp"
    files = sorted(p for p in shared.glob("*/**/*.vnnlib*")
                   if p.name.endswith((".vnnlib", ".vnnlib.gz")))
    if not files:
        print(f"no property files under {shared} (set VERIFIER_SHARED to time the shared "
              "properties); timing the generated property only")
    worst = (0.0, None)
    for path in files:
        seconds = median(lambda: load_property(path), args.repeats)
        worst = max(worst, (seconds, path), key=lambda item: item[0])
        print(f"{seconds * 1e3:8.2f} ms  {path.stat().st_size / 1024:7.1f} KiB  "
              f"{path.relative_to(shared)}")
    if files:
        largest = max(files, key=lambda p: p.stat().st_size)
        print(f"\n{len(files)} files; slowest {worst[0] * 1e3:.2f} ms "
              f"({worst[1].relative_to(shared)}); largest "
              f"({largest.relative_to(shared)}, {largest.stat().st_size / 1024:.0f} KiB) "
              f"{median(lambda: load_property(largest), args.repeats) * 1e3:.2f} ms "
              "(target < 20 ms)")

    text = generate(args.lines)
    seconds = median(lambda: parse_vnnlib(text), args.repeats)
    info = summarize(parse_vnnlib(text))
    print(f"\ngenerated property: {text.count(chr(10))} lines, {len(text) / 1e6:.1f} MB, "
          f"{info['inputs']} inputs, {info['disjuncts']} disjuncts, {info['rows']} rows: "
          f"{seconds * 1e3:.1f} ms (target < 1000 ms)")


if __name__ == "__main__":
    main()
