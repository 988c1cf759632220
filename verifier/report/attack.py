"""Batched untargeted PGD over many images and restarts (Madry et al. 2018).

The published tables use PGD with 50 steps of size eps/10 and 10 random
restarts, half on the cross-entropy loss and half on the margin loss
``max_{j != y} f_j - f_y`` (Carlini and Wagner 2017). Every restart of every
image runs in one batch through the IR's float64 evaluator and its backward
pass (:mod:`verifier.ir.grad`); images already broken leave the batch.
``verifier.search.attack.pgd`` is the verifier's targeted attack on one
property; it stops the whole batch at the first success and has only the
polytope margin loss, so the report has its own loop on the same gradients.

L-infinity steps are ``step * sign(gradient)``; L2 steps ``step * g / |g|``;
both are projected back onto the input set. A found point counts as an
attack only after it is rounded to float32 *inside* its input set and
onnxruntime, on that float32 point, scores some other class at least as high
as the label (the unsafe set of the generated VNN-LIB properties).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.ir import evaluate
from verifier.ir.grad import grad_input
from verifier.report.problem import Images, contains, enclosing_box, project


@dataclass(frozen=True)
class AttackOptions:
    steps: int = 50
    restarts: int = 10      # the first half cross-entropy, the rest margin loss
    step_fraction: float = 0.1  # step = step_fraction * eps
    seed: int = 0


def _loss_cotangent(logits: np.ndarray, labels: np.ndarray, use_ce: np.ndarray) -> np.ndarray:
    """d loss / d logits, for a loss the attack *increases*."""
    rows = np.arange(len(labels))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    ce = shifted / shifted.sum(axis=1, keepdims=True)
    ce[rows, labels] -= 1.0
    others = logits.copy()
    others[rows, labels] = -np.inf
    margin = np.zeros_like(logits)
    margin[rows, others.argmax(axis=1)] = 1.0
    margin[rows, labels] -= 1.0
    return np.where(use_ce[:, None], ce, margin)


def _violated(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Whether some other class scores at least the label."""
    rows = np.arange(len(labels))
    others = np.asarray(logits, np.float64).copy()
    own = others[rows, labels].copy()
    others[rows, labels] = -np.inf
    return others.max(axis=1) >= own


def float32_inside(points: np.ndarray, images: Images, eps: float, norm: str, clip) -> np.ndarray:
    """``points`` rounded to float32 without leaving the input sets (per coordinate
    for boxes; pulled towards the centre for L2 balls). Rows that still fall outside
    are NaN."""
    if norm == "linf":
        lower, upper = enclosing_box(images, eps, norm, clip)
        low32 = lower.astype(np.float32)
        low32 = np.where(low32 < lower, np.nextafter(low32, np.float32(np.inf)), low32)
        high32 = upper.astype(np.float32)
        high32 = np.where(high32 > upper, np.nextafter(high32, np.float32(-np.inf)), high32)
        rounded = np.clip(points.astype(np.float32), low32, high32)
    else:
        shrunk = images.x + (points - images.x) * (1.0 - 1e-5)
        rounded = shrunk.astype(np.float32)
    inside = contains(rounded.astype(np.float64), images, eps, norm, clip)
    return np.where(inside[:, None], rounded.astype(np.float64), np.nan)


def pgd_attack(graph, session, images: Images, eps: float, norm: str, clip,
               options: AttackOptions = AttackOptions()) -> tuple[np.ndarray, np.ndarray]:
    """PGD on every image; returns (broken (B,) bool, the replayed points (B, n), NaN rows
    where nothing was found)."""
    count, size = images.x.shape
    found = np.full((count, size), np.nan)
    if count == 0 or eps <= 0:
        return np.zeros(count, dtype=bool), found
    rng = np.random.default_rng([options.seed, 7])
    restarts = options.restarts
    owner = np.repeat(np.arange(count), restarts)
    use_ce = np.tile(np.arange(restarts) < (restarts + 1) // 2, count)
    expanded = images.take(owner)
    lower, upper = enclosing_box(expanded, eps, norm, clip)
    if norm == "linf":
        x = lower + rng.random(lower.shape) * (upper - lower)
    else:
        direction = rng.standard_normal(expanded.x.shape)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        x = project(expanded.x + direction * eps * rng.random((len(owner), 1)),
                    expanded, eps, norm, clip)
    step = options.step_fraction * eps
    candidates = np.full((count, size), np.nan)
    active = np.arange(len(owner))
    shape = (len(owner),) + graph.input_shape
    for _ in range(options.steps + 1):
        rows = owner[active]
        values = evaluate(graph, x[active].reshape((len(active),) + shape[1:]), all_values=True)
        logits = values[graph.output].reshape(len(active), -1)
        hit = _violated(logits, images.y[rows])
        candidates[rows[hit]] = x[active[hit]]
        cot = _loss_cotangent(logits, images.y[rows], use_ce[active])
        grad = grad_input(graph, values, cot.reshape(values[graph.output].shape))
        keep = ~np.isin(rows, rows[hit])  # an image once broken leaves the batch
        active, grad = active[keep], grad.reshape(len(keep), -1)[keep]
        if len(active) == 0:
            break
        if norm == "linf":
            moved = x[active] + step * np.sign(grad)
        else:
            length = np.linalg.norm(grad, axis=1, keepdims=True)
            moved = x[active] + step * grad / np.maximum(length, 1e-300)
        x[active] = project(moved, expanded.take(active), eps, norm, clip,
                            (lower[active], upper[active]))
    tried = ~np.isnan(candidates[:, 0])
    if not tried.any():
        return np.zeros(count, dtype=bool), found
    subset = images.take(np.flatnonzero(tried))
    rounded = float32_inside(candidates[tried], subset, eps, norm, clip)
    ok = ~np.isnan(rounded[:, 0])
    broken = np.zeros(count, dtype=bool)
    if ok.any():
        batch = rounded[ok].astype(np.float32).reshape((int(ok.sum()),) + session.input_shape)
        replayed = _violated(session.run(batch).reshape(int(ok.sum()), -1), subset.y[ok])
        rows = np.flatnonzero(tried)[ok][replayed]
        broken[rows] = True
        found[rows] = rounded[ok][replayed]
    return broken, found
