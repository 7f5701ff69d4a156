"""The pages' plots, drawn on the server with matplotlib (the ``plot`` extra) and
embedded in the page as data URIs: structure views (PNG), a relaxation's energy against
step, a chemical system's convex hull, parity plots and a campaign's panels (SVG).

Each function returns the figure as a ``data:image/…;base64,…`` string. Figures are
built with matplotlib's object API (``matplotlib.figure.Figure``), never pyplot:
requests run in FastAPI's thread pool and pyplot's global figure registry is not
thread-safe, while a ``Figure`` touched by one thread only is. The structure picture
and the trajectory are cached by their content (stored frames never change)."""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from ase import Atoms
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from atlas2d.serve.pages.hull_data import HullPoints

STRUCTURE_DPI = 100
"""Pixels per inch of the structure picture (7 in wide → 700 px; its height follows the
structure's shape, at most 5.2 in)."""
RADIUS_SCALE = 0.5
"""An atom's drawn radius as a fraction of its covalent radius (ASE's data), so that
bonded neighbours stay apart."""
CACHED_FIGURES = 256
"""How many structure pictures and trajectories each cache keeps (about 30 kB each)."""


def new_figure(**options: Any) -> Figure:
    """``analysis.plots.new_figure``, imported when a figure is drawn, so that the
    pages load without matplotlib (their figures then say it is missing)."""
    from atlas2d.analysis.plots import new_figure as figure

    return figure(**options)


def _png_uri(figure: Figure, dpi: int) -> str:
    """The figure drawn by Agg, as a PNG of at most 256 colours (a third the size of
    the full-colour one, for a few ms)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    canvas.draw()
    image = Image.frombuffer(
        "RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1
    )
    buffer = io.BytesIO()
    image.convert("RGB").quantize(256).save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _svg_uri(figure: Figure, tight: bool = True) -> str:
    """The figure as SVG, cropped to what it draws when ``tight`` (a second drawing)."""
    import matplotlib

    # Text as text: smaller, selectable. Always the same value, so concurrent requests
    # setting it race harmlessly.
    matplotlib.rcParams["svg.fonttype"] = "none"
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight" if tight else None)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- structure ----------------------------------------------------------------------


def _draw_atoms(
    axis: Axes, xy: np.ndarray, depth: np.ndarray, radii: np.ndarray, colours: np.ndarray
) -> None:
    """One collection of discs, farthest first so nearer atoms cover them.

    Args:
        xy: (n, 2) centres on screen, Å. depth: (n,) towards the viewer, Å.
        radii: (n,) Å. colours: (n, 3) RGB in [0, 1].
    """
    from matplotlib.collections import EllipseCollection

    order = np.argsort(depth, kind="stable")
    discs = EllipseCollection(
        2 * radii[order],
        2 * radii[order],
        np.zeros(len(order)),
        units="xy",  # sizes in data units (Å), so atoms scale with the cell
        offsets=xy[order],
        offset_transform=axis.transData,
        facecolors=colours[order],
        edgecolors="black",
        linewidths=0.5,
    )
    axis.add_collection(discs)


def _draw_cell(axis: Axes, corners: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """The outline through ``corners`` (4, 2), Å, dashed, clipped to the box from
    ``low`` to ``high`` (2,), Å: a layer's vacuum is left out of the side view."""
    from matplotlib.patches import Rectangle

    closed = np.vstack([corners, corners[:1]])
    (outline,) = axis.plot(closed[:, 0], closed[:, 1], color="0.35", linewidth=0.8, linestyle="--")
    outline.set_clip_path(Rectangle(tuple(low), *(high - low), transform=axis.transData))


@dataclass(frozen=True)
class _View:
    """One projection of atoms. xy: (m, 2) Å on screen; depth: (m,) Å towards the
    viewer; radii: (m,) Å; colours: (m, 3) RGB; cell: (4, 2) Å, an outlined cell."""

    title: str
    xy: np.ndarray
    depth: np.ndarray
    radii: np.ndarray
    colours: np.ndarray
    cell: np.ndarray

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower-left and upper-right corners (2,) of the atoms with their radii, Å."""
        pad = float(self.radii.max()) + 0.3
        return self.xy.min(axis=0) - pad, self.xy.max(axis=0) + pad

    def shifted(self, offset: np.ndarray) -> _View:
        return replace(self, xy=self.xy + offset, cell=self.cell + offset)


def _views(atoms: Atoms) -> tuple[_View, _View]:
    """Top view (3×3 cells looking down z, the middle cell outlined) and side view
    (looking along a, 3 cells along b), in their own screen coordinates."""
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors

    positions = atoms.positions  # (n, 3), Å
    a, b, c = np.asarray(atoms.cell)
    radii = RADIUS_SCALE * covalent_radii[atoms.numbers]
    colours = jmol_colors[atoms.numbers]
    shifts = np.arange(-1, 2)

    in_plane = (shifts[:, None, None] * a + shifts[None, :, None] * b).reshape(-1, 3)
    tiled = (positions[None, :, :] + in_plane[:, None, :]).reshape(-1, 3)  # (9n, 3)
    top = _View(
        "top view (3×3 cells)",
        tiled[:, :2],
        tiled[:, 2],
        np.tile(radii, 9),
        np.tile(colours, (9, 1)),
        np.array([[0, 0, 0], a, a + b, b])[:, :2],
    )

    # Looking along a: across is b without its part along a, up is a × across (z for
    # a layer in the xy plane), and the viewer sits on the +a side.
    along = a / np.linalg.norm(a)
    across = b - (b @ along) * along
    across /= np.linalg.norm(across)
    screen = np.column_stack([across, np.cross(along, across)])  # (3, 2)
    row = (positions[None, :, :] + shifts[:, None, None] * b).reshape(-1, 3)  # (3n, 3)
    side = _View(
        "side view (along a)",
        row @ screen,
        row @ along,
        np.tile(radii, 3),
        np.tile(colours, (3, 1)),
        np.array([[0, 0, 0], b, b + c, c]) @ screen,
    )
    return top, side


def structure_figure(atoms: Atoms) -> Figure:
    """The top view (3×3 cells, looking down z, the middle cell outlined) and, to its
    right at the same scale, the side view (looking along a, 3 cells along b) of a
    layer or bulk cell; atoms are discs sized by covalent radius and coloured by
    element (Jmol colours), named in a legend below.

    Both views share one axes (one axes is most of matplotlib's cost), each view one
    collection of discs.

    Returns:
        The figure; ``figure.axes[0].collections`` holds the top view's 9n discs, then
        the side view's 3n, for n atoms.
    """
    from ase.data import chemical_symbols
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D

    top, side = _views(atoms)
    top_low, top_high = top.bounds()
    side_low, side_high = side.bounds()
    gap = 0.12 * (top_high[0] - top_low[0])
    side = side.shifted(
        np.array(
            [
                top_high[0] + gap - side_low[0],
                (top_low[1] + top_high[1] - side_low[1] - side_high[1]) / 2,
            ]
        )
    )
    low = np.minimum(top_low, side.bounds()[0])
    high = np.maximum(top_high, side.bounds()[1])
    span = high - low  # Å

    # The figure takes the content's shape: 7 in wide unless that makes it too tall.
    title_in, legend_in, max_height_in = 0.3, 0.4, 4.5
    width_in = min(7.0, max_height_in * span[0] / span[1])
    content_in = width_in * span[1] / span[0]
    height_in = content_in + title_in + legend_in
    figure = new_figure(figsize=(width_in, height_in))
    axis = figure.add_axes((0.0, legend_in / height_in, 1.0, content_in / height_in))
    for view in (top, side):
        view_low, view_high = view.bounds()
        _draw_atoms(axis, view.xy, view.depth, view.radii, view.colours)
        _draw_cell(axis, view.cell, view_low, view_high)
        axis.annotate(
            view.title,
            ((view_low[0] + view_high[0]) / 2, view_high[1]),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=10,
        )
    axis.set_xlim(low[0], high[0])
    axis.set_ylim(low[1], high[1])
    axis.set_aspect("equal")
    axis.set_axis_off()

    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="none",
            markersize=9,
            markerfacecolor=jmol_colors[z],
            markeredgecolor="black",
            markeredgewidth=0.5,
            label=chemical_symbols[z],
        )
        for z in sorted(set(atoms.numbers.tolist()))
    ]
    figure.legend(
        handles=handles, loc="lower center", ncols=len(handles), frameon=False, fontsize=10
    )
    return figure


@functools.lru_cache(maxsize=CACHED_FIGURES)
def _structure_uri(numbers: bytes, positions: bytes, cell: bytes) -> str:
    from ase import Atoms

    atoms = Atoms(
        numbers=np.frombuffer(numbers, dtype=np.int64),
        positions=np.frombuffer(positions, dtype=np.float64).reshape(-1, 3),
        cell=np.frombuffer(cell, dtype=np.float64).reshape(3, 3),
        pbc=True,
    )
    return _png_uri(structure_figure(atoms), STRUCTURE_DPI)


def structure_views(atoms: Atoms) -> str:
    """:func:`structure_figure` as a PNG data URI, cached by the structure's content."""
    return _structure_uri(
        np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes(),
        np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes(),
        np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes(),
    )


# --- relaxation and hull ------------------------------------------------------------


def trajectory_figure(steps: np.ndarray, energies_ev_per_atom: np.ndarray) -> Figure:
    """Energy per atom (eV/atom, shape (F,)) against optimisation step (shape (F,))."""
    figure = new_figure(figsize=(5.2, 3.4))
    # Fixed margins (room for 7-character tick labels): a layout engine or a tight
    # bounding box would draw the figure twice or three times.
    figure.subplots_adjust(left=0.2, right=0.97, bottom=0.14, top=0.91)
    axis = figure.add_subplot()
    axis.plot(steps, energies_ev_per_atom, marker="o", markersize=3, linewidth=1)
    axis.set_xlabel("step")
    axis.set_ylabel("energy (eV/atom)")
    axis.set_title("DFT relaxation: energy against step", fontsize=10)
    axis.ticklabel_format(useOffset=False)
    return figure


@functools.lru_cache(maxsize=CACHED_FIGURES)
def _trajectory_uri(steps: bytes, energies_ev_per_atom: bytes) -> str:
    return _svg_uri(
        trajectory_figure(
            np.frombuffer(steps, dtype=np.float64),
            np.frombuffer(energies_ev_per_atom, dtype=np.float64),
        ),
        tight=False,
    )


def trajectory(steps: np.ndarray, energies_ev_per_atom: np.ndarray) -> str:
    """:func:`trajectory_figure` as an SVG data URI, cached by its values."""
    return _trajectory_uri(
        np.ascontiguousarray(steps, dtype=np.float64).tobytes(),
        np.ascontiguousarray(energies_ev_per_atom, dtype=np.float64).tobytes(),
    )


def convex_hull(points: HullPoints) -> str:
    """Formation energy (eV/atom) against composition with the hull drawn: a line for a
    binary system, a triangle seen from above (colour: e_above_hull) for a ternary;
    the page's material is the red star. Not cached: the hull changes with the data."""
    if len(points.elements) == 2:
        figure = new_figure(figsize=(5.6, 3.8))
        axis = figure.add_subplot()
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
        figure = new_figure(figsize=(5.4, 4.6))
        axis = figure.add_subplot()
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
        marked_x, marked_y = xy[points.marked]
        axis.scatter(marked_x, marked_y, s=200, marker="*", color="red", zorder=3)
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
    return _svg_uri(figure)


# --- models and campaigns -----------------------------------------------------------


def parity(reference: np.ndarray, predicted: np.ndarray, title: str, unit: str) -> str:
    """Predicted against DFT with y = x, and the MAE in the title (``unit``)."""
    from atlas2d.analysis.plots import parity_figure

    mae = float(np.mean(np.abs(predicted - reference)))
    return _svg_uri(parity_figure(reference, predicted, title, unit, mae))


def campaign(summary: pd.DataFrame) -> str:
    """The campaign's four panels (``analysis.campaign_plots.campaign_figure``)."""
    from atlas2d.analysis.campaign_plots import campaign_figure

    return _svg_uri(campaign_figure(summary))
