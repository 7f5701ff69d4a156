"""Per-frame structure summaries and the 2D orientation convention.

Shapes: ``cells`` (F, 3, 3) with lattice vectors as rows (Å); ``positions`` and
``forces`` (F, N, 3) Cartesian (Å, eV/Å); ``stresses`` (F, 3, 3) eV/Å³.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlas2d.vocabulary import DEFAULT_ISOLATED_CUTOFF_A

ISOLATED_CUTOFF_A = DEFAULT_ISOLATED_CUTOFF_A
"""An atom with no neighbour (periodic images included) within this distance is isolated."""
MIN_VACUUM_A = 7.0
"""A gap of at least this many Å with no atom, across the whole cell, counts as vacuum.
Interlayer gaps of bulk van der Waals crystals are about 3 Å."""


def area_per_atom(cells: np.ndarray, n_sites: int) -> np.ndarray:
    """|a × b| / N for each frame (Å²/atom). ``cells`` (F, 3, 3) → (F,)."""
    a, b = cells[:, 0], cells[:, 1]
    cross_z = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    cross_x = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    cross_y = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    return np.sqrt(cross_x**2 + cross_y**2 + cross_z**2) / n_sites


def max_force_norm(forces: np.ndarray) -> np.ndarray:
    """Largest per-atom force norm per frame (eV/Å). (F, N, 3) → (F,)."""
    return np.sqrt(np.einsum("fni,fni->fn", forces, forces)).max(axis=1)


def max_abs_stress(stresses: np.ndarray) -> np.ndarray:
    """Largest |σ_ij| per frame (eV/Å³). (F, 3, 3) → (F,)."""
    return np.abs(stresses).reshape(len(stresses), 9).max(axis=1)


def _shortest_lattice_vector(cells: np.ndarray) -> np.ndarray:
    """Length of the shortest of a, b, c, a±b, a±c, b±c per frame (Å). (F, 3, 3) → (F,)."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    candidates = np.stack([a, b, c, a + b, a - b, a + c, a - c, b + c, b - c], axis=1)
    return np.sqrt(np.einsum("fki,fki->fk", candidates, candidates).min(axis=1))


def _minimum_image_partners(
    cells: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each atom's nearest other atom under the minimum-image convention.

    Args:
        cells: (R, 3, 3) Å; positions: (R, N, 3) Å.

    Returns:
        partner (R, N) index, shift (R, N, 3) integer lattice translation of the
        partner, distance (R, N) Å (inf for a lone atom).
    """
    n_sites = positions.shape[1]
    frac = positions @ np.linalg.inv(cells)
    delta = frac[:, None, :, :] - frac[:, :, None, :]  # delta[r, i, j] = frac_j − frac_i
    shift = -np.rint(delta)
    cart = ((delta + shift).reshape(len(cells), n_sites * n_sites, 3) @ cells).reshape(delta.shape)
    distance = np.sqrt(np.einsum("rijk,rijk->rij", cart, cart))
    distance[:, np.arange(n_sites), np.arange(n_sites)] = np.inf
    partner = distance.argmin(axis=2)
    nearest = np.take_along_axis(distance, partner[..., None], axis=2)[..., 0]
    partner_shift = np.take_along_axis(shift, partner[..., None, None], axis=2)[:, :, 0]
    return partner, partner_shift, nearest


def _isolated_exact(cell: np.ndarray, positions: np.ndarray, cutoff: float) -> bool:
    """Exact check with ASE's neighbour list (handles any cell shape)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=positions, cell=cell, pbc=True, numbers=[1] * len(positions))
    first = neighbor_list("i", atoms, cutoff, self_interaction=False)
    return bool(np.unique(first).size < len(positions))


def _isolated_in_frame(cell: np.ndarray, positions: np.ndarray, cutoff: float) -> bool:
    _, _, distance = _minimum_image_partners(cell[None], positions[None])
    if (distance < cutoff).all():
        return False
    return _isolated_exact(cell, positions, cutoff)


def has_isolated_atom(
    cells: np.ndarray,
    positions: np.ndarray,
    cutoff: float = ISOLATED_CUTOFF_A,
    reference: np.ndarray | None = None,
    frames: np.ndarray | slice | None = None,
) -> np.ndarray:
    """Whether any atom of each frame has no neighbour within ``cutoff`` Å.

    Periodic images count as neighbours, the atom's own images included, as in the
    graph a force field builds. Frames of one relaxation are alike, so cheap sufficient
    tests decide almost every frame: a lattice vector shorter than the cutoff gives
    every atom its own image as a neighbour; otherwise each atom's nearest partner (and
    lattice shift) in a reference frame is re-measured in the frame, and a distance
    below the cutoff is a real neighbour. Frames left undecided get a full
    minimum-image search, then an exact neighbour list.

    Args:
        cells: (F, 3, 3) lattice vectors as rows, Å.
        positions: (F, N, 3) Cartesian positions, Å.
        cutoff: neighbour radius, Å.
        reference: (F,) index of each frame's reference frame (the first frame of its
            relaxation); default: frame 0 for all.
        frames: which frames to evaluate (indices or a slice); default all.

    Returns:
        (len(frames),) bool.
    """
    all_frames = np.arange(len(cells))
    wanted = all_frames if frames is None else all_frames[frames]
    isolated = np.zeros(wanted.size, dtype=bool)
    if reference is None:
        reference = np.zeros(len(cells), dtype=np.int64)
    undecided = np.flatnonzero(_shortest_lattice_vector(cells[wanted]) >= cutoff)
    if undecided.size == 0:
        return isolated
    targets = wanted[undecided]
    references, which = np.unique(reference[targets], return_inverse=True)
    near = np.empty((targets.size, positions.shape[1]), dtype=bool)
    # Chunk so the (R, N, N, 3) pair arrays stay near 16 MB.
    chunk = max(1, 700_000 // positions.shape[1] ** 2)
    for start in range(0, references.size, chunk):
        ref = references[start : start + chunk]
        partner, shift, distance = _minimum_image_partners(cells[ref], positions[ref])
        rows = np.flatnonzero((which >= start) & (which < start + chunk))
        local = which[rows] - start
        f = targets[rows]
        pos = positions[f]
        partner_pos = np.take_along_axis(pos, partner[local][..., None], axis=1)
        bond = partner_pos + shift[local] @ cells[f] - pos  # (U, N, 3)
        near[rows] = np.einsum("unk,unk->un", bond, bond) < cutoff * cutoff
        near[rows] &= np.isfinite(distance[local])  # a lone atom's "partner" is itself
    for row in np.flatnonzero(~near.all(axis=1)):
        frame = targets[row]
        isolated[undecided[row]] = _isolated_in_frame(cells[frame], positions[frame], cutoff)
    return isolated


def vacuum_mask(
    cells: np.ndarray, positions: np.ndarray, min_gap: float = MIN_VACUUM_A
) -> np.ndarray:
    """Which cell axes of each structure have a slab of vacuum ≥ ``min_gap`` Å across the cell.

    For each axis the atoms' fractional coordinates along it are sorted and the widest
    empty interval (periodic) is measured perpendicular to the other two vectors (the
    interplanar spacing 1/|b_k|, with b_k the reciprocal vector).

    Args:
        cells: (T, 3, 3) Å; positions: (T, N, 3) Å.

    Returns:
        (T, 3) bool: axis a, b, c of each structure.
    """
    inverse = np.linalg.inv(cells)
    frac = np.sort((positions @ inverse) % 1.0, axis=1)  # (T, N, 3)
    wrapped = np.concatenate([frac, frac[:, :1] + 1.0], axis=1)
    widest = np.diff(wrapped, axis=1).max(axis=1)  # (T, 3) fractional
    spacing = 1.0 / np.linalg.norm(inverse, axis=1)  # columns of inv(cell) are the b_k
    return widest * spacing >= min_gap


def vacuum_axes(
    cell: np.ndarray, positions: np.ndarray, min_gap: float = MIN_VACUUM_A
) -> list[int]:
    """Axes (0=a, 1=b, 2=c) of one structure with vacuum (see ``vacuum_mask``)."""
    return [int(k) for k in np.flatnonzero(vacuum_mask(cell[None], positions[None], min_gap)[0])]


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


def layer_order_from_vacuum(vacuum: np.ndarray) -> tuple[int, int, int] | None:
    """The axis order of a layer (exactly one vacuum axis in the (3,) mask), else None."""
    axes = np.flatnonzero(vacuum)
    return layer_axis_order(int(axes[0])) if axes.size == 1 else None


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


def structure_sha256(numbers: np.ndarray, cell: np.ndarray, positions: np.ndarray) -> str:
    """Hex sha256 of a structure's atomic numbers (N,), cell (3, 3) Å and positions
    (N, 3) Å, as little-endian int64 and float64: the same structure always gives the
    same digest, any change of an atom or the cell another."""
    import hashlib

    digest = hashlib.sha256()
    for array, dtype in ((numbers, "<i8"), (cell, "<f8"), (positions, "<f8")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()
