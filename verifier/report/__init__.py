"""Robustness reports over a data set: certified accuracy per eps for every method.

    robustness_report(model, dataset, eps, norm=, methods=, clip=, timeout_per_image=,
                      indices=, smoothing=SmoothingOptions(sigma, radii, ...)) -> Report
    markdown(report), summary_csv(report), per_image_csv(report), to_json(report)
    write_plots(report, out_dir)   (matplotlib, optional)

Methods: ``ibp`` (last layer folded into the margins), ``naive-ibp``,
``crown``, ``alpha-crown`` (sound bounds), ``pgd`` (an attack: an upper bound
on robust accuracy) and ``complete`` (the verifier's falsify + branch and
bound per image). An image certified by a sound method and broken by an
attack raises :class:`SoundnessError`.
"""
from __future__ import annotations

from verifier.report.plot import PLOT_HINT, write_plots
from verifier.report.run import (DEFAULT_METHODS, METHODS, SmoothingOptions,
                                 robustness_report)
from verifier.report.table import (Column, Report, SoundnessError, check_soundness, markdown,
                                   per_image_csv, summary_csv, to_json)

__all__ = ["Column", "DEFAULT_METHODS", "METHODS", "PLOT_HINT", "Report", "SmoothingOptions",
           "SoundnessError", "check_soundness", "markdown", "per_image_csv",
           "robustness_report", "summary_csv", "to_json", "write_plots"]
