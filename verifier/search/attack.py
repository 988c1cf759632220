"""Falsification: random sampling and a batched projected-gradient attack.

Each batch element is one (input box, unsafe polytope) pair. A polytope
``C y <= d`` is reached when its worst row ``max_r (C y - d)_r`` is <= 0, so
the attack minimises that worst-row margin by signed-gradient steps projected
onto the box (L-infinity PGD, Madry et al. 2018), with random restarts.
Gradients come from the IR's own backward pass (:mod:`verifier.ir.grad`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.ir import evaluate
from verifier.ir.grad import grad_input

#: padding rows for polytopes with fewer rows than the widest one: never the max
_PAD_D = 1e30


@dataclass(frozen=True)
class Targets:
    """Batched unsafe polytopes: C (P, rows, n_out), d (P, rows), strict (P, rows)."""

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray

    @classmethod
    def from_polytopes(cls, polytopes):
        """Polytopes padded to the widest; a polytope with no row (every output
        unsafe) is all padding, so its margin is -1e30: always reached."""
        rows = max(1, max(p.rows for p in polytopes))
        n_out = polytopes[0].n_outputs
        C = np.zeros((len(polytopes), rows, n_out))
        d = np.full((len(polytopes), rows), _PAD_D)
        strict = np.zeros((len(polytopes), rows), dtype=bool)
        for k, p in enumerate(polytopes):
            C[k, :p.rows], d[k, :p.rows], strict[k, :p.rows] = p.C, p.d, p.strict
        return cls(C, d, strict)

    def margins(self, y, which):
        """Worst-row margin ``max_r (C y - d)_r`` of outputs y (B, n_out) for
        polytopes ``which`` (B,), and the index of the worst row."""
        values = np.einsum("brj,bj->br", self.C[which], y) - self.d[which]
        worst = values.argmax(axis=1)
        return values[np.arange(len(which)), worst], worst

    def reached(self, y, which):
        """Whether y is in polytope ``which`` (strict rows strictly), per element."""
        values = np.einsum("brj,bj->br", self.C[which], y) - self.d[which]
        strict = self.strict[which]
        return np.all(np.where(strict, values < 0, values <= 0), axis=1)


def _clip(x, lower, upper):
    return np.clip(x, lower, upper)


def pgd(graph, lower, upper, targets: Targets, which, *, steps=50, restarts=1,
        rng=None, deadline=None, clock=None, start=None, project=_clip):
    """Minimise the worst-row margin of polytope ``which[b]`` over box b.

    ``lower``/``upper``: (B, n_in) boxes; ``which``: (B,) polytope indices.
    Returns (best x (B*restarts, n_in), its margin, box index per row). The
    first restart starts at ``start`` (default: the box centre), the others
    uniformly at random. ``project(x, lower, upper)`` maps points (rows) back
    into their set after every step: the box by default, box ∩ {A x <= b} for
    regions with linear input constraints.
    """
    rng = rng or np.random.default_rng(0)
    batch, n_in = lower.shape
    lo = np.repeat(lower, restarts, axis=0)
    hi = np.repeat(upper, restarts, axis=0)
    poly = np.repeat(np.asarray(which), restarts)
    width = hi - lo
    x = lo + rng.random(lo.shape) * width
    first = np.arange(batch) * restarts
    x[first] = (lower + upper) / 2 if start is None else start
    x = project(x, lo, hi)
    best_x, best = x.copy(), np.full(len(x), np.inf)
    shape = (len(x),) + graph.input_shape
    for step in range(steps):
        values = evaluate(graph, x.reshape(shape), all_values=True)
        y = values[graph.output].reshape(len(x), -1)
        margin, worst = targets.margins(y, poly)
        better = margin < best
        best[better], best_x[better] = margin[better], x[better]
        if (best <= 0).any() or (deadline is not None and clock() > deadline):
            break
        cot = targets.C[poly, worst]  # d margin / d y
        g = grad_input(graph, values, cot.reshape(values[graph.output].shape))
        g = g.reshape(len(x), -1)
        size = 0.5 * width * (0.5 * (1 + np.cos(np.pi * step / steps)) + 0.02)
        x = project(x - size * np.sign(g), lo, hi)
    else:
        y = evaluate(graph, x.reshape(shape)).reshape(len(x), -1)
        margin, _ = targets.margins(y, poly)
        better = margin < best
        best[better], best_x[better] = margin[better], x[better]
    return best_x, best, np.repeat(np.arange(batch), restarts)


def sample_points(lower, upper, count, rng, project=_clip):
    """``count`` points per box ``(batch * count, n_in)``: each box's centre
    first, then uniform random points, all mapped by ``project``."""
    batch, n_in = lower.shape
    x = lower[:, None, :] + rng.random((batch, count, n_in)) * (upper - lower)[:, None, :]
    x[:, 0] = (lower + upper) / 2
    x = x.reshape(batch * count, n_in)
    return project(x, np.repeat(lower, count, axis=0), np.repeat(upper, count, axis=0))


def sample_margins(graph, lower, upper, targets: Targets, which, count, rng,
                   project=_clip):
    """Worst-row margins at ``count`` random points per box (plus the centre),
    each mapped by ``project`` (see :func:`pgd`)."""
    batch = len(lower)
    x = sample_points(lower, upper, count, rng, project)
    poly = np.repeat(np.asarray(which), count)
    y = evaluate(graph, x.reshape((len(x),) + graph.input_shape)).reshape(len(x), -1)
    margin, _ = targets.margins(y, poly)
    return x, margin, np.repeat(np.arange(batch), count)
