"""The smoothed classifier g(x) = argmax_c P(f(x + eps) = c), eps ~ N(0, sigma^2 I).

:class:`SmoothedClassifier` samples the base network f through an onnxruntime
session and answers CERTIFY (:class:`Certificate`) and PREDICT
(:class:`Prediction`) as in Cohen, Rosenfeld and Kolter (2019). Its
certificates are about g, the smoothed classifier, never about f.

Exact speed-ups (neither changes what is certified):
- one noise bank shared by all inputs (``noise.py``);
- for a network that starts with ``Flatten -> Gemm/MatMul`` whose output is
  smaller than its input, the noise is drawn directly in the affine output
  space and the first layer is skipped (``graphs.py``). This draws other random
  numbers than the plain path: pass ``reduce=False`` to sample in input space.

The centre is added to the noise inside onnxruntime (``with_center_input``)
when the graph handles batches, so bank rows are fed without a numpy copy.

A noise sample whose logits contain NaN or an infinity is an *abstaining
vote*: it is counted apart (``Certificate.abstain_votes``), counts in n but
for no class (see ``stats.py``), so it can only lower a certificate. A
centre that is not finite is a :class:`DataError`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from verifier.errors import DataError, MismatchError, ModelError
from verifier.runtime import ModelLike, load_onnx, open_session
from verifier.smoothing.graphs import (CENTER_INPUT, AffinePrefix, split_first_affine,
                                       with_center_input)
from verifier.smoothing.noise import NoiseSource
from verifier.smoothing.stats import certify_from_counts, predict_from_counts

DEFAULT_N0 = 100
DEFAULT_N = 100_000
DEFAULT_ALPHA = 0.001
DEFAULT_BATCH = 1024


class _Answer:
    """What CERTIFY and PREDICT answers share: the class (None: abstained), the label."""

    prediction: int | None
    label: int | None
    alpha: float

    @property
    def abstained(self) -> bool:
        return self.prediction is None

    @property
    def correct(self) -> bool:
        return self.prediction is not None and self.prediction == self.label

    @property
    def confidence(self) -> float:
        """1 - alpha: the probability, over the sampling, that the answer is right."""
        return 1.0 - self.alpha

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(abstained=self.abstained, confidence=self.confidence)
        return data


@dataclass(frozen=True)
class Certificate(_Answer):
    """CERTIFY's answer for one input.

    ``prediction`` is the smoothed classifier's class (None: abstained) and
    ``radius`` the L2 radius, in the model's input units, within which it is
    constant with probability at least ``1 - alpha`` (0.0 when abstained).
    """

    prediction: int | None
    radius: float
    pa_lower: float
    n_a: int
    n0: int
    n: int
    sigma: float
    alpha: float
    seconds: float
    label: int | None = None
    # For a VNN-LIB property: the L2 distance from the box centre to its corners.
    region_radius: float | None = None
    # Noise samples (of n0 + n) whose logits were NaN or infinite: abstaining votes.
    abstain_votes: int = 0

    @property
    def covers_region(self) -> bool | None:
        """Whether the certified L2 ball contains the property's whole input box."""
        if self.region_radius is None:
            return None
        return self.prediction is not None and self.radius >= self.region_radius

    def to_dict(self) -> dict:
        return {**super().to_dict(), "covers_region": self.covers_region}


@dataclass(frozen=True)
class Prediction(_Answer):
    """PREDICT's answer: the top class (None: abstained) and its test."""

    prediction: int | None
    n_a: int
    n_b: int
    n: int
    p_value: float
    sigma: float
    alpha: float
    seconds: float
    label: int | None = None
    # Noise samples (of n) whose logits were NaN or infinite: abstaining votes.
    abstain_votes: int = 0


def _agree(got: np.ndarray, expect: np.ndarray, rtol: float) -> bool:
    got, expect = got.reshape(len(got), -1), expect.reshape(len(expect), -1)
    scale = max(1.0, float(np.abs(expect).max()))
    return got.shape == expect.shape and bool(np.allclose(got, expect, rtol=rtol, atol=rtol * scale))


def _check_reduction(full, rest, prefix: AffinePrefix, shape: tuple, seed: int) -> bool:
    x = np.random.default_rng([seed, 2]).random((3,) + shape).astype(np.float32)
    centers = np.stack([prefix.center(row) for row in x]).astype(np.float32)
    return _agree(rest.run(centers), full.run(x), rtol=1e-3)


class SmoothedClassifier:
    """Sample a base ONNX classifier under Gaussian noise of scale ``sigma``.

    ``sigma`` is in the model's input units (any normalisation is inside the
    ONNX graph). ``batch`` noise vectors go through onnxruntime per call.
    ``seed`` fixes every random number (see ``noise.py``). ``bank_bytes`` caps
    the noise bank (None: min(2 GiB, a quarter of free memory); 0: no bank).
    """

    def __init__(self, model: ModelLike, sigma: float, *, device: str = "auto",
                 threads: int | None = None, batch: int = DEFAULT_BATCH, seed: int = 0,
                 bank_bytes: int | None = None, reduce: bool = True):
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {sigma}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.sigma = float(sigma)
        self.batch = int(batch)
        self.seed = int(seed)
        where = str(model) if isinstance(model, (str, Path)) else "the model"
        proto = load_onnx(model)
        full = open_session(proto, device=device, threads=threads, seed=seed)
        full.where = where
        shape = full.input_shape
        if not all(isinstance(d, int) for d in shape):
            raise ModelError(f"{where}: smoothing needs a fixed per-sample input shape, got {shape}")
        probe = full.run(np.zeros((1,) + tuple(shape), full.input.dtype))
        if probe.size < 2:
            raise ModelError(f"{where}: smoothing needs a classifier with at least two "
                             f"outputs per sample, got output shape {probe.shape[1:]}")
        self.input_shape: tuple[int, ...] = tuple(shape)
        self.num_classes = int(probe.size)
        self.reduction: AffinePrefix | None = None
        self.sampling_note = "reduction off"
        self.session = full
        self.model_batch_mode = full.batch_mode
        base = proto
        if reduce:
            base = self._try_reduction(proto, full, device, threads)
        self.run_shape = tuple(self.session.input_shape)
        self.center_in_graph = False
        if self.session.batch_mode in ("dynamic", "rebatched"):
            self._try_center_input(base, device, threads)
        dim = self.reduction.out_dim if self.reduction else full.input_size
        factor = self.reduction.noise_factor(self.sigma) if self.reduction else None
        self.noise = NoiseSource(dim, self.sigma, seed=self.seed, factor=factor,
                                 bank_bytes=bank_bytes)
        self._buffer = np.empty((self.batch, dim), np.float32)

    def _try_reduction(self, proto, full, device, threads):
        """Sample after the first affine map when that is exact and smaller."""
        prefix, why = split_first_affine(proto)
        if prefix is None:
            self.sampling_note = f"input space ({why})"
            return proto
        if prefix.out_dim >= prefix.in_dim:
            self.sampling_note = f"input space ({prefix.description} does not reduce the dimension)"
            return proto
        rest = open_session(prefix.rest, device=device, threads=threads, seed=self.seed)
        if not _check_reduction(full, rest, prefix, self.input_shape, self.seed):
            self.sampling_note = "input space (the split model disagrees with the full model)"
            return proto
        self.reduction, self.session = prefix, rest
        self.sampling_note = f"reduced: noise drawn after {prefix.description}"
        return prefix.rest

    def _try_center_input(self, base, device, threads) -> None:
        """Add the centre inside the graph, when the wrapped graph is checked to agree."""
        try:
            session = open_session(with_center_input(base), device=device, threads=threads)
        except (ValueError, ModelError):
            return
        rng = np.random.default_rng([self.seed, 3])
        noise = rng.standard_normal((3,) + self.run_shape).astype(np.float32)
        center = rng.random((1,) + self.run_shape).astype(np.float32)
        try:
            got = session.run(noise, {CENTER_INPUT: center})
        except Exception:  # noqa: BLE001 - a graph that cannot batch keeps the numpy add
            return
        if _agree(got, self.session.run(noise + center), rtol=1e-5):
            self.session, self.center_in_graph = session, True

    @property
    def provider(self) -> str:
        return self.session.provider

    def describe(self) -> str:
        bank = self.noise.capacity
        added = "in the graph" if self.center_in_graph else "in numpy"
        return (f"provider {self.session.provider}, batch {self.batch} (model batch "
                f"{self.model_batch_mode}); "
                f"sampling {self.sampling_note}; centre added {added}; noise bank {bank} x {self.noise.dim} float32 "
                f"({bank * self.noise.dim * 4 / 2**20:.0f} MiB, built in {self.noise.bank_seconds:.2f} s)")

    def _center(self, x, idx: int = 0) -> np.ndarray:
        x = np.asarray(x)
        size = int(np.prod(self.input_shape))
        if x.size != size:
            raise MismatchError(f"the model takes inputs of shape {self.input_shape} "
                                f"({size} values), got {x.size} values")
        with np.errstate(over="ignore", invalid="ignore"):
            finite = x.dtype.kind in "fiub" and bool(np.all(np.isfinite(x.astype(np.float32))))
        if not finite:
            raise DataError(f"input {idx} contains NaN or infinite values (in float32); "
                            f"smoothing certifies only finite inputs")
        if self.reduction is not None:
            return self.reduction.center(x).astype(np.float32)[None, :]
        return np.asarray(x, np.float32).reshape(1, -1)

    def counts(self, x, start: int, count: int, idx: int = 0) -> np.ndarray:
        """Class counts of f(x + eps) over noise positions [start, start + count).

        Samples with non-finite logits vote for no class: the counts then sum
        to less than ``count`` (see :meth:`tally`).
        """
        return self.tally(x, start, count, idx)[:-1]

    def tally(self, x, start: int, count: int, idx: int = 0) -> np.ndarray:
        """Counts over noise positions [start, start + count): num_classes + 1 entries.

        Entry c < num_classes counts the samples f(x + eps) = c with finite
        logits; the last entry counts the abstaining votes (any logit NaN or
        infinite). The entries sum to ``count``.
        """
        center = self._center(x, idx)
        total = np.zeros(self.num_classes + 1, np.int64)
        shape = self.run_shape
        extra = {CENTER_INPUT: center.reshape((1,) + shape)} if self.center_in_graph else None
        for noise in self.noise.batches(idx, start, start + count, self.batch):
            k = len(noise)
            if extra is not None:
                logits = self.session.run(noise.reshape((k,) + shape), extra)
            else:
                noisy = np.add(noise, center, out=self._buffer[:k])
                logits = self.session.run(noisy.reshape((k,) + shape))
            logits = logits.reshape(k, -1)
            votes = logits.argmax(axis=1)
            votes[~np.isfinite(logits).all(axis=1)] = self.num_classes
            total += np.bincount(votes, minlength=self.num_classes + 1)
        return total

    def certify(self, x, n0: int = DEFAULT_N0, n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA,
                idx: int = 0, label: int | None = None) -> Certificate:
        """CERTIFY at x with n0 selection and n separate estimation samples."""
        _check_sizes(alpha, n0=n0, n=n)
        self.noise.reserve(n0 + n)  # built once, outside the per-input time
        start = time.perf_counter()
        selection = self.tally(x, 0, n0, idx)
        estimation = self.tally(x, n0, n, idx)
        prediction, n_a, lower, radius = certify_from_counts(
            selection[:-1], estimation[:-1], self.sigma, alpha,
            abstain=(int(selection[-1]), int(estimation[-1])))
        return Certificate(prediction, radius, lower, n_a, n0, n, self.sigma, alpha,
                           time.perf_counter() - start, label,
                           abstain_votes=int(selection[-1] + estimation[-1]))

    def predict(self, x, n: int = 1000, alpha: float = DEFAULT_ALPHA, idx: int = 0,
                label: int | None = None) -> Prediction:
        """PREDICT at x from n samples (binomial test of the top two counts)."""
        _check_sizes(alpha, n=n)
        self.noise.reserve(n)
        start = time.perf_counter()
        counts = self.tally(x, 0, n, idx)
        prediction, n_a, n_b, p_value = predict_from_counts(counts[:-1], alpha,
                                                            abstain=int(counts[-1]))
        return Prediction(prediction, n_a, n_b, n, p_value, self.sigma, alpha,
                          time.perf_counter() - start, label, abstain_votes=int(counts[-1]))


def _check_sizes(alpha: float, **sizes: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
