"""Certify margin specifications with the bound engine, many images per call.

Methods (each returns, per image, whether every margin ``f_y - f_j`` has a
sound lower bound above its float32 decision margin, so that a certificate is
about the float32 network onnxruntime runs, as ``verify``'s ``unsat`` is;
:func:`verifier.bounds.decision_margins` from one IBP pass over the input
sets, the largest margin of an image applied to each of its rows):

- ``ibp``: interval bounds with the last linear layer folded into the
  specification ("elision", Gowal et al. 2018): the margin ``(W_y - W_j)·h +
  b_y - b_j`` is bounded from the interval of the penultimate value h, which
  is far tighter than subtracting separate logit intervals. When the output
  node is not a Linear layer nothing can be folded and this is ``naive-ibp``.
- ``naive-ibp``: interval bounds on each logit; certified iff
  ``lower[y] > max_j upper[j]``.
- ``crown``: textbook CROWN (Zhang et al. 2018), as published: the input
  bounds of each ReLU from CROWN back-substitution alone, the adaptive lower
  slope (1 where ``u > -l``, else 0), and the margins ``C·y`` from one
  backward pass with C the margin matrix (the last layer folded exactly). On
  IBP-trained networks it can certify fewer images than ``ibp``.
- ``crown+ibp``: CROWN and IBP combined (the engine's default CROWN): every
  intermediate bound is the tighter of the two, and each margin's lower bound
  the larger of CROWN's and folded IBP's. It certifies every image ``ibp``
  does; it is not always tighter than textbook ``crown`` (it skips CROWN on
  the neurons IBP finds stable), but on the digits models it certified every
  image either one did, and more. (Not CROWN-IBP of Zhang et al. 2020, which
  takes its intermediate bounds from IBP alone.)
- ``alpha-crown``: the engine's alpha-CROWN (optimised slopes, intermediate
  bounds intersected with IBP).
- ``lipschitz``: the certified radius ``min_j m_j(x) / L_j`` with the local
  Lipschitz bounds on the eps-ball (:mod:`verifier.lipschitz`) reaches eps.

On an L2 ball the interval methods start from the ball's enclosing box (as
the engine's IBP does), so they are much looser there than CROWN, which
concretizes with the dual norm.
"""
from __future__ import annotations

import numpy as np

from verifier.bounds import BoundOptions, compute_bounds, decision_margins, refuted
from verifier.ir.ops import Linear
from verifier.report.problem import Images, input_sets, margin_matrices

BOUND_METHODS = ("ibp", "naive-ibp", "crown", "crown+ibp", "alpha-crown", "lipschitz")
#: textbook CROWN: intermediate bounds by back-substitution only, never intersected with IBP
TEXTBOOK_CROWN = BoundOptions(intermediate="crown", intersect_ibp=False)


def folded_ibp_lower(graph, result, C: np.ndarray) -> np.ndarray | None:
    """Lower bounds ``(B, rows)`` of ``C·y`` by IBP with the last Linear folded
    into C, from an IBP ``result`` over the input sets.

    None when the output node is not a Linear layer.
    """
    last = graph.nodes[graph.output]
    if not isinstance(last, Linear):
        return None
    hidden = result.node_bounds[last.inputs[0]]
    weight = C @ last.weight                       # (B, rows, hidden)
    center = (hidden.upper + hidden.lower) / 2.0   # (B, hidden)
    radius = (hidden.upper - hidden.lower) / 2.0
    lower = (weight @ center[:, :, None])[..., 0] - (np.abs(weight) @ radius[:, :, None])[..., 0]
    if last.bias is not None:
        lower = lower + C @ last.bias
    return lower


def naive_ibp_lower(result, labels: np.ndarray) -> np.ndarray:
    """Lower bounds ``lower[y] - upper[j]`` (B, n_outputs - 1) from separate
    logit intervals of an IBP ``result``."""
    rows = np.arange(len(labels))
    own = result.lower[rows, labels][:, None]
    others = result.upper.copy()
    others[rows, labels] = -np.inf
    gaps = own - others
    return np.sort(gaps, axis=1)[:, :-1]  # drop the -(-inf) entry of the label itself


def lipschitz_certified(graph, images: Images, eps: float, norm: str) -> np.ndarray:
    """Per image, whether its Lipschitz radius (the local bound on the eps-ball,
    never below the global one; :func:`verifier.lipschitz.certify`) reaches
    eps. The whole ball is covered, so the clipped set is too. Like the
    ``lipschitz`` command, this is about the real-valued network with a small
    margin slack, not the float32 gap bound of the other columns."""
    from verifier.lipschitz import certify as lipschitz_certify

    shape = (len(images),) + tuple(graph.input_shape)
    found = lipschitz_certify(graph, images.x.reshape(shape), images.y, norm, local_eps=eps)
    return np.array([c.radius >= eps for c in found], dtype=bool)


def certify(graph, images: Images, eps: float, norm: str, clip, method: str) -> np.ndarray:
    """Per image, whether ``method`` proves every margin positive on its input set."""
    if method not in BOUND_METHODS:
        raise ValueError(f"unknown bound method {method!r}; one of {BOUND_METHODS}")
    if len(images) == 0:
        return np.zeros(0, dtype=bool)
    if method == "lipschitz":
        return lipschitz_certified(graph, images, eps, norm)
    inputs = input_sets(images, eps, norm, clip)
    C = margin_matrices(images.y, graph.output_size)
    ibp = compute_bounds(graph, inputs, method="ibp", upper=True)  # bounds and margins
    lower = None
    if method in ("ibp", "crown+ibp"):
        lower = folded_ibp_lower(graph, ibp, C)
    if lower is None and method in ("ibp", "naive-ibp"):
        lower = naive_ibp_lower(ibp, images.y)
    if method in ("crown", "crown+ibp", "alpha-crown"):
        engine = "alpha-crown" if method == "alpha-crown" else "crown"
        options = TEXTBOOK_CROWN if method == "crown" else None
        bound = compute_bounds(graph, inputs, method=engine, C=C, upper=False,
                               options=options).lower
        lower = bound if lower is None else np.maximum(lower, bound)
    # the direct float32 bound only where it can change a decision (see decision_margins)
    margin = decision_margins(graph, ibp.node_bounds, C, lower=lower)
    return np.all(refuted(lower, margin.max(axis=1, keepdims=True)), axis=1)
