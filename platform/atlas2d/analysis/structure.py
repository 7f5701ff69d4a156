"""Per-frame structure summaries and the 2D orientation convention.

Shapes: ``cells`` (F, 3, 3) with lattice vectors as rows (Å); ``positions`` and
``forces`` (F, N, 3) Cartesian (Å, eV/Å); ``stresses`` (F, 3, 3) eV/Å³.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ISOLATED_CUTOFF_A = 5.0
"""An atom with no neighbour (periodic images included) within this distance is isolated."""
MIN_VACUUM_A = 7.0
"""A gap of at least this many Å with no atom, across the whole cell, counts as vacuum.
Interlayer gaps of bulk van der Waals crystals are about 3 Å."""


def area_per_atom(cells: np.ndarray, n_sites: int) -> np.ndarray:
    """|a × b| / N for each frame (Å²/atom). ``cells`` (F, 3, 3) → (F,)."""
    return np.linalg.norm(np.cross(cells[:, 0], cells[:, 1]), axis=-1) / n_sites


def max_force_norm(forces: np.ndarray) -> np.ndarray:
    """Largest per-atom force norm per frame (eV/Å). (F, N, 3) → (F,)."""
    return np.sqrt(np.einsum("fni,fni->fn", forces, forces)).max(axis=1)


def max_abs_stress(stresses: np.ndarray) -> np.ndarray:
    """Largest |σ_ij| per frame (eV/Å³). (F, 3, 3) → (F,)."""
    return np.abs(stresses).reshape(len(stresses), 9).max(axis=1)


def _shortest_lattice_vector(cells: np.ndarray) -> np.ndarray:
    """Length of the shortest of a, b, c, a±b, a±c, b±c per frame (Å). (F,3,3) → (F,)."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    candidates = np.stack([a, b, c, a + b, a - b, a + c, a - c, b + c, b - c], axis=1)
    return np.linalg.norm(candidates, axis=-1).min(axis=1)


def _isolated_exact(cell: np.ndarray, positions: np.ndarray, cutoff: float) -> bool:
    """Exact check with ASE's neighbour list (handles any cell shape)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=positions, cell=cell, pbc=True, numbers=[1] * len(positions))
    first = neighbor_list("i", atoms, cutoff, self_interaction=False)
    return bool(np.unique(first).size < len(positions))


def has_isolated_atom(
    cells: np.ndarray, positions: np.ndarray, cutoff: float = ISOLATED_CUTOFF_A
) -> np.ndarray:
    """Whether any atom of each frame has no neighbour within ``cutoff`` Å.

    Periodic images count as neighbours, the atom's own images included, as in the
    graph a force field builds. Cheap sufficient tests decide almost every frame: a
    lattice vector shorter than the cutoff gives every atom its own image as a
    neighbour; a minimum-image distance below the cutoff is a real neighbour. Frames
    left undecided get an exact neighbour-list check.

    Args:
        cells: (F, 3, 3) lattice vectors as rows, Å.
        positions: (F, N, 3) Cartesian positions, Å.
        cutoff: neighbour radius, Å.

    Returns:
        (F,) bool.
    """
    n_frames, n_sites = positions.shape[:2]
    isolated = np.zeros(n_frames, dtype=bool)
    undecided = _shortest_lattice_vector(cells) >= cutoff
    if not undecided.any():
        return isolated
    # Chunk so the (chunk, N, N, 3) distance array stays near 16 MB.
    chunk = max(1, 2_000_000 // (3 * n_sites * n_sites))
    undecided_idx = np.flatnonzero(undecided)
    for start in range(0, undecided_idx.size, chunk):
        idx = undecided_idx[start : start + chunk]
        cell_u = cells[idx]
        frac = np.linalg.solve(
            np.transpose(cell_u, (0, 2, 1)), np.transpose(positions[idx], (0, 2, 1))
        )
        frac = np.transpose(frac, (0, 2, 1))  # (U, N, 3)
        delta = frac[:, :, None, :] - frac[:, None, :, :]
        delta -= np.round(delta)
        dist = np.linalg.norm(np.einsum("uijk,ukl->uijl", delta, cell_u), axis=-1)
        dist[:, np.arange(n_sites), np.arange(n_sites)] = np.inf
        lonely = dist.min(axis=2) >= cutoff  # (U, N): no minimum-image neighbour
        for frame_index in np.flatnonzero(lonely.any(axis=1)):
            f = idx[frame_index]
            isolated[f] = _isolated_exact(cells[f], positions[f], cutoff)
    return isolated


def vacuum_axes(cell: np.ndarray, positions: np.ndarray, min_gap: float = MIN_VACUUM_A) -> list[int]:
    """Cell axes (0=a, 1=b, 2=c) along which a slab of vacuum ≥ ``min_gap`` Å spans the cell.

    For each axis the atoms' fractional coordinates along it are sorted and the widest
    empty interval (periodic) is measured perpendicular to the other two vectors.
    """
    frac = np.linalg.solve(cell.T, positions.T).T % 1.0
    volume = abs(np.linalg.det(cell))
    axes = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        spacing = volume / np.linalg.norm(np.cross(cell[others[0]], cell[others[1]]))
        coords = np.sort(frac[:, axis])
        gaps = np.diff(np.concatenate([coords, [coords[0] + 1.0]]))
        if gaps.max() * spacing >= min_gap:
            axes.append(axis)
    return axes


def dimensionality_from_vacuum(n_vacuum_axes: int) -> int:
    """3 for bulk, 2 for a layer (one vacuum axis), 1 for a wire, 0 for a molecule."""
    return 3 - n_vacuum_axes


@dataclass(frozen=True)
class Orientation:
    """How a layer was turned so that its vacuum lies along c and c along z.

    Attributes:
        axis_order: original axis indices of the new (a, b, c).
        rotated: whether Cartesian vectors were rotated (a along x, b in the xy plane).
    """

    axis_order: tuple[int, int, int]
    rotated: bool

    @property
    def changed(self) -> bool:
        return self.axis_order != (0, 1, 2) or self.rotated


def standard_rotation(cell: np.ndarray) -> np.ndarray:
    """Orthogonal Q (3, 3) with ``cell @ Q`` having a along x and b in the xy plane."""
    a, b = cell[0], cell[1]
    e1 = a / np.linalg.norm(a)
    b_perp = b - (b @ e1) * e1
    e2 = b_perp / np.linalg.norm(b_perp)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=1)


def layer_axis_order(vacuum_axis: int) -> tuple[int, int, int]:
    """Cyclic order of the lattice vectors that puts ``vacuum_axis`` last (keeps handedness)."""
    return ((vacuum_axis + 1) % 3, (vacuum_axis + 2) % 3, vacuum_axis)


def needs_rotation(cells: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether a or b of any frame leaves the xy plane (so c is not along z)."""
    return bool(np.abs(cells[:, :2, 2]).max() > tol)


def orient_frames(
    cells: np.ndarray,
    positions: np.ndarray,
    forces: np.ndarray | None,
    stresses: np.ndarray | None,
    axis_order: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, Orientation]:
    """Permute lattice vectors to ``axis_order`` and rotate each frame to standard form.

    Energies are invariant; positions and forces rotate as vectors, stress as a tensor
    (Qᵀ σ Q). Returns new arrays and the orientation applied.
    """
    cells = cells[:, list(axis_order)]
    rotate = needs_rotation(cells)
    if rotate:
        rotations = np.stack([standard_rotation(cell) for cell in cells])  # (F, 3, 3)
        cells = cells @ rotations
        positions = positions @ rotations
        if forces is not None:
            forces = forces @ rotations
        if stresses is not None:
            stresses = np.transpose(rotations, (0, 2, 1)) @ stresses @ rotations
    return cells, positions, forces, stresses, Orientation(axis_order, rotate)
