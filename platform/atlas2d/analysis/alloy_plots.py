"""Plots of alloy formation energies (the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atlas2d.analysis.alloys import lower_hull_line
from atlas2d.analysis.plots import new_figure  # matplotlib, or MissingExtra naming the extra

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def formation_hull_plot(title: str, sources: Mapping[str, tuple[Any, Any]], path: Path) -> Path:
    """E_F against x of each energy source with its lower convex hull, one panel, as a PNG.

    Args:
        title: the figure's title (the system).
        sources: {source: (x, E_F in meV/site)}, each shape (n,); drawn in this order
            (DFT first, so the others are drawn over it).
        path: the PNG to write.
    """
    figure = new_figure(figsize=(5.6, 4.2))
    axis = figure.subplots()
    for index, (source, (x, energies)) in enumerate(sources.items()):
        colour = f"C{index}"
        marker = MARKERS[index % len(MARKERS)]
        axis.scatter(x, energies, s=18, marker=marker, color=colour, alpha=0.7, label=source)
        hull_x, hull_e = lower_hull_line(x, energies)
        axis.plot(hull_x, hull_e, color=colour, linewidth=1.0)
    axis.axhline(0.0, color="black", linewidth=0.5, linestyle=":")
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel("x (fraction of metal sites held by A)")
    axis.set_ylabel("E_F (meV/site)")
    axis.set_title(f"{title}: E_F and lower convex hulls", fontsize=10)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
