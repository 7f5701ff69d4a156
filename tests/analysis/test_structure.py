"""Per-frame summaries and the 2D orientation convention."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import mx2
from ase.calculators.lj import LennardJones

from atlas2d.analysis import structure


def _isolated_reference(cell: np.ndarray, positions: np.ndarray, cutoff: float) -> bool:
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=positions, cell=cell, pbc=True, numbers=[1] * len(positions))
    return bool(np.unique(neighbor_list("i", atoms, cutoff)).size < len(positions))


def test_area_per_atom_of_a_hexagonal_layer() -> None:
    layer = mx2("MoS2", a=3.18, vacuum=10.0)
    expected = np.sqrt(3) / 2 * 3.18**2 / 3
    assert structure.area_per_atom(layer.cell.array[None], 3)[0] == pytest.approx(expected)


def test_max_force_and_stress() -> None:
    forces = np.zeros((2, 3, 3))
    forces[0, 1] = [3.0, 4.0, 0.0]
    forces[1, 2] = [0.0, 0.0, -2.0]
    assert np.allclose(structure.max_force_norm(forces), [5.0, 2.0])
    stresses = np.zeros((1, 3, 3))
    stresses[0, 0, 2] = -0.7
    assert structure.max_abs_stress(stresses)[0] == pytest.approx(0.7)


def test_isolated_atoms_agree_with_an_exact_neighbour_list() -> None:
    rng = np.random.default_rng(7)
    disagreements, isolated_frames = 0, 0
    for _ in range(300):
        n_sites = int(rng.integers(1, 7))
        cell = np.diag(rng.uniform(3.0, 14.0, 3)) + rng.normal(0.0, 1.0, (3, 3))
        positions = rng.random((n_sites, 3)) @ cell
        cells = np.stack([cell, 1.05 * cell, 1.3 * cell])
        frames = np.stack([positions, 1.05 * positions, 1.3 * positions])
        got = structure.has_isolated_atom(cells, frames, cutoff=5.0)
        expected = [_isolated_reference(c, p, 5.0) for c, p in zip(cells, frames, strict=True)]
        disagreements += int((got != expected).sum())
        isolated_frames += int(sum(expected))
    assert disagreements == 0
    assert 50 < isolated_frames < 850  # both outcomes were exercised


def test_own_periodic_image_counts_as_a_neighbour() -> None:
    layer = mx2("MoS2", a=3.18, vacuum=10.0)  # a = 3.18 Å < 5 Å
    assert not structure.has_isolated_atom(layer.cell.array[None], layer.positions[None])[0]
    lone = np.diag([8.0, 8.0, 8.0])  # one atom, nearest image 8 Å away
    assert structure.has_isolated_atom(lone[None], np.zeros((1, 1, 3)))[0]


def test_evaluating_a_subset_of_frames() -> None:
    cell = np.diag([12.0, 12.0, 12.0])
    near = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    far = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    cells, positions = np.stack([cell, cell, cell]), np.stack([near, far, near])
    assert structure.has_isolated_atom(cells, positions).tolist() == [False, True, False]
    assert structure.has_isolated_atom(cells, positions, frames=slice(1, 3)).tolist() == [
        True,
        False,
    ]


def test_vacuum_detection() -> None:
    layer = mx2("MoS2", a=3.18, vacuum=8.0)
    assert structure.vacuum_axes(layer.cell.array, layer.positions) == [2]
    bulk = layer.copy()
    bulk.cell[2, 2] = 6.2  # layers 3 Å apart: no vacuum
    assert structure.vacuum_axes(bulk.cell.array, bulk.positions) == []
    assert structure.dimensionality_from_vacuum(1) == 2
    assert structure.dimensionality_from_vacuum(0) == 3


def _layer_with_vacuum_along_a() -> tuple[np.ndarray, np.ndarray]:
    layer = mx2("MoS2", a=3.18, vacuum=8.0)
    layer.rattle(0.05, seed=1)
    cell = layer.cell.array[[2, 0, 1]]  # vacuum vector first; cyclic keeps handedness
    return cell, layer.positions


def test_a_layer_is_turned_so_its_vacuum_lies_along_c_and_z() -> None:
    cell, positions = _layer_with_vacuum_along_a()
    assert structure.vacuum_axes(cell, positions) == [0]
    order = structure.layer_axis_order(0)
    new_cells, new_positions, _, _, orientation = structure.orient_frames(
        cell[None], positions[None], None, None, order
    )
    assert orientation.changed
    assert structure.vacuum_axes(new_cells[0], new_positions[0]) == [2]
    assert np.allclose(new_cells[0, :2, 2], 0.0, atol=1e-12)  # a, b in the xy plane
    assert new_cells[0, 2, 2] > 0  # c along +z

    # Distances are unchanged.
    def distances(p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p[:, None] - p[None], axis=-1)

    assert np.allclose(distances(new_positions[0]), distances(positions))


def test_forces_and_stress_rotate_with_the_structure() -> None:
    """Re-oriented forces and stress equal a calculator's on the re-oriented structure."""
    from ase import Atoms

    cell, positions = _layer_with_vacuum_along_a()
    # Tilt the structure so a real rotation is needed, not only a permutation.
    tilt = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, 0.6, -0.8], [0.0, 0.8, 0.6]]
    )
    cell, positions = cell @ tilt.T, positions @ tilt.T
    calculator = LennardJones(sigma=2.5, epsilon=0.05, rc=6.0)
    before = Atoms("MoS2", positions=positions, cell=cell, pbc=True)
    before.calc = calculator
    forces, stress = before.get_forces(), before.get_stress(voigt=False)
    new_cells, new_positions, new_forces, new_stresses, orientation = structure.orient_frames(
        cell[None], positions[None], forces[None], stress[None], structure.layer_axis_order(0)
    )
    assert orientation.rotated
    after = Atoms("MoS2", positions=new_positions[0], cell=new_cells[0], pbc=True)
    after.calc = LennardJones(sigma=2.5, epsilon=0.05, rc=6.0)
    assert np.allclose(new_forces[0], after.get_forces(), atol=1e-10)
    assert np.allclose(new_stresses[0], after.get_stress(voigt=False), atol=1e-10)
    assert after.get_potential_energy() == pytest.approx(before.get_potential_energy())
