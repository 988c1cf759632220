"""Time ``verifier report`` on the digits models and print the tables.

    python benchmarks/bench_report.py [--shared DIR] [--methods ibp,naive-ibp,crown,pgd]
                                      [--eps 0.01,0.02,0.05,0.1] [--limit N]
                                      [--timeout-per-image 10] [--models a,b] [--smoothing]

For each L-infinity model of ../shared/models (digits_mlp_ibp_eps0.1,
digits_mlp_plain) on ../shared/datasets/digits_test.npz, over clip(x +- eps,
0, 1): the wall time of the whole table, seconds and images/s per method
(summed over the eps values), and the Markdown table next to the published one
(../shared/models/README.md). Default methods: the cheap ones (target: under
60 s for 500 images x 4 eps on a 2-core machine); add alpha-crown and complete
with --methods. --smoothing adds CERTIFY (n = 10000) for the sigma = 0.25
models. ``VERIFIER_SHARED`` or --shared says where the shared folder is.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LINF_MODELS = ("digits_mlp_ibp_eps0.1", "digits_mlp_plain")
SMOOTHING_MODELS = ("digits_mlp_rs_sigma0.25", "digits_cnn_rs_sigma0.25")


def main() -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=os.environ.get("VERIFIER_SHARED",
                                                           str(ROOT.parent / "shared")))
    parser.add_argument("--methods", default="ibp,naive-ibp,crown,pgd")
    parser.add_argument("--eps", default="0.01,0.02,0.05,0.1")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--timeout-per-image", type=float, default=10.0)
    parser.add_argument("--models", default=",".join(LINF_MODELS),
                        help="L-infinity models (names under models/), comma-separated")
    parser.add_argument("--smoothing", action="store_true")
    args = parser.parse_args()

    from verifier.report import SmoothingOptions, markdown, robustness_report
    from verifier.smoothing import load_dataset

    shared = Path(args.shared)
    data = shared / "datasets" / "digits_test.npz"
    if not data.exists():
        print(f"{data} is not present; nothing to time")
        return 0
    dataset = load_dataset(data, (1, 8, 8), num_classes=10)
    indices = list(range(len(dataset)))[:args.limit]
    eps = tuple(float(e) for e in args.eps.split(","))
    methods = tuple(args.methods.split(","))
    for name in filter(None, args.models.split(",")):
        model = shared / "models" / f"{name}.onnx"
        start = time.perf_counter()
        report = robustness_report(model, dataset, eps, clip=(0.0, 1.0), methods=methods,
                                   timeout_per_image=args.timeout_per_image, indices=indices)
        wall = time.perf_counter() - start
        print(f"## {name}: {len(indices)} images x {len(eps)} eps, {wall:.1f} s wall")
        for method, spent in report.seconds.items():
            work = len(indices) * len(eps)
            if method == "complete":  # runs only on the images the others left open
                print(f"  complete: {spent:.1f} s in all")
                for e in eps:
                    column = report.column(method, e)
                    times = [s for s in column.seconds if s > 0]
                    median = statistics.median(times) if times else 0.0
                    print(f"    eps={e:g}: {len(times)} open images, {sum(times):.1f} s, "
                          f"median {median:.2f} s/image, {column.count('certified')} "
                          f"certified, {column.count('broken')} broken, "
                          f"{column.count('undecided')} undecided")
                continue
            print(f"  {method}: {spent:.2f} s, {work / max(spent, 1e-9):.0f} images/s")
        print(markdown(report))
    if args.smoothing:
        for name in SMOOTHING_MODELS:
            model = shared / "models" / f"{name}.onnx"
            start = time.perf_counter()
            report = robustness_report(model, dataset, (), methods=(), indices=indices,
                                       smoothing=SmoothingOptions(0.25))
            print(f"## {name}: smoothing {time.perf_counter() - start:.1f} s")
            print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
