"""The pages' figures without a database: the structure picture's discs and legend,
valid images, the content cache, the same images from threads drawing at once, and
no pyplot anywhere (its global state is not thread-safe)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import threading
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from ase.build import bulk, mx2
from PIL import Image

from atlas2d.serve.pages import figures

REPOSITORY = Path(__file__).resolve().parents[2]


def _decoded(uri: str, mime: str) -> bytes:
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix)
    return base64.b64decode(uri.removeprefix(prefix), validate=True)


def _png_size(uri: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(_decoded(uri, "image/png"))) as image:
        image.load()  # decodes every row: a truncated PNG raises here
        return image.size


def test_structure_figure_draws_every_atom_once_per_cell() -> None:
    atoms = mx2("MoS2", size=(1, 1, 1), vacuum=8.0)  # 3 atoms: Mo, S, S
    figure = figures.structure_figure(atoms)
    top, side = figure.axes[0].collections
    assert len(top.get_offsets()) == 9 * 3  # 3×3 cells
    assert len(side.get_offsets()) == 3 * 3  # 3 cells along b
    # Mo and S have different Jmol colours; every disc has one of the two.
    assert len({tuple(c) for c in np.round(top.get_facecolors(), 3)}) == 2
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["S", "Mo"]  # by atomic number
    titles = {t.get_text() for t in figure.axes[0].texts}
    assert titles == {"top view (3×3 cells)", "side view (along a)"}


def test_structure_side_view_puts_the_layer_on_its_edge() -> None:
    """Looking along a at a layer in the xy plane: the screen's vertical is z, so the
    three sulphur heights of MoS2 span its thickness (about 3.2 Å)."""
    atoms = mx2("MoS2", size=(1, 1, 1), vacuum=8.0)
    side = figures.structure_figure(atoms).axes[0].collections[1]
    heights = np.unique(np.round(side.get_offsets()[:, 1], 3))
    thickness = atoms.positions[:, 2].max() - atoms.positions[:, 2].min()
    assert len(heights) == 3 and np.isclose(heights.max() - heights.min(), thickness)


def test_structure_views_is_a_png_and_cached_by_content() -> None:
    atoms = mx2("MoS2", size=(2, 2, 1), vacuum=8.0)
    figures._structure_uri.cache_clear()
    first = figures.structure_views(atoms)
    width, height = _png_size(first)
    assert width == 7 * figures.STRUCTURE_DPI and 150 < height < 460
    assert figures.structure_views(atoms.copy()) is first  # same content: no redrawing
    assert figures._structure_uri.cache_info().hits == 1
    moved = atoms.copy()
    moved.positions[0, 2] += 0.5
    assert figures.structure_views(moved) != first


def test_structure_views_of_a_bulk_cell() -> None:
    assert _png_size(figures.structure_views(bulk("Si", "diamond", a=5.43)))[0] > 0


def test_threads_drawing_at_once_get_the_images_drawn_alone() -> None:
    """Two threads each draw a structure and a trajectory at the same moment; each
    gets valid images, pixel for pixel those drawn in one thread (as PNGs: matplotlib's
    SVG ids are salted at random, so SVG bytes differ from one drawing to the next)."""
    structures = [mx2("MoS2", size=(2, 2, 1), vacuum=8.0), mx2("WSe2", size=(3, 2, 1))]
    steps = np.arange(30.0)
    trajectories = [-7.0 - 0.05 * (1 - np.exp(-steps / k)) for k in (3.0, 8.0)]

    def draw(index: int) -> tuple[str, str]:
        structure = figures.structure_figure(structures[index])
        energy = figures.trajectory_figure(steps, trajectories[index])
        return figures._png_uri(structure, 100), figures._png_uri(energy, 100)

    alone = [draw(0), draw(1)]
    start = threading.Barrier(2)
    results: list[list[tuple[str, str]]] = [[], []]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            start.wait()
            for _ in range(3):  # overlap more than one drawing
                results[index].append(draw(index))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [[alone[0]] * 3, [alone[1]] * 3]
    assert alone[0] != alone[1]
    for images in alone:
        assert all(_png_size(image)[0] > 0 for image in images)


def test_page_svgs_are_well_formed() -> None:
    svg = _decoded(
        figures.trajectory(np.arange(4.0), np.array([-1.0, -1.2, -1.25, -1.26])),
        "image/svg+xml",
    )
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert b"energy (eV/atom)" in svg  # text kept as text


def test_figures_never_import_pyplot() -> None:
    """Every page figure drawn in a fresh interpreter leaves pyplot unimported."""
    script = """
import sys
import numpy as np
import pandas as pd
from ase.build import mx2
from atlas2d.serve.pages import figures
figures.structure_views(mx2("MoS2"))
figures.trajectory(np.arange(3.0), np.array([-1.0, -1.1, -1.2]))
figures.parity(np.array([0.0, 1.0]), np.array([0.1, 0.9]), "energy", "eV/atom")
figures.campaign(
    pd.DataFrame(
        {"campaign": ["c"], "iteration": [1], "stage": ["done"], "status": ["done"],
         "new_dft_stable": [2], "hit_rate": [0.2], "control_hit_rate": [0.1]}
    )
)
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPOSITORY
    )
    assert done.returncode == 0, done.stderr
