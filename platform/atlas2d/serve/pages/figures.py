"""The pages' plots, drawn on the server with matplotlib (the ``plot`` extra) and
embedded in the page as SVG data URIs: structure views, a relaxation's energy against
step, a chemical system's convex hull, parity plots and a campaign's panels.

Each function returns the figure as a ``data:image/svg+xml;base64,…`` string."""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from ase import Atoms
    from matplotlib.figure import Figure

    from atlas2d.serve.pages.hull_data import HullPoints


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or MissingExtra naming the extra."""
    from atlas2d.analysis.plots import plt

    plt.rcParams["svg.fonttype"] = "none"  # text as text: smaller, selectable
    return plt


def _uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _figure_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(figure)
    return _uri(buffer.getvalue())


def file_figure_uri(draw: Callable[[Path], Any]) -> str:
    """A figure an ``analysis`` function writes to a path (its format from the suffix)."""
    with tempfile.TemporaryDirectory(prefix="atlas2d-figure-") as folder:
        path = Path(folder) / "figure.svg"
        _pyplot()
        draw(path)
        return _uri(path.read_bytes())


def structure_views(atoms: Atoms) -> str:
    """Top view (3×3 cells, looking down c) and side view (looking along a, 3 cells
    wide) of a layer or bulk cell."""
    from ase.visualize.plot import plot_atoms

    plt = _pyplot()
    figure, (top, side) = plt.subplots(
        1, 2, figsize=(7.5, 3.6), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    plot_atoms(atoms.repeat((3, 3, 1)), top, rotation="0x,0y,0z", radii=0.45)
    plot_atoms(atoms.repeat((1, 3, 1)), side, rotation="-90x,-90y,0z", radii=0.45)
    for axis, title in ((top, "top view (3×3 cells)"), (side, "side view (along a)")):
        axis.set_title(title, fontsize=10)
        axis.set_axis_off()
    return _figure_uri(figure)


def trajectory(steps: np.ndarray, energies_ev_per_atom: np.ndarray) -> str:
    """Energy per atom (eV/atom) against optimisation step."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 3.4))
    axis.plot(steps, energies_ev_per_atom, marker="o", markersize=3, linewidth=1)
    axis.set_xlabel("step")
    axis.set_ylabel("energy (eV/atom)")
    axis.set_title("DFT relaxation: energy against step", fontsize=10)
    axis.ticklabel_format(useOffset=False)
    figure.tight_layout()
    return _figure_uri(figure)


def convex_hull(points: HullPoints) -> str:
    """Formation energy (eV/atom) against composition with the hull drawn: a line for a
    binary system, a triangle seen from above (colour: e_above_hull) for a ternary;
    the page's material is the red star."""
    plt = _pyplot()
    if len(points.elements) == 2:
        figure, axis = plt.subplots(figsize=(5.6, 3.8))
        x = points.fractions[:, 1]
        order = np.argsort(x[points.on_hull])
        hull_x = x[points.on_hull][order]
        hull_y = points.formation_energies[points.on_hull][order]
        axis.plot(hull_x, hull_y, color="black", linewidth=1, zorder=1, label="hull")
        axis.scatter(
            x[~points.on_hull],
            points.formation_energies[~points.on_hull],
            s=18,
            color="tab:blue",
            alpha=0.7,
            label="above the hull",
        )
        axis.scatter(hull_x, hull_y, s=26, color="black", label="on the hull")
        axis.scatter(
            x[points.marked],
            points.formation_energies[points.marked],
            s=160,
            marker="*",
            color="red",
            zorder=3,
            label=points.marked_formula,
        )
        axis.set_xlabel(f"atom fraction of {points.elements[1]} (0 = {points.elements[0]})")
        axis.set_ylabel("formation energy (eV/atom)")
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        figure, axis = plt.subplots(figsize=(5.4, 4.6))
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
        xy = points.fractions @ corners
        axis.plot(*np.vstack([corners, corners[:1]]).T, color="0.5", linewidth=0.8)
        for facet in points.facets:
            triangle = xy[np.append(facet, facet[0])]
            axis.plot(*triangle.T, color="black", linewidth=0.7, zorder=1)
        shown = axis.scatter(
            xy[:, 0],
            xy[:, 1],
            c=1000 * points.e_above_hull,
            cmap="viridis",
            s=26,
            zorder=2,
        )
        axis.scatter(*xy[points.marked].T, s=200, marker="*", color="red", zorder=3)
        figure.colorbar(shown, ax=axis, fraction=0.04, label="e_above_hull (meV/atom)")
        for corner, element in zip(corners, points.elements, strict=True):
            axis.annotate(
                element,
                corner,
                textcoords="offset points",
                xytext=(0, -14 if corner[1] == 0 else 6),
                ha="center",
            )
        axis.set_aspect("equal")
        axis.set_axis_off()
    axis.set_title(
        f"convex hull of {'-'.join(points.elements)} ({points.energy_source})", fontsize=10
    )
    figure.tight_layout()
    return _figure_uri(figure)


def parity(reference: np.ndarray, predicted: np.ndarray, title: str, unit: str) -> str:
    """Predicted against DFT with y = x, and the MAE in the title (``unit``)."""
    from atlas2d.analysis.plots import parity_plot

    mae = float(np.mean(np.abs(predicted - reference)))
    return file_figure_uri(lambda path: parity_plot(reference, predicted, path, title, unit, mae))


def campaign(summary: pd.DataFrame) -> str:
    """The campaign's four panels (``analysis.campaign_plots.plot_campaign``)."""
    from atlas2d.analysis.campaign_plots import plot_campaign

    return file_figure_uri(lambda path: plot_campaign(summary, path))
