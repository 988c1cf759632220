"""Input sets for the bound engines: batched boxes and L2 balls.

An input set is a batch of ``B`` sets over the flat (C-order) input vector of
``n`` entries. Besides its box enclosure (for IBP), each set knows how to
*concretize* a batch of linear functions: the lower bound of ``A·x`` over the
set, for ``A`` of shape ``(B or 1, R, n)``, and the point where it is attained
(the adjoint of the bound with respect to ``A``, used by alpha-CROWN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verifier.errors import MismatchError, VerifierError


def _batched(value, name: str) -> np.ndarray:
    array = np.array(value, dtype=np.float64, copy=True)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise MismatchError(f"{name} must have shape (B, n) or (n,), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise VerifierError(f"{name} must be finite")
    return array


def _box_concretize(A, lower, upper, want_point):
    center = 0.5 * (lower + upper)
    radius = 0.5 * (upper - lower)
    value = (A @ center[:, :, None])[..., 0] - (np.abs(A) @ radius[:, :, None])[..., 0]
    point = None
    if want_point:
        point = center[:, None, :] - np.sign(A) * radius[:, None, :]
    return value, point


@dataclass(frozen=True, eq=False)
class Box:
    """A batch of boxes ``lower <= x <= upper``; arrays of shape ``(B, n)``."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self):
        lower = _batched(self.lower, "lower")
        upper = _batched(self.upper, "upper")
        if lower.shape != upper.shape:
            raise MismatchError(f"lower has shape {lower.shape} but upper has {upper.shape}")
        if np.any(lower > upper):
            raise VerifierError("empty box: some lower bound exceeds its upper bound")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)

    @property
    def batch(self) -> int:
        return self.lower.shape[0]

    @property
    def size(self) -> int:
        return self.lower.shape[1]

    def enclosure(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lower, self.upper

    def concretize(self, A: np.ndarray, want_point: bool = False):
        """Lower bound of ``A·x`` over each box: ``(B, R)``; optionally the minimiser."""
        return _box_concretize(A, self.lower, self.upper, want_point)

    def take(self, index) -> "Box":
        return Box(self.lower[index], self.upper[index])


@dataclass(frozen=True, eq=False)
class L2Ball:
    """A batch of L2 balls ``||x - center||_2 <= radius``, optionally clipped to a box.

    ``center``: ``(B, n)``; ``radius``: a scalar or ``(B,)``; ``lower`` and
    ``upper`` (optional, ``(B, n)``): the set is the ball intersected with the
    box. Linear functions are bounded with the dual norm
    (``min A·x = A·center - radius·||A||_2``) and, with a clip box, also over
    the box; the larger of the two lower bounds is sound for the intersection.
    """

    center: np.ndarray
    radius: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def __post_init__(self):
        center = _batched(self.center, "center")
        radius = np.broadcast_to(np.asarray(self.radius, dtype=np.float64),
                                 (center.shape[0],)).copy()
        if np.any(~np.isfinite(radius)) or np.any(radius < 0):
            raise VerifierError("radius must be finite and non-negative")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", radius)
        if (self.lower is None) != (self.upper is None):
            raise VerifierError("give both lower and upper of the clip box, or neither")
        if self.lower is not None:
            lower = np.broadcast_to(_batched(self.lower, "lower"), center.shape).copy()
            upper = np.broadcast_to(_batched(self.upper, "upper"), center.shape).copy()
            if np.any(lower > upper):
                raise VerifierError("empty clip box: some lower bound exceeds its upper bound")
            object.__setattr__(self, "lower", lower)
            object.__setattr__(self, "upper", upper)

    @property
    def batch(self) -> int:
        return self.center.shape[0]

    @property
    def size(self) -> int:
        return self.center.shape[1]

    def enclosure(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius[:, None]
        lower, upper = self.center - r, self.center + r
        if self.lower is not None:
            lower = np.maximum(lower, self.lower)
            upper = np.minimum(upper, self.upper)
            upper = np.maximum(upper, lower)  # an empty intersection: any bound is sound
        return lower, upper

    def concretize(self, A: np.ndarray, want_point: bool = False):
        norm = np.sqrt(np.einsum("brn,brn->br", A, A))
        r = self.radius[:, None]
        value = (A @ self.center[:, :, None])[..., 0] - r * norm
        point = None
        if want_point:
            direction = np.divide(A, norm[..., None], out=np.zeros(np.broadcast_shapes(
                A.shape, (self.batch,) + A.shape[1:])), where=norm[..., None] > 0)
            point = self.center[:, None, :] - r[..., None] * direction
        if self.lower is not None:
            box_value, box_point = _box_concretize(A, self.lower, self.upper, want_point)
            use_box = box_value > value
            value = np.where(use_box, box_value, value)
            if want_point:
                point = np.where(use_box[..., None], box_point, point)
        return value, point

    def take(self, index) -> "L2Ball":
        clip = {} if self.lower is None else {"lower": self.lower[index],
                                              "upper": self.upper[index]}
        return L2Ball(self.center[index], self.radius[index], **clip)


InputSet = Box | L2Ball
