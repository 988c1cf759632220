"""Axis arguments of ONNX ops, normalised once for every converter.

ONNX lets axes count from the end (``-1`` is the last axis). Every converter
turns its ``axis``/``axes`` attributes and inputs into non-negative axes with
the helpers here, so the IR only holds axes in ``range(rank)`` and the rule
(``axis + rank`` for a negative axis, never ``axis + rank + 1``) lives in one
place. Out-of-range or repeated axes are rejected with a reason.
"""
from __future__ import annotations

from verifier.frontend.registry import Unsupported


def normalize_axis(axis, rank: int, *, split_point: bool = False) -> int:
    """``axis`` of a rank-``rank`` tensor as a non-negative axis.

    Valid axes are ``[-rank, rank)``; with ``split_point`` (Flatten's
    ``axis``, a position *between* axes) ``[-rank, rank]``. A negative axis
    counts from the end: ``axis + rank`` in both cases.
    """
    axis = int(axis)
    high = rank + 1 if split_point else max(rank, 1)
    if not -rank <= axis < high:
        allowed = f"[{-rank}, {rank}]" if split_point else f"[{-rank}, {rank - 1}]"
        raise Unsupported(f"axis {axis} is out of range {allowed} for a tensor of rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes, rank: int) -> list[int]:
    """Several axes (in the given order), each normalised; repeats are rejected."""
    result = [normalize_axis(a, rank) for a in axes]
    if len(set(result)) != len(result):
        raise Unsupported(f"axes {[int(a) for a in axes]} name the same axis twice")
    return result


def axes_argument(node, args, attrs, index: int = 1):
    """The raw ``axes`` of a node: the attribute (older opsets) or the constant
    input ``index`` (newer opsets); None when neither is given."""
    from verifier.frontend.convert_shape import constant_input

    if attrs.get("axes") is not None:
        return [int(a) for a in attrs["axes"]]
    value = constant_input(args, index, f"the axes of {node.op_type}")
    return None if value is None else [int(a) for a in value.reshape(-1)]
