"""acasxu against nnenum, plus small rl_benchmarks-style networks.

Runs acasxu rows of ``instances.csv`` (all, or those matching ``--filter``,
or ``--hard`` / ``--easy N``) at their own timeouts (times
``--timeout-scale``), each in its own process (``--jobs`` at once), and
prints per row: verdict, expected verdict, our seconds, nnenum's seconds and
the ratio; then solved, wrong, total and median wall seconds, and the ratio
of our total to nnenum's total on the same rows (``nnenum_local_times.csv``,
measured on a 2-core machine like ours; rows nnenum did not solve count at
their timeout, like ours). Our seconds are the wall time of the child
process, Python start-up and imports included.

``--throughput ROW`` reports input-split sub-boxes per second on one row
(e.g. ``"2_2 prop_1"``) over ``--throughput-seconds``.

``--rl`` generates a few rl_benchmarks-style networks (2-8 inputs,
Gemm or MatMul+Add with Relu) with a property each and prints their times:
these must not get slower.

Usage:
    python benchmarks/bench_acasxu.py --hard --easy 20 --jobs 1
    python benchmarks/bench_acasxu.py --filter "3_3.*prop_9" --timeout-scale 0.5
    python benchmarks/bench_acasxu.py --throughput "2_2 prop_1" --rl

Every row is compared with ``expected.csv``: a wrong answer prints WRONG and
makes the exit status 1.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.shared_data import require  # noqa: E402

#: the rows we missed at 116 s before the input-split rewrite (issue 12)
HARD = ["2_2 prop_1", "3_3 prop_1", "3_6 prop_1", "3_7 prop_1", "4_6 prop_1", "4_8 prop_1",
        "1_1 prop_2", "3_3 prop_2", "4_2 prop_2", "5_3 prop_2", "3_3 prop_9"]


def row_name(onnx_path, vnnlib_path):
    net = re.search(r"run2a_(\d_\d)_batch", onnx_path).group(1)
    return f"{net} {Path(vnnlib_path).stem}"


def load_rows(folder):
    expected = {(r["onnx"], r["vnnlib"]): r["expected"]
                for r in csv.DictReader(open(folder / "expected.csv"))}
    nnenum = {(r["onnx"], r["vnnlib"]): r for r in
              csv.DictReader(open(folder / "nnenum_local_times.csv"))}
    rows = []
    for onnx_path, vnnlib_path, timeout in csv.reader(open(folder / "instances.csv")):
        key = (onnx_path, vnnlib_path)
        theirs = nnenum.get(key)
        solved = theirs is not None and theirs["nnenum_result"] == theirs["expected"]
        rows.append(dict(name=row_name(onnx_path, vnnlib_path), onnx=folder / onnx_path,
                         vnnlib=folder / vnnlib_path, timeout=float(timeout),
                         expected=expected.get(key, "unknown"),
                         nnenum=float(theirs["nnenum_seconds"]) if solved else float(timeout)))
    return rows


def select(rows, args):
    if args.filter:
        return [r for r in rows if re.search(args.filter, r["name"])]
    chosen = [r for r in rows if args.hard and r["name"] in HARD]
    if args.easy:
        easy = [r for r in rows if r["name"] not in HARD]
        step = max(1, len(easy) // args.easy)
        chosen += easy[::step][:args.easy]
    return chosen if (args.hard or args.easy) else rows


def run_one(model, prop, timeout, workers=None):
    """Verify in a fresh process; (verdict, seconds, stats) as the child reports them."""
    code = ("import json,sys,time; from verifier.verify import verify, Options; "
            "t=time.monotonic(); o=Options(timeout=float(sys.argv[3]))\n"
            "if sys.argv[4] != 'None': o.workers=int(sys.argv[4])\n"
            "r=verify(sys.argv[1], sys.argv[2], o); "
            "print(json.dumps({'verdict': str(r.verdict), 'seconds': time.monotonic()-t, "
            "'stats': r.stats}, default=str))")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(model), str(prop), str(timeout),
                           str(workers)], capture_output=True, text=True,
                          timeout=timeout + 60, env=dict(os.environ, PYTHONPATH=str(
                              Path(__file__).resolve().parents[1])))
    wall = time.monotonic() - started
    if proc.returncode != 0:
        return "error", wall, {"stderr": proc.stderr[-500:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["verdict"], wall, out["stats"]


def run_acasxu(rows, args):
    from verifier.runner.process import cores_per_job

    workers = args.workers or cores_per_job(args.jobs)  # as `verifier run` does

    def job(row):
        verdict, wall, stats = run_one(row["onnx"], row["vnnlib"],
                                       row["timeout"] * args.timeout_scale, workers)
        return row, verdict, wall, stats

    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for row, verdict, wall, stats in pool.map(job, rows):
            wrong = verdict in ("sat", "unsat") and verdict != row["expected"]
            solved = verdict == row["expected"]
            flag = "WRONG" if wrong else ("" if solved else "miss")
            print(f"{row['name']:<12} {verdict:<8} (expected {row['expected']:<5}) "
                  f"{wall:7.2f} s  nnenum {row['nnenum']:7.2f} s  "
                  f"x{wall / max(row['nnenum'], 1e-9):5.2f}  "
                  f"boxes {stats.get('domains', '-')} {flag}", flush=True)
            results.append((row, verdict, wall, solved, wrong))
    ours = [w if s else r["timeout"] for r, _, w, s, _ in results]
    theirs = [r["nnenum"] for r, *_ in results]
    print(f"\nrows {len(results)}  solved {sum(s for *_, s, _ in results)}  "
          f"wrong {sum(w for *_, w in results)}")
    print(f"total {sum(ours):.1f} s (misses at their timeout)  median "
          f"{statistics.median(w for _, _, w, _, _ in results):.2f} s")
    print(f"nnenum total {sum(theirs):.1f} s  median {statistics.median(theirs):.2f} s  "
          f"ratio ours/nnenum {sum(ours) / max(sum(theirs), 1e-9):.2f}")
    return any(w for *_, w in results)


def throughput(rows, name, seconds):
    row = next(r for r in rows if r["name"] == name)
    verdict, wall, stats = run_one(row["onnx"], row["vnnlib"], seconds)
    boxes = int(stats.get("domains", 0))
    search = float(stats.get("search_seconds", wall))
    print(f"throughput {name}: {verdict} after {wall:.1f} s, {boxes} sub-boxes in "
          f"{search:.1f} s of search: {boxes / max(search, 1e-9):.0f} sub-boxes/s")


def rl_networks(folder, count=4):
    """Write a few few-input Relu networks and properties; [(onnx, vnnlib)]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cases = []
    for k in range(count):
        rng = np.random.default_rng(k)
        n_in = (2, 4, 6, 8)[k % 4]
        widths = [64, 64] if k % 2 == 0 else [32, 32, 32]
        use_gemm = k % 2 == 0
        nodes, inits, prev, width = [], [], "x", n_in
        for j, w in enumerate(widths + [2]):
            W = (rng.normal(size=(w, width)) / np.sqrt(width)).astype(np.float32)
            b = (0.1 * rng.normal(size=w)).astype(np.float32)
            inits += [numpy_helper.from_array(W if use_gemm else W.T.copy(), f"W{j}"),
                      numpy_helper.from_array(b, f"b{j}")]
            out = f"h{j}"
            if use_gemm:
                nodes.append(helper.make_node("Gemm", [prev, f"W{j}", f"b{j}"], [out],
                                              transB=1))
            else:
                nodes.append(helper.make_node("MatMul", [prev, f"W{j}"], [out + "m"]))
                nodes.append(helper.make_node("Add", [out + "m", f"b{j}"], [out]))
            prev, width = out, w
            if j < len(widths):
                nodes.append(helper.make_node("Relu", [prev], [prev + "r"]))
                prev = prev + "r"
        graph = helper.make_graph(
            nodes, f"rl{k}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
            [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 2])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = Path(folder) / f"rl{k}.onnx"
        onnx.save(model, path)
        # unsafe: y0 - y1 below the sampled minimum minus a small gap (mostly unsat)
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = rng.uniform(-0.5, 0.5, size=(4000, n_in)).astype(np.float32)
        y = np.vstack([session.run(None, {"x": x[i:i + 1]})[0] for i in range(0, 4000, 1)])
        gap = float((y[:, 0] - y[:, 1]).min()) - 0.05
        lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
        lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
        lines += [f"(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))" for i in range(n_in)]
        bound = f"{gap!r}" if gap >= 0 else f"(- {-gap!r})"
        lines.append(f"(assert (<= (- Y_0 Y_1) {bound}))")
        spec = Path(folder) / f"rl{k}.vnnlib"
        spec.write_text("\n".join(lines) + "\n")
        cases.append((path, spec))
    return cases


def run_rl(timeout):
    with tempfile.TemporaryDirectory() as folder:
        for model, prop in rl_networks(folder):
            verdict, wall, stats = run_one(model, prop, timeout)
            print(f"rl {model.stem}: {verdict:<8} {wall:6.2f} s  boxes {stats.get('domains', '-')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", help="regex on row names like '2_2 prop_1'")
    parser.add_argument("--hard", action="store_true", help="the 11 rows missed before")
    parser.add_argument("--easy", type=int, default=0, help="N other rows, evenly spread")
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes per instance (default: the cores over --jobs)")
    parser.add_argument("--throughput", metavar="ROW")
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    parser.add_argument("--rl", action="store_true", help="time the generated rl networks")
    args = parser.parse_args()
    rows = load_rows(require("vnncomp", "acasxu"))
    # byte-compile the package once, as `pip install` does: with
    # PYTHONDONTWRITEBYTECODE set, every child would compile it again (~0.1 s)
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "verifier"), quiet=1)
    wrong = False
    if args.throughput:
        throughput(rows, args.throughput, args.throughput_seconds)
    if args.rl:
        run_rl(60.0)
    if args.filter or args.hard or args.easy or not (args.throughput or args.rl):
        wrong = run_acasxu(select(rows, args), args)
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
