"""The reference labeller (CHGNet's pretrained model): trajectories in the stored units,
stress in ASE's convention (proved by finite differences), in-plane cell relaxation for
layers and full for bulk, and a clear error without the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2

from atlas2d.errors import InvalidInput, MissingExtra
from atlas2d.mlff.labeller import (
    LabelSettings,
    label_relaxation,
    labeller_calculator,
    labeller_force_field,
    labeller_version,
)

FEW_STEPS = LabelSettings(fmax=0.05, max_steps=12)


def _layer(a: float = 3.28, seed: int = 0) -> Atoms:
    """A rattled, stretched MoS2 layer (3 atoms, vacuum along c), flagged periodic."""
    atoms = mx2("MoS2", a=a, thickness=3.13, vacuum=8.0)
    atoms.set_cell(atoms.cell.array @ np.diag([1.0, 0.98, 1.0]), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    atoms.pbc = True
    return atoms


def test_trajectory_shapes_units_and_marking() -> None:
    start = _layer()
    trajectory = label_relaxation(start, "mos2-layer", FEW_STEPS)
    frames, n = trajectory.n_frames, len(start)
    steps = trajectory.info["optimizer_steps"]
    assert frames == steps + 1 and 2 <= frames <= FEW_STEPS.max_steps + 1  # step 0 is the start
    assert trajectory.cells.shape == (frames, 3, 3)
    assert trajectory.positions.shape == trajectory.forces.shape == (frames, n, 3)
    assert trajectory.energies.shape == (frames,)
    assert trajectory.stresses is not None and trajectory.stresses.shape == (frames, 3, 3)
    np.testing.assert_array_equal(trajectory.species, start.numbers)
    np.testing.assert_allclose(trajectory.positions[0], start.positions)
    assert trajectory.method == "dft" and trajectory.pbc == (True, True, True)
    assert trajectory.converged is (steps < FEW_STEPS.max_steps)
    assert trajectory.parameters == {
        "reference": "labeller",
        "labeller": "CHGNet",
        "labeller_version": labeller_version(),
        "model": "CHGNet 0.3.0 (pretrained, MPtrj)",
        "optimizer": "FIRE",
        "cell_filter": "FrechetCellFilter",
        "fmax": 0.05,
        "max_steps": 12,
        "cell_relax": "in-plane",
    }
    # The recorded labels are the labeller's own: energy eV, forces eV/Å, full stress eV/Å³.
    probe = start.copy()
    probe.calc = labeller_calculator()
    assert trajectory.energies[0] == pytest.approx(probe.get_potential_energy(), abs=1e-5)
    np.testing.assert_allclose(trajectory.forces[0], probe.get_forces(), atol=1e-5)
    np.testing.assert_allclose(trajectory.stresses[0], probe.get_stress(voigt=False), atol=1e-7)
    assert -10 < trajectory.energies[0] / n < -5  # eV/atom, the size of MoS2's
    assert trajectory.energies[-1] < trajectory.energies[0]  # downhill
    assert np.abs(trajectory.stresses[0, 2, 2]) > 0  # recorded unmasked


def test_layer_relaxes_in_plane_only() -> None:
    start = _layer(a=3.35, seed=1)
    trajectory = label_relaxation(start, "mos2-stretched", LabelSettings(max_steps=25))
    assert trajectory.parameters["cell_relax"] == "in-plane"
    for cell in trajectory.cells:  # c, and with it the vacuum, never moves
        np.testing.assert_allclose(cell[2], start.cell.array[2], atol=1e-10)
    a_start, a_final = (np.linalg.norm(cell[0]) for cell in trajectory.cells[[0, -1]])
    assert a_final < a_start - 0.05  # the stretched layer shrank in-plane (to about 3.19 Å)


def test_bulk_relaxes_the_full_cell() -> None:
    start = bulk("Si", "diamond", a=5.60)
    start.rattle(0.02, seed=2)
    trajectory = label_relaxation(start, "si-diamond", LabelSettings(max_steps=25))
    assert trajectory.parameters["cell_relax"] == "full"
    volumes = [abs(np.linalg.det(cell)) for cell in trajectory.cells]
    assert volumes[-1] < volumes[0] - 1.0  # all three axes shrink towards a ≈ 5.45 Å


def _strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return strained


@pytest.mark.parametrize("kind", ["bulk", "layer"])
def test_stress_is_the_strain_derivative_in_ev_per_a3_with_ase_sign(kind: str) -> None:
    """σ_ij = (1/V) ∂E/∂ε_ij (positive = tensile), as atlas2d stores it: CHGNet's GPa
    times ase.units.GPa, no sign change. CHGNet computes in float32, so the strain step
    is 1e-3 and the tolerance 2 % of the largest component."""
    # Compressed (Si's a is about 5.45 Å, MoS2's 3.19 Å): a large, negative stress.
    atoms = bulk("Si", "diamond", a=5.25) if kind == "bulk" else _layer(a=3.05, seed=3)
    atoms.rattle(0.02, seed=4)
    calculator = labeller_calculator()

    def energy(structure: Atoms) -> float:
        structure.calc = calculator
        return structure.get_potential_energy()

    volume = atoms.get_volume()
    step = 1e-3
    components = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2)]
    finite_difference = np.zeros((3, 3))
    for i, j in components:
        strain = np.zeros((3, 3))
        strain[i, j] = strain[j, i] = step / (1 if i == j else 2)  # symmetric
        derivative = (energy(_strained(atoms, strain)) - energy(_strained(atoms, -strain))) / (
            2 * step
        )
        finite_difference[i, j] = finite_difference[j, i] = derivative / volume
    probe = atoms.copy()
    probe.calc = calculator
    from_calculator = probe.get_stress(voigt=False)
    from_batch = labeller_force_field().predict([atoms]).stresses[0]
    scale = np.abs(finite_difference).max()
    assert scale > 0.01  # eV/Å³: compressed, so the check is not trivially zero
    assert finite_difference[0, 0] < 0  # compressed → negative (compressive) in ASE's sign
    for stress in (from_calculator, from_batch):
        for i, j in components:
            assert stress[i, j] == pytest.approx(finite_difference[i, j], abs=0.02 * scale)


def test_vacuum_along_a_is_refused() -> None:
    layer = _layer()
    turned = Atoms(
        numbers=layer.numbers,
        positions=layer.positions[:, [2, 0, 1]],
        cell=layer.cell.array[[2, 0, 1]][:, [2, 0, 1]],
        pbc=True,
    )
    with pytest.raises(InvalidInput, match="vacuum along a"):
        label_relaxation(turned, "turned", FEW_STEPS)


def test_missing_chgnet_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("chgnet", "chgnet.model"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(MissingExtra, match=r'pip install -e "\.\[demo\]"'):
        labeller_version()
