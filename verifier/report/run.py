"""Build a :class:`Report`: every method at every eps, cheapest first.

Per eps: the bound methods run batched over all correctly classified images
(alpha-CROWN only on those CROWN left open: its column counts an image
certified by either, both being sound); PGD runs batched over all of them (so its column is a complete upper
envelope and the soundness check compares every certified image with an
attack); ``complete`` runs only on the images no bound method certified and
PGD did not break, with ``timeout_per_image`` seconds each. Smoothing, when
asked, runs CERTIFY once per image (it does not depend on eps).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.report.attack import AttackOptions, pgd_attack
from verifier.report.bounds import BOUND_METHODS, certify
from verifier.report.complete import complete_many
from verifier.report.problem import NORMS, Images
from verifier.report.table import (BROKEN, CERTIFIED, NOT_CERTIFIED, ROBUST, WRONG, Column,
                                   Report, SmoothingPart, check_soundness)

METHODS = BOUND_METHODS + ("pgd", "complete")
DEFAULT_METHODS = ("ibp", "naive-ibp", "crown", "alpha-crown", "pgd", "complete")


@dataclass(frozen=True)
class SmoothingOptions:
    sigma: float
    radii: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    batch: int = 1024


def _spread(status_of_correct, seconds: float, correct: np.ndarray) -> tuple[tuple, tuple]:
    """Statuses for every image (WRONG where misclassified) and evenly spread seconds."""
    status = np.full(len(correct), WRONG, dtype=object)
    status[correct] = status_of_correct
    share = seconds / max(1, int(correct.sum()))
    return tuple(status), tuple(share if ok else 0.0 for ok in correct)


def robustness_report(model, dataset, eps, *, norm="linf", methods=DEFAULT_METHODS, clip=None,
                      timeout_per_image=10.0, indices=None, smoothing=None, seed=0,
                      attack=None, progress=None) -> Report:
    """Run every method of ``methods`` at every eps on ``dataset`` (a smoothing
    :class:`~verifier.smoothing.Dataset`); ``indices`` selects images (default all).

    ``progress(stage, done, total)`` is called as work finishes (stage names the
    count: "... certified", "... broken" or "... images done"). Raises
    :class:`~verifier.report.table.SoundnessError` when an attack breaks an
    image a sound method certified.
    """
    from verifier.frontend import load_model
    from verifier.runtime import open_session

    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    methods = tuple(m for m in METHODS if m in methods)
    if norm == "l2":
        methods = tuple(m for m in methods if m != "complete")
    attack = attack or AttackOptions(seed=seed)
    graph = load_model(model)
    session = open_session(model, device="cpu")
    chosen = np.arange(len(dataset)) if indices is None else np.asarray(indices, int)
    x = dataset.x[chosen]
    images = Images(x.reshape(len(chosen), -1).astype(np.float64), dataset.y[chosen])
    predictions = session.run(x).reshape(len(chosen), -1).argmax(axis=1)
    correct = predictions == images.y
    right = images.take(np.flatnonzero(correct))
    report_progress = progress or (lambda *args: None)
    seconds = {m: 0.0 for m in methods}
    columns = []
    for eps_value in eps:
        open_ = np.ones(len(right), dtype=bool)
        found = {}
        for method in (m for m in BOUND_METHODS if m in methods):
            start = time.perf_counter()
            if method == "alpha-crown" and "crown" in found:
                done = found["crown"].copy()
                if (~done).any():
                    done[~done] = certify(graph, right.take(~done), eps_value, norm, clip,
                                          method)
            else:
                done = certify(graph, right, eps_value, norm, clip, method)
            spent = time.perf_counter() - start
            seconds[method] += spent
            found[method] = done
            open_ &= ~done
            columns.append(Column(method, eps_value,
                                  *_spread(np.where(done, CERTIFIED, NOT_CERTIFIED), spent,
                                           correct)))
            report_progress(f"{method} eps={eps_value:g} certified", int(done.sum()), len(right))
        broken = np.zeros(len(right), dtype=bool)
        if "pgd" in methods:
            start = time.perf_counter()
            broken, _ = pgd_attack(graph, session, right, eps_value, norm, clip, attack)
            spent = time.perf_counter() - start
            seconds["pgd"] += spent
            columns.append(Column("pgd", eps_value,
                                  *_spread(np.where(broken, BROKEN, ROBUST), spent, correct)))
            report_progress(f"pgd eps={eps_value:g} broken", int(broken.sum()), len(right))
        if "complete" in methods:
            columns.append(_complete_column(model, graph, right, eps_value, clip, open_, broken,
                                            correct, timeout_per_image, seed, seconds,
                                            report_progress, "pgd" in methods))
    image_ids = tuple(int(i) for i in chosen)
    check_soundness(columns, image_ids)
    part = None
    if smoothing is not None:
        start = time.perf_counter()
        part = _smoothing_part(model, dataset, chosen, smoothing, seed, report_progress)
        seconds["smoothing"] = time.perf_counter() - start
    return Report(str(model), dataset.source, norm, clip, tuple(eps), methods, image_ids,
                  tuple(int(v) for v in images.y), tuple(int(v) for v in predictions),
                  tuple(columns), part, seconds)


def _complete_column(model, graph, right, eps_value, clip, open_, broken, correct, timeout,
                     seed, seconds, report_progress, attacked) -> Column:
    status = np.where(broken, BROKEN, CERTIFIED).astype(object)
    per_image = np.zeros(len(right))
    todo = np.flatnonzero(open_ & ~broken)
    counter = {"done": 0}

    def on_done(_status):
        counter["done"] += 1
        report_progress(f"complete eps={eps_value:g} images done", counter["done"], len(todo))

    start = time.perf_counter()
    statuses, spent = complete_many(model, right.take(todo), eps_value, graph.output_size,
                                    clip, timeout, seed, on_done, attacked)
    seconds["complete"] += time.perf_counter() - start
    status[todo] = statuses
    per_image[todo] = spent
    full = np.full(len(correct), WRONG, dtype=object)
    full[correct] = status
    times = np.zeros(len(correct))
    times[correct] = per_image
    return Column("complete", eps_value, tuple(full), tuple(times))


def _smoothing_part(model, dataset, chosen, options: SmoothingOptions, seed, report_progress):
    from verifier.smoothing import SmoothedClassifier

    classifier = SmoothedClassifier(model, options.sigma, batch=options.batch, seed=seed)
    certificates = []
    for k, idx in enumerate(chosen):
        certificates.append(classifier.certify(dataset.x[idx], options.n0, options.n,
                                               options.alpha, idx=int(idx),
                                               label=int(dataset.y[idx])))
        report_progress(f"smoothing sigma={options.sigma:g} images done", k + 1, len(chosen))
    return SmoothingPart(options.sigma, tuple(options.radii), tuple(certificates),
                         int(np.prod(classifier.input_shape)))
