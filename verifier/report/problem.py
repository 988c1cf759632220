"""The question a report asks of one image: its input set and its margin specification.

For image x with label y and budget eps, the input set is the eps-ball of the
norm (``linf``: a box, ``l2``: a Euclidean ball) around x, intersected with
the data domain ``clip = (lo, hi)`` when given. The model is robust there iff
every margin ``f_y(x') - f_j(x')``, j != y, is positive on the whole set; the
rows ``e_y - e_j`` form the margin matrix C.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.bounds import Box, L2Ball
from verifier.spec.generate import clip_box, margin_rows

NORMS = ("linf", "l2")


@dataclass(frozen=True, eq=False)
class Images:
    """A batch of flattened images ``x`` (B, n) float64 with labels ``y`` (B,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index) -> "Images":
        return Images(self.x[index], self.y[index])


def margin_matrices(labels: np.ndarray, n_outputs: int) -> np.ndarray:
    """``(B, n_outputs - 1, n_outputs)``: the margin rows of each label."""
    return np.stack([margin_rows(int(label), n_outputs) for label in labels]) \
        if len(labels) else np.zeros((0, n_outputs - 1, n_outputs))


def enclosing_box(images: Images, eps: float, norm: str, clip) -> tuple[np.ndarray, np.ndarray]:
    """The smallest box holding every input set (the set itself for ``linf``)."""
    return clip_box(images.x, eps, clip)


def input_sets(images: Images, eps: float, norm: str, clip):
    """The input sets as the bound engine takes them: a Box or a (clipped) L2Ball."""
    lower, upper = enclosing_box(images, eps, norm, clip)
    if norm == "linf":
        return Box(lower, upper)
    if clip is None:
        return L2Ball(images.x, eps)
    return L2Ball(images.x, eps, np.full_like(images.x, clip[0]), np.full_like(images.x, clip[1]))


def project(points: np.ndarray, images: Images, eps: float, norm: str, clip,
            box: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A point of each input set near ``points``: exact for linf (``box``: the sets'
    precomputed enclosing box); for l2 the ball projection then the clip (which stays
    in the ball, since the centre is in the clip box)."""
    if norm == "l2":
        delta = points - images.x
        length = np.linalg.norm(delta, axis=1, keepdims=True)
        points = images.x + delta * np.minimum(1.0, eps / np.maximum(length, 1e-300))
        if clip is not None:
            points = np.clip(points, clip[0], clip[1])
        return points
    lower, upper = box if box is not None else enclosing_box(images, eps, norm, clip)
    return np.clip(points, lower, upper)


def contains(points: np.ndarray, images: Images, eps: float, norm: str, clip) -> np.ndarray:
    """Whether each point lies in its image's input set (exactly, in float64)."""
    if norm == "l2":
        inside = np.linalg.norm(points - images.x, axis=1) <= eps
        if clip is not None:
            inside &= np.all((points >= clip[0]) & (points <= clip[1]), axis=1)
        return inside
    lower, upper = enclosing_box(images, eps, norm, clip)
    return np.all((points >= lower) & (points <= upper), axis=1)
