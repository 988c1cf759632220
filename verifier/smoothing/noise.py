"""Gaussian noise for smoothing: a reusable bank plus fresh per-input draws.

Each input x is evaluated on a stream of noise vectors numbered 0, 1, 2, ...:
CERTIFY uses positions [0, n0) for selection and [n0, n0 + n) for estimation,
PREDICT positions [0, n). The vectors are i.i.d. within a stream, so the
selection and estimation draws are independent, as the procedure requires.

The noise *bank* holds the first ``capacity`` vectors of the stream and is
shared by every input: drawing Gaussians costs more than running a small
network, and reusing them is exact for each input on its own (its certificate
holds with probability 1 - alpha, whatever the other inputs saw). It makes
the certificates of different inputs statistically dependent, which matters
only to someone who would treat them as independent trials. Positions beyond
the bank (when ``n0 + n`` vectors do not fit in the memory budget) are drawn
fresh for each input.

Seeding (reproducible for the same seed, bank capacity and sampling space,
whatever the batch size or thread count, up to float32 rounding in the matrix
product of the reduced path):
- bank chunk k (``CHUNK`` rows) is drawn from ``SeedSequence([seed, 0, k])``;
- fresh vectors for input ``idx``, from the first position p past the bank
  that a request needs, are drawn from ``SeedSequence([seed, 1, idx, p])``.
  Results for one input therefore do not depend on which other inputs ran.

Every stream is a numpy ``Generator`` on SFC64 (see :func:`generator`).
A vector is ``sigma * u`` with u standard normal (float32, numpy's ziggurat),
or ``u @ factor`` when a reduced-space factor is given (see ``graphs.py``).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

CHUNK = 4096
DEFAULT_BANK_MB = 2048


def generator(*key: int) -> np.random.Generator:
    """A numpy Generator on SFC64 (the fastest of numpy's bit generators) seeded by ``key``."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(list(key))))


def default_bank_bytes() -> int:
    """min(2 GiB, a quarter of the memory available now)."""
    budget = DEFAULT_BANK_MB << 20
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = min(budget, available // 4)
    except (ValueError, OSError, AttributeError):
        pass
    return int(budget)


class NoiseSource:
    """Noise vectors of dimension ``dim`` with an optional shared bank.

    ``factor`` (k x dim float32): a vector is ``u @ factor`` with u ~ N(0, I_k);
    without it a vector is ``sigma * u`` with u ~ N(0, I_dim).
    ``bank_bytes``: memory the bank may use (None: :func:`default_bank_bytes`).
    """

    def __init__(self, dim: int, sigma: float, seed: int = 0,
                 factor: np.ndarray | None = None, bank_bytes: int | None = None):
        if factor is not None and factor.shape[1] != dim:
            raise ValueError("factor must have dim columns")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.dim = dim
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.factor = None if factor is None else np.ascontiguousarray(factor, np.float32)
        self.normals_per_vector = dim if factor is None else factor.shape[0]
        budget = default_bank_bytes() if bank_bytes is None else int(bank_bytes)
        self.max_capacity = max(0, budget // (4 * dim))
        self.bank = np.empty((0, dim), np.float32)
        self.bank_seconds = 0.0

    @property
    def capacity(self) -> int:
        return len(self.bank)

    def _draw(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        if self.factor is None:
            rng.standard_normal(out=out, dtype=np.float32)
            return np.multiply(out, np.float32(self.sigma), out=out)
        u = rng.standard_normal((len(out), self.normals_per_vector), dtype=np.float32)
        return np.matmul(u, self.factor, out=out)

    def reserve(self, positions: int) -> None:
        """Grow the bank to hold ``positions`` vectors (within the budget)."""
        want = min(int(positions), self.max_capacity)
        have = len(self.bank)
        if want <= have:
            return
        start = time.perf_counter()
        first_chunk = have // CHUNK
        bank = np.empty((want, self.dim), np.float32)
        keep = first_chunk * CHUNK  # chunks are redrawn whole, so keep only full ones
        bank[:keep] = self.bank[:keep]
        chunks = range(first_chunk, -(-want // CHUNK))

        def fill(k: int) -> None:
            rows = bank[k * CHUNK:min((k + 1) * CHUNK, want)]
            self._draw(generator(self.seed, 0, k), rows)

        workers = max(1, min(len(chunks), os.cpu_count() or 1, 8))
        if workers == 1:
            for k in chunks:
                fill(k)
        else:  # numpy releases the GIL while it draws
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, chunks))
        bank.flags.writeable = False
        self.bank = bank
        self.bank_seconds += time.perf_counter() - start

    def batches(self, idx: int, start: int, stop: int, batch: int) -> Iterator[np.ndarray]:
        """Noise for positions [start, stop) of input ``idx``, at most ``batch`` rows each.

        Bank rows are returned as read-only views; do not keep them.
        """
        pos = start
        bank_end = min(stop, len(self.bank))
        while pos < bank_end:
            end = min(pos + batch, bank_end)
            yield self.bank[pos:end]
            pos = end
        if pos >= stop:
            return
        rng = generator(self.seed, 1, int(idx), int(pos))
        buffer = np.empty((min(batch, stop - pos), self.dim), np.float32)
        while pos < stop:
            end = min(pos + batch, stop)
            yield self._draw(rng, buffer[:end - pos])
            pos = end
