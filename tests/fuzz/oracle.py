"""Differential checks of the verifier on one generated network.

    check(fuzz_model, workdir) -> Outcome(failures=[Failure(kind, detail)], ...)

The oracle is onnxruntime: the float32 model (what users deploy and what a
VNN-COMP checker replays) and, where onnxruntime has float64 kernels for
every op, a float64 copy (the real-valued function that bounds are about).
For a random input box of the network:

1. ``lowering``: the IR agrees with onnxruntime at points of the box
   (:func:`verifier.crosscheck.check_lowering`), and has the model's
   output size;
2. ``bounds``: IBP, CROWN, alpha-CROWN and the forward symbolic bounds of
   input splitting are finite and contain onnxruntime's outputs at the box's
   centre, corners and random points (float64 reference: within 1e-6 of the
   largest intermediate magnitude at that point; with some ops in float32:
   2^-14; float32 reference: 2^-10);
3. ``verify``: a property ``c·y <= d`` with ``d`` near the sampled minimum
   of ``c·y`` (a quarter of the time just below the float64 one, by
   1e-5.5 to 1e-2 relative, where float32 rounding decides): a ``sat`` answer's counterexample must replay through
   onnxruntime; an ``unsat`` answer is attacked in float32 (sampling,
   corners, and a gradient-free local search through onnxruntime), and an
   attack hit is a failure (``wrong-unsat``, or ``wrong-unsat-float32`` when
   the real-valued model (onnxruntime float64, else the IR) does not reach the
   unsafe set there: the float32 rounding class).

A crash (any exception other than an unsupported-model rejection) is a
failure of its own kind. Failures carry what is needed to reproduce them:
:func:`save` writes ``model.onnx`` and ``prop.vnnlib`` to a folder.
"""
from __future__ import annotations

import itertools
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

#: bounds vs the float64 model: tolerance relative to max(1, |intermediates|)
FLOAT64_SLACK = 1e-6
#: bounds vs the float32 model when there is no float64 one (as in crosscheck)
FLOAT32_SLACK = 2.0 ** -10


@dataclass(frozen=True)
class Failure:
    kind: str     # lowering, bounds-<method>, crash-<phase>, wrong-unsat, invalid-sat, ...
    detail: str


@dataclass
class Outcome:
    seed: int
    fuzz: object                       # the generator's FuzzModel
    prop: object = None                # the verifier Property checked
    verdict: str = ""                  # verify's answer ('' when not reached)
    rejected: str = ""                 # why the front end declined the model
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    paths: tuple = ()                  # model.onnx, prop.vnnlib once saved

    @property
    def ok(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        lines = [f"seed {self.seed}: opset {self.fuzz.opset}, input {self.fuzz.input_shape}, "
                 f"ops {dict(sorted(self.fuzz.ops.items()))}, "
                 f"patterns {sorted(self.fuzz.patterns)}, verify -> {self.verdict or '-'}"]
        lines += [f"  FAIL {f.kind}: {f.detail}" for f in self.failures]
        if self.paths:
            lines.append(f"  reproduce: verifier verify {self.paths[0]} {self.paths[1]}")
        return "\n".join(lines)


def random_box(rng, n: int):
    """float32-exact bounds: centres in [-1, 1], half-widths up to 0.4, a
    fifth of the entries fixed (zero width)."""
    centre = rng.uniform(-1.0, 1.0, n)
    radius = rng.uniform(0.0, 0.4, n) * (rng.random(n) > 0.2)
    lower = (centre - radius).astype(np.float32).astype(np.float64)
    upper = np.maximum((centre + radius).astype(np.float32).astype(np.float64), lower)
    return lower, upper


def box_points(rng, lower, upper, samples: int = 200, corners: int = 64):
    """Centre, corners (all of them when few) and uniform points, as float32."""
    n = lower.size
    free = np.flatnonzero(upper > lower)
    if len(free) <= 6:
        bits = np.array(list(itertools.product([0, 1], repeat=len(free))), dtype=bool)
    else:
        bits = rng.integers(0, 2, size=(corners, len(free))).astype(bool)
    corner = np.repeat(lower[None], len(bits), axis=0)
    corner[:, free] = np.where(bits, upper[free], lower[free])
    uniform = lower + rng.random((samples, n)) * (upper - lower)
    points = np.vstack([(lower + upper)[None] / 2, corner, uniform])
    return clip32(points, lower, upper)


def clip32(x, lower, upper):
    from verifier.result import float32_inside

    return float32_inside(x, lower, upper)


def _property(rng, y, lower, upper, m):
    """Unsafe: c·y <= d, c a random row over the outputs, d near min c·y."""
    from verifier.spec.property import Case, InputRegion, OutputPolytope, Property

    c = np.zeros(m)
    picked = rng.choice(m, size=min(m, int(rng.integers(1, 3))), replace=False)
    c[picked] = rng.choice([-1.0, 1.0], size=len(picked))
    values = y @ c
    spread = float(values.max() - values.min()) + 1e-3
    if rng.random() < 0.25:  # just below the sampled minimum: float32 rounding matters
        gap = 10.0 ** rng.uniform(-5.5, -2.0)
        d = float(values.min() - gap * max(1.0, abs(float(values.min()))))
    else:
        d = float(values.min() - spread * rng.uniform(-0.05, 0.3))
    region = InputRegion(lower, upper)
    return Property(lower.size, m, (Case(region, (OutputPolytope(c[None], [d]),)),)), c, d


def _attack(run32, lower, upper, c, d, x, rng, rounds: int = 25):
    """Best float32 point for min c·y: the given points, then a local random
    search around the 8 best (step from half the box width down to 1%)."""
    values = run32(x) @ c
    width = upper - lower
    for k in range(rounds):
        best = x[np.argsort(values)[:8]]
        step = 0.5 * (0.01 / 0.5) ** (k / max(rounds - 1, 1))
        trial = np.repeat(best, 16, axis=0)
        trial = trial + rng.normal(size=trial.shape) * step * width
        if k % 5 == 4:  # push some coordinates to the faces of the box
            faces = rng.random(trial.shape) < 0.2
            trial = np.where(faces, np.where(rng.random(trial.shape) < 0.5, lower, upper),
                             trial)
        trial = clip32(trial, lower, upper)
        x = np.vstack([x, trial])
        values = np.concatenate([values, run32(trial) @ c])
        if values.min() <= d:
            break
    k = int(np.argmin(values))
    return x[k], float(values[k])


def _contains(name, bounds_lower, bounds_upper, y, tolerance, failures, reference,
              infinite=False):
    """Whether every row of ``y`` lies in the bounds up to ``tolerance`` (per row).
    ``infinite``: infinite bounds are right (float32 may overflow); NaN is not."""
    bad = np.isnan if infinite else (lambda v: ~np.isfinite(v))
    if bad(bounds_lower).any() or bad(bounds_upper).any():
        failures.append(Failure(f"bounds-{name}", "non-finite bounds: "
                                f"lower {bounds_lower}, upper {bounds_upper}"))
        return
    with np.errstate(invalid="ignore"):  # inf - inf where both overflow: inside
        excess = np.maximum(bounds_lower - y, y - bounds_upper) - tolerance[:, None]
    excess = np.nan_to_num(excess, nan=0.0, neginf=0.0)
    if excess.max() > 0:
        p, j = np.unravel_index(np.argmax(excess), y.shape)
        worst = float(excess[p, j] + tolerance[p])
        failures.append(Failure(
            f"bounds-{name}", f"onnxruntime {reference} output Y_{j} = {y[p, j]:.9g} at "
            f"point {p} lies outside [{bounds_lower[0, j]:.9g}, {bounds_upper[0, j]:.9g}] "
            f"by {worst:.3g}"))


def _crash(phase, exc) -> Failure:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return Failure(f"crash-{phase}", f"{type(exc).__name__}: {exc} "
                   f"({Path(frame.filename).name}:{frame.lineno})")


def check(fuzz, workdir, *, verify_timeout: float = 2.0, methods=None) -> Outcome:
    """Run every check on ``fuzz`` (a generator FuzzModel); ``workdir`` holds
    the model file that ``verify`` reads."""
    from verifier.bounds import METHODS, Box, compute_bounds
    from verifier.bounds.engine import float32_supported
    from verifier.bounds.forward import output_lower, supports
    from verifier.bounds.margin import COMPARISON, MARGIN_FLOOR
    from verifier.bounds.result import BoundOptions
    from verifier.bounds.roundoff import float32_hull
    from verifier.crosscheck import (MIXED_TOLERANCE, LoweringMismatchError, check_lowering,
                                     magnitudes, reference_session)
    from verifier.ir import evaluate
    from verifier.errors import UnsupportedModelError, VerifierError
    from verifier.frontend import load_model
    from verifier.runtime import open_session

    start = time.monotonic()
    outcome = Outcome(fuzz.seed, fuzz)
    failures = outcome.failures
    rng = np.random.default_rng(fuzz.seed + 7919)
    proto = fuzz.model
    try:
        graph = load_model(proto, name=f"fuzz seed {fuzz.seed}")
    except UnsupportedModelError as exc:
        outcome.rejected = exc.message
        return outcome
    except Exception as exc:  # noqa: BLE001 - any other error on a valid model is a bug
        failures.append(_crash("load", exc))
        return outcome
    session = open_session(proto, device="cpu")
    reference64, float32_ops = reference_session(proto)
    run32 = lambda x: session.run(x).reshape(len(x), -1).astype(np.float64)  # noqa: E731
    n = int(np.prod(fuzz.input_shape))
    lower, upper = random_box(rng, n)
    x = box_points(rng, lower, upper)
    y32 = run32(x)
    m = y32.shape[1]
    y_ref = reference64.run(x.astype(np.float64)).reshape(len(x), -1) \
        if reference64 is not None else y32
    outcome.prop, c, d = _property(rng, y_ref, lower, upper, m)
    if graph.output_size != m or graph.input_size != n:
        failures.append(Failure("lowering", f"the IR has {graph.input_size} inputs and "
                                f"{graph.output_size} outputs, onnxruntime {n} and {m}"))
        return _done(outcome, start)
    try:
        check_lowering(graph, proto, outcome.prop, session=session,
                       reference=(reference64, float32_ops))
    except LoweringMismatchError as exc:
        failures.append(Failure("lowering", exc.message))
        return _done(outcome, start)
    except Exception as exc:  # noqa: BLE001
        failures.append(_crash("crosscheck", exc))
        return _done(outcome, start)

    slack, reference = (FLOAT64_SLACK, "float64") if reference64 is not None else \
        (FLOAT32_SLACK, "float32")
    if float32_ops:
        slack, reference = MIXED_TOLERANCE, f"float64 ({', '.join(float32_ops)} in float32)"
    scale = magnitudes(evaluate(graph, x.astype(np.float64).reshape((len(x),) + graph.input_shape),
                                all_values=True))
    slack = slack * scale
    # where the float64 copy parts from the float32 network beyond float32
    # rounding (MaxPool pads with its own type's lowest value), the float32
    # network is the truth, at the float32 tolerance, as in the cross-check
    parted = np.abs(y_ref - y32).max(axis=1) > FLOAT32_SLACK * scale
    y_ref = np.where(parted[:, None], y32, y_ref)
    slack = np.where(parted, FLOAT32_SLACK * scale, slack)
    box = Box(lower[None], upper[None])
    for method in methods or METHODS:
        try:
            with np.errstate(all="ignore"):  # NaN bounds are reported below
                result = compute_bounds(graph, box, method=method)
        except VerifierError as exc:
            failures.append(Failure(f"error-bounds-{method}", exc.message))
            continue
        except Exception as exc:  # noqa: BLE001
            failures.append(_crash(f"bounds-{method}", exc))
            continue
        _contains(method, result.lower, result.upper, y_ref, slack, failures, reference)
    if float32_supported(graph):
        # bounds of the float32 network itself: onnxruntime's float32 outputs at
        # float32 points of the box, with no tolerance beyond the comparison floor
        hull = float32_hull(lower, upper)
        tight = MARGIN_FLOOR + COMPARISON * np.abs(y32).max(axis=1)
        for method in ("crown", "alpha-crown"):
            try:
                with np.errstate(all="ignore"):
                    result = compute_bounds(graph, Box(hull[0][None], hull[1][None]),
                                            method=method, options=BoundOptions(float32=True))
            except Exception as exc:  # noqa: BLE001
                failures.append(_crash(f"bounds-float32-{method}", exc))
                continue
            _contains(f"float32-{method}", result.lower, result.upper, y32, tight, failures,
                      "float32", infinite=True)
    if supports(graph):
        try:
            eye = np.eye(m)
            low, _ = output_lower(graph, lower[None], upper[None], np.vstack([eye, -eye]),
                                  np.zeros(2 * m))
            _contains("forward", low[:, :m], -low[:, m:], y_ref, slack, failures, reference)
        except Exception as exc:  # noqa: BLE001
            failures.append(_crash("forward", exc))

    if reference64 is not None:
        run_real = lambda x: reference64.run(x).reshape(len(x), -1)  # noqa: E731
    else:  # the IR, checked against onnxruntime above, is the real-valued function
        run_real = lambda x: evaluate(  # noqa: E731
            graph, x.reshape((len(x),) + graph.input_shape)).reshape(len(x), -1)
    _check_verify(outcome, workdir, verify_timeout, run32, run_real, lower, upper, c, d,
                  x, rng)
    return _done(outcome, start)


def _check_verify(outcome, workdir, timeout, run32, run_real, lower, upper, c, d, x, rng):
    from verifier.errors import VerifierError
    from verifier.verify import Options, verify

    model_path = Path(workdir) / f"fuzz_{outcome.seed}.onnx"
    onnx.save(outcome.fuzz.model, os.fspath(model_path))
    try:
        result = verify(model_path, outcome.prop, Options(timeout=timeout, seed=outcome.seed))
    except VerifierError as exc:
        outcome.failures.append(Failure("error-verify", exc.message))
        return
    except Exception as exc:  # noqa: BLE001
        outcome.failures.append(_crash("verify", exc))
        return
    finally:
        model_path.unlink(missing_ok=True)
    outcome.verdict = result.verdict.value
    if outcome.verdict == "sat":
        cex = result.counterexample
        x32 = np.asarray(cex.x, np.float32).reshape(1, -1)
        value = float(run32(x32)[0] @ c)
        inside = bool(np.all(x32 >= lower) and np.all(x32 <= upper))
        if not inside or value > d:
            outcome.failures.append(Failure("invalid-sat", f"counterexample inside the box: "
                                            f"{inside}; c·y = {value!r} > d = {d!r}"))
    elif outcome.verdict == "unsat":
        point, value = _attack(run32, lower, upper, c, d, x, rng)
        if value <= d:
            real = float(run_real(point[None].astype(np.float64))[0] @ c)
            kind = "wrong-unsat" if real <= d else "wrong-unsat-float32"
            outcome.failures.append(Failure(kind, (
                f"unsat, but onnxruntime float32 gives c·y = {value!r} <= d = {d!r} at "
                f"x = {[float(v) for v in point]} (real-valued model: {real!r})")))


#: the bug classes known at commit 7a3fb1e (/work/shared/soundness-cases), each
#: with a probe: the case passes once the probe removes that bug's trigger
KNOWN_BUGS = {
    "flatten-negative-axis": "Flatten with a negative axis splits at axis+rank+1",
    "affine-fold-shared-operand": "affine ops folded into a producer with several "
                                  "consumers (also Abs/Clip/Sub after MatMul+Add)",
    "forward-rank3-matmul": "forward symbolic bounds crash on a Linear over a tensor with "
                            "several rows (rank-3 MatMul)",
    "maxpool-padding-window": "MaxPool window lying entirely in the padding: NaN bounds, "
                              "crash in CROWN",
    "float32-rounding": "the real network is safe, the float32 one is not (decision "
                        "margin does not cover float32 rounding)",
}


def _positive_flatten_axes(model):
    """A copy of ``model`` whose Flatten axes are spelled non-negative."""
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             onnx.shape_inference.infer_shapes(copy).graph.value_info}
    ranks.update({v.name: len(v.type.tensor_type.shape.dim) for v in copy.graph.input})
    for node in copy.graph.node:
        for attr in node.attribute:
            if node.op_type == "Flatten" and attr.name == "axis" and attr.i < 0:
                attr.CopyFrom(helper.make_attribute("axis", attr.i + ranks[node.input[0]]))
    return copy


def _direct(failure, fuzz) -> str | None:
    """The known class a failure shows on its face, if any."""
    if failure.kind == "wrong-unsat-float32":
        return "float32-rounding"
    if "pooling.py" in failure.detail or ("non-finite" in failure.detail
                                          and "MaxPool" in fuzz.ops):
        return "maxpool-padding-window"
    return None


def diagnose(outcome, workdir) -> list[str]:
    """The known bug classes (:data:`KNOWN_BUGS`) that explain ``outcome``'s
    failures: those a failure shows directly, plus the smallest set of probes
    (Flatten axes made non-negative; no simplifier folding; no forward
    symbolic bounds) after which every other failure goes away. Empty, or
    ending in "unexplained": a new bug class."""
    import contextlib
    from dataclasses import replace as copy_with
    from unittest import mock

    fuzz = outcome.fuzz
    direct = {_direct(f, fuzz) for f in outcome.failures} - {None}
    rest = [f for f in outcome.failures if _direct(f, fuzz) is None]
    if not rest:
        return sorted(direct)
    probes = {
        "flatten-negative-axis": None,
        "affine-fold-shared-operand": ("verifier.frontend.simplify.simplify", lambda g: g),
        "forward-rank3-matmul": ("verifier.bounds.forward.supports", lambda g: False),
    }
    if "Flatten" not in fuzz.ops:
        del probes["flatten-negative-axis"]
    names = list(probes)
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            case = fuzz
            with contextlib.ExitStack() as stack:
                for name in subset:
                    if probes[name] is None:
                        case = copy_with(fuzz, model=_positive_flatten_axes(fuzz.model))
                    else:
                        stack.enter_context(mock.patch(*probes[name]))
                again = check(case, workdir).failures
            if all(_direct(f, fuzz) is not None for f in again):
                return sorted(direct) + list(subset)
    return sorted(direct) + ["unexplained"]


def _done(outcome, start):
    outcome.seconds = time.monotonic() - start
    return outcome


def save(outcome, folder) -> tuple[str, str]:
    """Write ``model.onnx`` and ``prop.vnnlib`` (when a property was made) of
    a case to ``folder``; returns their paths and records them."""
    from verifier.spec.writer import write_vnnlib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, prop = folder / "model.onnx", folder / "prop.vnnlib"
    onnx.save(outcome.fuzz.model, os.fspath(model))
    if outcome.prop is not None:
        text = write_vnnlib(outcome.prop)
        prop.write_text(f"; fuzz seed {outcome.seed}\n" + text)
    outcome.paths = (os.fspath(model), os.fspath(prop))
    return outcome.paths


__all__ = ["Failure", "KNOWN_BUGS", "Outcome", "box_points", "check", "diagnose", "random_box",
           "save"]
