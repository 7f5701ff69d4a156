"""Plots (the ``plot`` extra: matplotlib).

Figures are built with matplotlib's object API (:func:`new_figure`), never pyplot: no
global figure registry, so threads (the web pages' request pool) can each draw their
own figure at the same time, and nothing needs closing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atlas2d.errors import MissingExtra

try:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise MissingExtra(
        "Plots need matplotlib: pip install 'atlas2d[plot]' (or the demo extra)."
    ) from err


def new_figure(**options: Any) -> Figure:
    """A figure of its own (``matplotlib.figure.Figure(**options)``), drawn by Agg when
    saved (PNG from its file name or ``format``, SVG and PDF by their backends)."""
    return Figure(**options)


def plot_training_curve(curve: list[dict[str, Any]], path: Path) -> Path:
    """Loss and validation MAEs per epoch, one panel each, written as a PNG."""
    epochs = [row["epoch"] for row in curve]
    panels = [
        ("loss", [("train_loss", "train"), ("val_loss", "validation")]),
        ("energy MAE (meV/atom)", [("val_energy_mae_mev_per_atom", "validation")]),
        ("force MAE (meV/Å)", [("val_force_mae_mev_per_a", "validation")]),
    ]
    figure = new_figure(figsize=(4 * len(panels), 3.2))
    axes = figure.subplots(1, len(panels))
    for axis, (title, series) in zip(axes, panels, strict=True):
        for key, legend in series:
            points = [
                (e, row[key])
                for e, row in zip(epochs, curve, strict=True)
                if row.get(key) is not None
            ]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=legend)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def parity_plot(
    reference: Any,
    predicted: Any,
    path: Path,
    title: str,
    unit: str,
    mae: float | None = None,
    zero_lines: bool = False,
    mae_unit: str | None = None,
) -> Path:
    """:func:`parity_figure` written as a PNG (110 dpi) at ``path``."""
    parity_figure(reference, predicted, title, unit, mae, zero_lines, mae_unit).savefig(
        path, dpi=110
    )
    return path


def parity_figure(
    reference: Any,
    predicted: Any,
    title: str,
    unit: str,
    mae: float | None = None,
    zero_lines: bool = False,
    mae_unit: str | None = None,
) -> Figure:
    """Predicted against reference values with the y = x line.

    Args:
        reference, predicted: (n,) values in ``unit``.
        unit: of both axes. mae: shown in the title, in ``mae_unit`` (default ``unit``).
        zero_lines: dashed lines at 0 on both axes, which bound the quadrants of a
            stability classification (stable = at or below 0).
    """
    import numpy as np

    reference = np.asarray(reference, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    figure = new_figure(figsize=(4.6, 4.4))
    axis = figure.add_subplot()
    axis.scatter(reference, predicted, s=14, alpha=0.75, edgecolors="none")
    low = float(min(reference.min(), predicted.min()))
    high = float(max(reference.max(), predicted.max()))
    pad = 0.05 * (high - low or 1.0)
    axis.plot([low - pad, high + pad], [low - pad, high + pad], color="black", linewidth=0.8)
    axis.set_xlim(low - pad, high + pad)
    axis.set_ylim(low - pad, high + pad)
    axis.set_xlabel(f"DFT ({unit})")
    axis.set_ylabel(f"ML ({unit})")
    if zero_lines:
        axis.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        axis.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    axis.set_title(title if mae is None else f"{title}\nMAE {mae:.3g} {mae_unit or unit}")
    axis.set_aspect("equal")
    figure.tight_layout()
    return figure


def periodic_table_heatmap(values: dict[str, float], path: Path, title: str, unit: str) -> Path:
    """Each element's value as a colour in its place in the periodic table (elements
    without a value grey), written as a PNG. Lanthanides and actinides go in the two
    rows below."""
    import numpy as np
    from matplotlib import cm
    from matplotlib.colors import Normalize
    from pymatgen.core import Element

    figure = new_figure(figsize=(13, 6.5))
    axis = figure.add_subplot()
    finite = [v for v in values.values() if v is not None and np.isfinite(v)]
    norm = Normalize(vmin=min(finite, default=0.0), vmax=max(finite, default=1.0))
    cmap = matplotlib.colormaps["viridis"]
    for z in range(1, 104):
        element = Element.from_Z(z)
        row, group = element.row, element.group
        if 57 <= z <= 71 or 89 <= z <= 103:  # f block below the table
            row, group = (8 if z <= 71 else 9), 3 + (z - (57 if z <= 71 else 89))
        value = values.get(element.symbol)
        colour = (
            cmap(norm(value)) if value is not None and np.isfinite(value) else (0.9, 0.9, 0.9, 1)
        )
        axis.add_patch(Rectangle((group - 0.45, -row - 0.45), 0.9, 0.9, color=colour))
        text_colour = "white" if value is not None and norm(value) < 0.6 else "black"
        axis.text(
            group,
            -row + 0.12,
            element.symbol,
            ha="center",
            va="center",
            fontsize=8,
            color=text_colour,
        )
        if value is not None and np.isfinite(value):
            axis.text(
                group,
                -row - 0.22,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=6,
                color=text_colour,
            )
    axis.set_xlim(0.3, 18.7)
    axis.set_ylim(-9.7, -0.3)
    axis.set_aspect("equal")
    axis.axis("off")
    figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axis, fraction=0.025, label=unit)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
