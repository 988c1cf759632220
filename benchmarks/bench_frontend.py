"""Load time of every shared benchmark network and `verifier --help` start-up.

    python benchmarks/bench_frontend.py [--repeats 7]

Prints, per network, the median wall time of `load_model` (in a warm process:
the one-off import of onnx is reported separately), and the median wall time
of a fresh `verifier --help` process. Targets: an acasxu network < 50 ms,
`--help` < 0.3 s.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from shared_data import require  # noqa: E402


def median_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    start = time.perf_counter()
    import onnx  # noqa: F401

    from verifier.frontend import load_model
    print(f"import onnx + verifier.frontend: {(time.perf_counter() - start) * 1000:.0f} ms (once per process)")

    shared = require("vnncomp")
    paths = sorted(shared.glob("*/*/*.onnx"))
    if not paths:
        print(f"error: no networks under {shared}; nothing to time", file=sys.stderr)
        sys.exit(2)
    per_benchmark = {}
    for path in paths:
        seconds = median_time(lambda: load_model(path), args.repeats)
        per_benchmark.setdefault(path.parts[-3], []).append(seconds)
        print(f"{path.parts[-3]:>9}/{path.name:<40} {seconds * 1000:8.2f} ms")
    for bench, times in per_benchmark.items():
        print(f"{bench:>9}: {len(times)} networks, median {statistics.median(times) * 1000:.2f} ms, "
              f"max {max(times) * 1000:.2f} ms")

    def help_run():
        subprocess.run([sys.executable, "-m", "verifier", "--help"], check=True,
                       capture_output=True)

    baseline = median_time(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
                           args.repeats)
    seconds = median_time(help_run, args.repeats)
    print(f"verifier --help: {seconds * 1000:.0f} ms median "
          f"(bare python start-up {baseline * 1000:.0f} ms in the same run)")


if __name__ == "__main__":
    main()
