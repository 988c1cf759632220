"""Certified L2 accuracy of the digits models: Lipschitz (global, local), CROWN, smoothing.

    VERIFIER_SHARED=../shared python benchmarks/bench_lipschitz.py [--limit 500] [--n 2000]
        [--radii 0.1,0.25,0.5] [--models digits_mlp_rs_sigma0.25.onnx,...]

For each model of ../shared/models and the images of
../shared/datasets/digits_test.npz, the fraction of images that are correct
and certified at each L2 radius r (input units, pixels in [0, 1]), after the clean
accuracy of what is certified (the network; for smoothing, the smoothed
classifier, abstentions counted as wrong), by:

* global Lipschitz: r(x) = min_j m_j(x) / L_j with the global constants;
* local Lipschitz: for each r, the constants on the ball of radius r (CROWN
  pre-activation bounds), certified when min(r, m / L_local) >= r; the script
  asserts that the local radius is >= the global one on every image;
* CROWN: ``compute_bounds`` on ``L2Ball(x, r)`` with the margin rows
  ``f_y - f_j`` (certified when every lower bound exceeds the decision margin);
* randomized smoothing at sigma = 0.25 (n0 = 100, n = --n, alpha = 0.001); it
  certifies the *smoothed* classifier, not the network (a different claim).

The seconds are wall time for all images (all radii together for the local
and CROWN columns, which need one pass per radius).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VERIFIER_SHARED", ROOT.parent / "shared"))
MODELS = "digits_mlp_rs_sigma0.25.onnx,digits_cnn_rs_sigma0.25.onnx"


def accuracy_at(radius, correct, radii):
    """Clean accuracy, then certified accuracy at each radius."""
    return [float(np.mean(correct))] + [float(np.mean(correct & (radius >= r))) for r in radii]


def lipschitz_rows(graph, x, y, radii):
    from verifier.lipschitz import certify, global_lipschitz

    start = time.perf_counter()
    bound = global_lipschitz(graph, "l2")
    results = certify(graph, x, y, "l2", global_bound=bound)
    global_seconds = time.perf_counter() - start
    radius = np.array([c.radius for c in results])
    correct = np.array([c.correct for c in results])
    start = time.perf_counter()
    local = [float(correct.mean())]
    for r in radii:
        local_results = certify(graph, x, y, "l2", local_eps=r, global_bound=bound)
        local_radius = np.array([c.radius for c in local_results])
        assert np.all(local_radius >= radius), "local radius below the global one"
        local.append(float(np.mean(correct & (local_radius >= r))))
    local_seconds = time.perf_counter() - start
    return [("global Lipschitz", accuracy_at(radius, correct, radii), global_seconds),
            ("local Lipschitz (CROWN pre-activations)", local, local_seconds)]


def crown_row(graph, x, y, radii):
    from verifier.bounds import L2Ball, compute_bounds, refuted
    from verifier.lipschitz import margins

    k = graph.output_size
    rows = np.eye(k)[y][:, None, :] - np.eye(k)[None, :, :]           # (B, K, K)
    keep = ~np.eye(k, dtype=bool)[y]                                    # drop j = y
    C = rows[keep].reshape(len(x), k - 1, k)
    correct = margins(graph, x, y)[1] == y
    start = time.perf_counter()
    certified = [float(correct.mean())]
    for r in radii:
        result = compute_bounds(graph, L2Ball(x, np.full(len(x), r)), method="crown", C=C,
                                upper=False)
        certified.append(float(np.mean(correct & refuted(result.lower).all(axis=1))))
    return ("CROWN on the L2 ball", certified, time.perf_counter() - start)


def smoothing_row(model, x, y, radii, n):
    from verifier.smoothing import SmoothedClassifier

    classifier = SmoothedClassifier(model, 0.25, seed=0, device="cpu")
    classifier.noise.reserve(100 + n)
    start = time.perf_counter()
    radius, correct = [], []
    for i in range(len(x)):
        c = classifier.certify(x[i].reshape(classifier.input_shape), 100, n, 0.001, idx=i,
                               label=int(y[i]))
        radius.append(c.radius)
        correct.append(c.correct)
    radius, correct = np.array(radius), np.array(correct)
    return (f"smoothing sigma=0.25 n={n} (smoothed classifier)",
            accuracy_at(radius, correct, radii), time.perf_counter() - start)


def main() -> None:
    from verifier.frontend import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--n", type=int, default=2000, help="smoothing samples (0: skip)")
    parser.add_argument("--radii", default="0.1,0.25,0.5")
    parser.add_argument("--models", default=MODELS)
    args = parser.parse_args()
    radii = [float(r) for r in args.radii.split(",")]
    with np.load(SHARED / "datasets" / "digits_test.npz") as data:
        x = data["x"][:args.limit].reshape(-1, 64).astype(np.float64)
        y = data["y"][:args.limit].astype(np.int64)
    print(f"{len(x)} images of digits_test.npz; certified accuracy (correct and certified) at "
          f"L2 radius r")
    print("| model | method | clean | " + " | ".join(f"r={r:g}" for r in radii) + " | seconds |")
    print("|---" * (4 + len(radii)) + "|")
    for name in args.models.split(","):
        path = SHARED / "models" / name
        graph = load_model(path)
        rows = lipschitz_rows(graph, x, y, radii)
        rows.append(crown_row(graph, x, y, radii))
        if args.n:
            rows.append(smoothing_row(path, x, y, radii, args.n))
        for method, accuracy, seconds in rows:
            cells = " | ".join(f"{a:.3f}" for a in accuracy)
            print(f"| {name.removesuffix('.onnx')} | {method} | {cells} | "
                  f"{seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
