"""Randomized smoothing: certify-loop throughput against raw onnxruntime, and the summary table.

    python benchmarks/bench_smoothing.py [--n 100000] [--inputs 4] [--batch 1024] [--threads 2]
    python benchmarks/bench_smoothing.py --table [--n 10000]

Throughput mode, for a mnist_fc and an oval21 network (inputs: the centres of
their first VNN-COMP properties): samples/s of the full CERTIFY loop (n0 + n
samples per input: noise, onnxruntime, argmax, bincount, statistics) against
raw onnxruntime inference of the same model at the same batch size on a fixed
random batch, measured alternately in the same run; the medians over
``--repeats`` rounds, their ratio (target >= 0.8 on CPU) and the seconds per
certificate. The noise bank is built once (its time is printed apart) and
reused, as ``verifier smooth certify`` does. mnist_fc is also run with
``reduce=False`` (noise in input space), which shows the plain path.

Table mode: CERTIFY (n0 = 100, n = 10000, alpha = 0.001, sigma = 0.25) on the
noise-trained digit models of ../shared/models with ../shared/datasets/digits_test.npz,
printed as the published table (../shared/models/README.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from shared_data import shared_root  # noqa: E402

SHARED = shared_root()  # $VERIFIER_SHARED, else ../shared
NETWORKS = [("mnist_fc", "mnist-net_256x2.onnx"), ("oval21", "cifar_base_kw.onnx")]
PUBLISHED = {  # ../shared/models/README.md, n = 10000
    "digits_mlp_rs_sigma0.25.onnx": "0.974 | 0.896 | 0.618 | 0.124 | 0.000 | 1.0%",
    "digits_cnn_rs_sigma0.25.onnx": "0.964 | 0.866 | 0.592 | 0.122 | 0.000 | 2.0%",
}


def property_centres(benchmark: str, network: str, count: int) -> list[np.ndarray]:
    from verifier.smoothing import property_point

    folder = SHARED / "vnncomp" / benchmark
    centres = []
    for line in (folder / "instances.csv").read_text().splitlines():
        onnx_path, vnnlib_path = line.split(",")[:2]
        if Path(onnx_path).name == network and len(centres) < count:
            centres.append(property_point(folder / vnnlib_path).x)
    return centres


def raw_rate(session, batch: int, samples: int) -> float:
    x = np.random.default_rng(0).random((batch,) + tuple(session.input_shape)).astype(np.float32)
    calls = max(1, samples // batch)
    start = time.perf_counter()
    for _ in range(calls):
        session.run(x)
    return calls * batch / (time.perf_counter() - start)


def throughput(args) -> None:
    from verifier.runtime import open_session
    from verifier.smoothing import SmoothedClassifier

    print(f"n0={args.n0} n={args.n} batch={args.batch} threads={args.threads} "
          f"inputs={args.inputs} repeats={args.repeats} (medians)")
    runs = [(b, net, True) for b, net in NETWORKS] + [(NETWORKS[0][0], NETWORKS[0][1], False)]
    for benchmark, network, reduce in runs:
        path = SHARED / "vnncomp" / benchmark / "onnx" / network
        if not path.exists():
            print(f"{path} is not present; skipped")
            continue
        centres = property_centres(benchmark, network, args.inputs)
        session = open_session(path, threads=args.threads)
        classifier = SmoothedClassifier(path, args.sigma, threads=args.threads, batch=args.batch,
                                        seed=0, reduce=reduce)
        classifier.noise.reserve(args.n0 + args.n)
        per_input = args.n0 + args.n
        loop_rates, raw_rates, cert_seconds = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            certs = [classifier.certify(x, args.n0, args.n, args.alpha, idx=i)
                     for i, x in enumerate(centres)]
            loop_rates.append(per_input * len(centres) / (time.perf_counter() - start))
            cert_seconds += [c.seconds for c in certs]
            raw_rates.append(raw_rate(session, args.batch, per_input * len(centres)))
        loop, raw = statistics.median(loop_rates), statistics.median(raw_rates)
        ratios = [a / b for a, b in zip(loop_rates, raw_rates)]
        name = f"{benchmark}/{network}" + ("" if reduce else " (reduce=False)")
        print(f"\n{name}\n  {classifier.describe()}")
        print(f"  certify loop {loop:12,.0f} samples/s   raw onnxruntime {raw:12,.0f} samples/s   "
              f"ratio {loop / raw:.2f} (per-round median {statistics.median(ratios):.2f}, "
              f"min {min(ratios):.2f})")
        print(f"  {statistics.median(cert_seconds):.3f} s per certificate at n={args.n} "
              f"(+ {classifier.noise.bank_seconds:.2f} s once for the noise bank); "
              f"radii {', '.join(f'{c.radius:.3f}' for c in certs)}")
        del classifier, session


def table(args) -> None:
    from verifier.smoothing import (SmoothedClassifier, Summary, format_table, load_dataset)

    models = sorted((SHARED / "models").glob("*rs_sigma0.25.onnx"))
    data_path = SHARED / "datasets" / "digits_test.npz"
    if not models or not data_path.exists():
        print(f"error: needs {SHARED}/models/*rs_sigma0.25.onnx and {data_path} "
              "(set VERIFIER_SHARED)", file=sys.stderr)
        sys.exit(2)
    radii = (0.25, 0.5, 0.75, 1.0)
    rows = []
    for path in models:
        classifier = SmoothedClassifier(path, 0.25, threads=args.threads, batch=args.batch,
                                        seed=args.seed)
        data = load_dataset(data_path, classifier.input_shape, num_classes=classifier.num_classes)
        count = min(len(data), args.limit or len(data))
        certs = [classifier.certify(data.x[i], args.n0, args.n, args.alpha, idx=i,
                                    label=int(data.y[i])) for i in range(count)]
        rows.append((path.name, Summary.of(certs, radii)))
    print(f"sigma=0.25 n0={args.n0} n={args.n} alpha={args.alpha} seed={args.seed}, "
          f"{data_path.name}")
    print(format_table(rows))
    print("\npublished (n=10000): r=0 | r=0.25 | r=0.5 | r=0.75 | r=1.0 | abstain")
    for path in models:
        print(f"  {path.name}: {PUBLISHED.get(path.name, '-')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the digits summary table")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=None,
                        help="estimation samples (default 100000; 10000 with --table)")
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=4, help="inputs per round (throughput)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="images (table; default all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n is None:
        args.n = 10_000 if args.table else 100_000
    (table if args.table else throughput)(args)


if __name__ == "__main__":
    main()
