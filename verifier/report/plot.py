"""Plots of a report (matplotlib, the optional extra ``pip install "verifier[plot]"``).

- ``certified_vs_eps``: certified accuracy against eps, one line per method,
  PGD dashed as the upper envelope (an attack bounds robust accuracy from above);
- ``smoothing_vs_radius``: the smoothed classifier's certified accuracy against
  the L2 radius, on the grid of :func:`verifier.smoothing.curve_rows`.

Each is written as PNG and SVG. Without matplotlib, :func:`write_plots` writes
nothing and returns the reason, so the caller can say how to get the plots.
"""
from __future__ import annotations

from pathlib import Path

from verifier.report.table import Report, accuracy_curve

PLOT_HINT = 'plots need matplotlib: pip install "verifier[plot]"'


def write_plots(report: Report, out_dir) -> tuple[list[Path], str | None]:
    """Write the plots under ``out_dir``; returns (paths written, reason when none)."""
    try:
        import matplotlib
    except ImportError:
        return [], PLOT_HINT
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    figure, axes = plt.subplots(figsize=(6, 4))
    for method in report.methods:
        style = ({"linestyle": "--", "color": "black", "zorder": 5} if method == "pgd"
                 else {"marker": "o"})
        axes.plot(report.eps, accuracy_curve(report, method), label=method, **style)
    axes.set_xlabel(f"eps ({report.norm})")
    axes.set_ylabel("certified accuracy (PGD: empirical upper bound)")
    axes.set_ylim(0, 1.02)
    axes.legend()
    axes.set_title(Path(report.model).name)
    written += _save(figure, out / "certified_vs_eps")
    plt.close(figure)
    if report.smoothing is not None:
        from verifier.smoothing import curve_rows

        rows = [line.split(",") for line in
                curve_rows(report.smoothing.certificates, report.smoothing.sigma)[1:]]
        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot([float(r[0]) for r in rows], [float(r[1]) for r in rows])
        axes.set_xlabel("L2 radius")
        axes.set_ylabel("certified accuracy of the smoothed classifier")
        axes.set_ylim(0, 1.02)
        axes.set_title(f"{Path(report.model).name}, sigma={report.smoothing.sigma:g}")
        written += _save(figure, out / "smoothing_vs_radius")
        plt.close(figure)
    return written, None


def _save(figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, bbox_inches="tight")
    return paths
