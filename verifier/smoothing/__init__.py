"""Randomized smoothing (Cohen, Rosenfeld and Kolter, 2019) on onnxruntime sessions.

Certifies the *smoothed* classifier g(x) = argmax_c P(f(x + eps) = c),
eps ~ N(0, sigma^2 I), never the base network f: a certificate says that g
is constant on an L2 ball, with probability at least 1 - alpha over the
sampling. sigma and radii are in the model's input units.

    SmoothedClassifier(model, sigma, device=, threads=, batch=, seed=, bank_bytes=, reduce=)
        .certify(x, n0, n, alpha, idx=, label=) -> Certificate
        .predict(x, n, alpha, idx=, label=) -> Prediction
        .counts(x, start, count, idx=) -> class counts (finite logits only)
        .tally(x, start, count, idx=) -> class counts + abstaining votes (non-finite logits)
    certify_property(model, prop, sigma, n0, n, alpha, ...) -> Certificate
    load_dataset(path, input_shape, ...) -> Dataset(x, y)
    Summary.of(results, radii), format_table(rows), certify_row / predict_row,
    curve_rows(results, sigma) (certified accuracy against radius, CSV lines)
    stats: pa_lower_bound, certified_radius, radius_ceiling, min_samples_to_certify,
           certify_from_counts, predict_from_counts, sample_size_warnings
"""
from __future__ import annotations

from dataclasses import replace

from verifier.smoothing.classifier import (DEFAULT_ALPHA, DEFAULT_BATCH, DEFAULT_N, DEFAULT_N0,
                                           Certificate, Prediction, SmoothedClassifier)
from verifier.smoothing.data import Dataset, PropertyPoint, load_dataset, property_point
from verifier.smoothing.stats import (certified_radius, certify_from_counts,
                                      min_samples_to_certify, pa_lower_bound,
                                      predict_from_counts, radius_ceiling,
                                      sample_size_warnings)
from verifier.smoothing.summary import (CERTIFY_HEADER, CURVE_HEADER, DEFAULT_RADII,
                                        PREDICT_HEADER, Summary, certified_fraction,
                                        certify_row, curve_rows, format_table, predict_row)


def certify_property(model_path, prop, sigma: float, n0: int = DEFAULT_N0, n: int = DEFAULT_N,
                     alpha: float = DEFAULT_ALPHA, **options) -> Certificate:
    """CERTIFY the smoothed classifier at the centre of a robustness property's box.

    ``prop`` is a :class:`verifier.spec.Property` or a path to a ``.vnnlib``
    file; its label is the class the property protects. ``options`` go to
    :class:`SmoothedClassifier` (device, threads, batch, seed, bank_bytes,
    reduce). The result carries ``label``, ``radius``, ``confidence`` and
    ``region_radius`` (the L2 half-diagonal of the input box; ``covers_region``
    tells whether the certified ball contains the whole box). It is a
    statement about the smoothed classifier only and never decides the
    VNN-COMP answer for the network. Raises DataError for a property that is
    not a single-box robustness property, MismatchError when its size does not
    fit the model.
    """
    point = property_point(prop)
    classifier = SmoothedClassifier(model_path, sigma, **options)
    certificate = classifier.certify(point.x, n0, n, alpha, label=point.label)
    return replace(certificate, region_radius=point.region_radius)


__all__ = [
    "Certificate", "Prediction", "SmoothedClassifier", "certify_property",
    "Dataset", "PropertyPoint", "load_dataset", "property_point",
    "Summary", "format_table", "certify_row", "predict_row", "curve_rows", "certified_fraction",
    "CERTIFY_HEADER", "PREDICT_HEADER", "CURVE_HEADER", "DEFAULT_RADII",
    "DEFAULT_N0", "DEFAULT_N", "DEFAULT_ALPHA", "DEFAULT_BATCH",
    "pa_lower_bound", "certified_radius", "radius_ceiling", "min_samples_to_certify",
    "certify_from_counts", "predict_from_counts", "sample_size_warnings",
]
