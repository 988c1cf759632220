"""Certified radii from Lipschitz bounds: ``r(x) = min_j m_j(x) / L_j``.

With the label ``y`` and margins ``m_j(x) = f_y(x) - f_j(x)``, every ``x'``
with ``||x' - x|| <= r`` keeps ``m_j(x') >= m_j(x) - L_j r > 0`` for all
``j``, so the class stays ``y``. Margins are computed in float64 by the
evaluator and :data:`MARGIN_SLACK` is subtracted first. The radius is a
statement about the real-valued network: unlike ``verify``'s ``unsat`` it does
not account for the float32 rounding gap of onnxruntime's network over the
ball (:mod:`verifier.bounds.roundoff`), which the slack covers only for
networks whose outputs are of order 1.

With a local radius ``eps`` the local constants hold on the ball of radius
``eps`` only, so the local radius is ``min(eps, min_j m_j / L_j^local)``;
the reported radius is the larger of it and the global radius (both are
certificates), so it is never below the global one.

A model with one output is a binary classifier ``sign(f)`` (label 1 when
``f > 0``); its margin is ``f`` for label 1 and ``-f`` for label 0, and for a
linear ``f = w·x + b`` the L2 radius is exactly ``|w·x + b| / ||w||_2``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.ir.evaluate import evaluate
from verifier.ir.graph import Graph
from verifier.lipschitz.global_bound import GlobalLipschitz, check_norm, global_lipschitz
from verifier.lipschitz.local_bound import batch_inputs, local_lipschitz

#: subtracted from every margin before dividing by the Lipschitz constant
MARGIN_SLACK = 1e-6

HEADER = "idx\tlabel\tpredict\tmargin\tlipschitz\tradius\tcorrect"


@dataclass(frozen=True)
class LipschitzCertificate:
    """One input's certificate. ``radius`` is 0 when misclassified;
    ``lipschitz`` is the constant of the margin that binds the radius;
    ``seconds`` is the batch's time divided by its size."""

    label: int
    prediction: int
    margin: float
    lipschitz: float
    radius: float
    seconds: float
    abstained: bool = False  # never: kept for verifier.smoothing.Summary

    @property
    def correct(self) -> bool:
        return self.prediction == self.label

    def row(self, idx: int) -> str:
        return (f"{idx}\t{self.label}\t{self.prediction}\t{self.margin:.6g}\t"
                f"{self.lipschitz:.6g}\t{self.radius:.6g}\t{int(self.correct)}")

    def to_dict(self) -> dict:
        return {"label": self.label, "predict": self.prediction, "margin": self.margin,
                "lipschitz": self.lipschitz, "radius": self.radius,
                "correct": self.correct}


def margins(graph: Graph, x, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(B, K)`` margins ``f_y - f_j`` (one column ``+-f`` for a binary
    model) and the ``(B,)`` predictions."""
    logits = evaluate(graph, np.asarray(x, dtype=np.float64).reshape(
        (len(x),) + graph.input_shape)).reshape(len(x), -1)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.shape[1] == 1:
        sign = np.where(labels == 1, 1.0, -1.0)
        return sign[:, None] * logits, (logits[:, 0] > 0).astype(np.int64)
    own = logits[np.arange(len(x)), labels]
    return own[:, None] - logits, logits.argmax(axis=1)


def radii(margin: np.ndarray, lipschitz: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """Certified radius per row and the constant of the binding margin.

    ``margin``, ``lipschitz``: ``(B, K)``; the label's own column is ignored
    (except for a binary model's single column).
    """
    usable = margin - MARGIN_SLACK
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lipschitz > 0, usable / lipschitz, np.where(usable > 0, np.inf, 0.0))
    if margin.shape[1] > 1:
        ratio[np.arange(len(margin)), labels] = np.inf
    binding = ratio.argmin(axis=1)
    radius = np.maximum(ratio[np.arange(len(margin)), binding], 0.0)
    return radius, lipschitz[np.arange(len(margin)), binding]


def certify(graph: Graph, x, labels, norm: str = "l2", *, local_eps: float | None = None,
            method: str = "crown", global_bound: GlobalLipschitz | None = None
            ) -> list[LipschitzCertificate]:
    """Certified radii (in ``norm``) of every input ``x[b]`` with label ``labels[b]``."""
    check_norm(norm)
    start = time.perf_counter()
    x, labels = batch_inputs(graph, x, labels, "certify")
    if global_bound is None or global_bound.norm != norm:
        global_bound = global_lipschitz(graph, norm)
    margin, prediction = margins(graph, x, labels)
    if margin.shape[1] == 1:
        constants = np.broadcast_to(global_bound.logit, margin.shape)
    else:
        constants = global_bound.margin[labels]
    radius, binding = radii(margin, constants, labels)
    if local_eps is not None:
        local = local_lipschitz(graph, x, labels, local_eps, norm, method=method,
                                global_bound=global_bound)
        local_radius, local_binding = radii(margin, local, labels)
        local_radius = np.minimum(local_radius, float(local_eps))
        better = local_radius > radius
        radius = np.where(better, local_radius, radius)
        binding = np.where(better, local_binding, binding)
    correct = prediction == labels
    radius = np.where(correct, radius, 0.0)
    if margin.shape[1] > 1:
        worst = np.where(np.eye(margin.shape[1], dtype=bool)[labels], np.inf, margin).min(axis=1)
    else:
        worst = margin[:, 0]
    seconds = (time.perf_counter() - start) / max(1, len(x))
    return [LipschitzCertificate(int(labels[b]), int(prediction[b]), float(worst[b]),
                                 float(binding[b]), float(radius[b]), seconds)
            for b in range(len(x))]
