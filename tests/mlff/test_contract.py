"""The force-field contract, written once and applied to every adapter: a tiny M3GNet
and a tiny MACE trained once per test run straight through ``mlff`` (no database), on
synthetic layers exported with the frameworks' conventions.

Finite differences need float64: MACE trains in float64; the M3GNet is switched to
float64 (matgl trains in float32) before it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import mx2

from atlas2d.io.records import ExportFrame
from atlas2d.mlff.forcefield import ForceField
from atlas2d.vocabulary import Split
from tests.conftest import tiny_options
from tests.support.synthetic import synthetic_trajectories

ARCHITECTURES = ["m3gnet", "mace"]


def _split_frames(seed: int = 21) -> dict[Split, list[ExportFrame]]:
    """Synthetic layers (MoS2 among them) as export frames, a quarter of the materials
    in the validation split."""
    trajectories = synthetic_trajectories(16, 6, 6, seed=seed)
    splits: dict[Split, list[ExportFrame]] = {"train": [], "val": []}
    for index, trajectory in enumerate(trajectories):
        split: Split = "val" if index % 4 == 3 else "train"
        splits[split] += [
            ExportFrame(
                species=trajectory.species,
                cell=trajectory.cells[f],
                positions=trajectory.positions[f],
                energy=float(trajectory.energies[f]),
                forces=trajectory.forces[f],
                stress=None if trajectory.stresses is None else trajectory.stresses[f],
                info={"material_key": trajectory.material_key, "step": f},
            )
            for f in range(trajectory.n_frames)
        ]
    return splits


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Architecture → model file of a tiny model trained for two epochs on the CPU."""
    from ase.data import chemical_symbols

    from atlas2d.io.exporters import write_mace_extxyz, write_matgl_dataset
    from atlas2d.mlff.train_m3gnet import train_m3gnet
    from atlas2d.mlff.train_mace import train_mace

    root = tmp_path_factory.mktemp("contract_models")
    frames = _split_frames()
    numbers = sorted({int(z) for split in frames.values() for f in split for z in f.species})
    elements = tuple(chemical_symbols[z] for z in numbers)
    assert {"Mo", "S"} <= set(elements) and "Au" not in elements
    dirs = {split: root / "matgl" / split for split in frames}
    files = {split: root / "mace" / f"{split}.extxyz" for split in frames}
    (root / "mace").mkdir()
    for split, split_frames in frames.items():
        write_matgl_dataset(split_frames, dirs[split])
        write_mace_extxyz(split_frames, files[split])
    (root / "m3gnet_run").mkdir()
    (root / "mace_run").mkdir()
    m3gnet = train_m3gnet(dirs, elements, tiny_options("m3gnet"), root / "m3gnet_run")
    mace = train_mace(files, elements, tiny_options("mace"), root / "mace_run")
    return {"m3gnet": m3gnet.artifact, "mace": mace.artifact}


@pytest.fixture(params=ARCHITECTURES)
def force_field(
    request: pytest.FixtureRequest, tiny_model_files: dict[str, Path]
) -> Iterator[ForceField]:
    import matgl
    import torch

    from atlas2d.mlff.m3gnet import M3GNetForceField, load_potential
    from atlas2d.mlff.mace import MACEForceField, load_module

    float_th, float_np, default = matgl.float_th, matgl.float_np, torch.get_default_dtype()
    matgl.set_default_dtype("float", 64)  # also sets torch's default dtype
    data = tiny_model_files[request.param].read_bytes()
    if request.param == "m3gnet":
        yield M3GNetForceField(load_potential(data))
    else:
        yield MACEForceField(load_module(data))
    matgl.float_th, matgl.float_np = float_th, float_np
    torch.set_default_dtype(default)


def _layer(seed: int = 0, size: int = 1) -> Atoms:
    """A rattled, sheared MoS2 layer (vacuum along c), flagged periodic in-plane only."""
    atoms = mx2("MoS2", a=3.18, vacuum=6.0, size=(size, size, 1))
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.02, 0.01, 0], [0, 0.985, 0], [0, 0, 1]]), scale_atoms=True
    )
    atoms.rattle(0.08, seed=seed)
    atoms.pbc = (True, True, False)
    return atoms


def _energy(force_field: ForceField, atoms: Atoms) -> float:
    return float(force_field.predict([atoms]).energies[0])


def test_shapes_and_units(force_field: ForceField) -> None:
    structures = [_layer(0), _layer(1, size=2), _layer(2)]
    predictions = force_field.predict(structures, batch_size=2)
    assert predictions.energies.shape == (3,)
    assert [f.shape for f in predictions.forces] == [(3, 3), (12, 3), (3, 3)]
    assert predictions.stresses.shape == (3, 3, 3)
    np.testing.assert_allclose(
        predictions.stresses, predictions.stresses.transpose(0, 2, 1), atol=1e-10
    )
    assert all(np.isfinite(f).all() for f in predictions.forces)
    # A supercell of the same layer: extensive energy, same stress.
    base, double = _layer(3), _layer(3).repeat((2, 2, 1))
    pair = force_field.predict([base, double])
    assert pair.energies[1] == pytest.approx(4 * pair.energies[0], rel=1e-9)
    np.testing.assert_allclose(pair.stresses[1], pair.stresses[0], atol=1e-9)


def test_forces_are_minus_the_energy_gradient(force_field: ForceField) -> None:
    atoms = _layer(4)
    forces = force_field.predict([atoms]).forces[0]
    step = 1e-4  # Å
    for atom, axis in [(0, 0), (1, 2), (2, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += step
        minus.positions[atom, axis] -= step
        derivative = (_energy(force_field, plus) - _energy(force_field, minus)) / (2 * step)
        assert forces[atom, axis] == pytest.approx(-derivative, rel=1e-5, abs=1e-7)
    assert np.abs(forces).max() > 1e-4  # a force field that predicts zero would pass trivially


def _strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return strained


def test_stress_is_the_strain_derivative_in_ev_per_a3_with_ase_sign(
    force_field: ForceField,
) -> None:
    """σ_ij = (1/V) ∂E/∂ε_ij, positive = tensile: proves units and sign of both the batch
    API and the ASE calculator."""
    atoms = _layer(5)
    volume = atoms.get_volume()
    step = 1e-5
    finite_difference = np.zeros((3, 3))
    for i, j in [(0, 0), (1, 1), (0, 1), (2, 2), (0, 2)]:
        strain = np.zeros((3, 3))
        strain[i, j] = strain[j, i] = step / (1 if i == j else 2)  # symmetric
        derivative = (
            _energy(force_field, _strained(atoms, strain))
            - _energy(force_field, _strained(atoms, -strain))
        ) / (2 * step)
        finite_difference[i, j] = finite_difference[j, i] = derivative / volume
    predicted = force_field.predict([atoms]).stresses[0]
    atoms.calc = force_field.calculator()
    from_calculator = atoms.get_stress(voigt=False)
    scale = np.abs(finite_difference).max()
    assert scale > 1e-6
    for stress in (predicted, from_calculator):
        for i, j in [(0, 0), (1, 1), (0, 1), (2, 2), (0, 2)]:
            assert stress[i, j] == pytest.approx(finite_difference[i, j], abs=1e-4 * scale)


def test_rotation_about_z_and_translation(force_field: ForceField) -> None:
    atoms = _layer(6)
    angle = np.deg2rad(37.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T
    translated = atoms.copy()
    translated.translate([0.7, -1.3, 0.4])
    predictions = force_field.predict([atoms, rotated, translated])
    energies, forces, stresses = predictions.energies, predictions.forces, predictions.stresses
    assert energies[1] == pytest.approx(energies[0], abs=1e-8)
    assert energies[2] == pytest.approx(energies[0], abs=1e-8)
    np.testing.assert_allclose(forces[1], forces[0] @ rotation.T, atol=1e-8)
    np.testing.assert_allclose(forces[2], forces[0], atol=1e-8)
    np.testing.assert_allclose(stresses[1], rotation @ stresses[0] @ rotation.T, atol=1e-9)


def test_ase_calculator_equals_the_batch_api(force_field: ForceField) -> None:
    structures = [_layer(7), _layer(8, size=2)]
    batch = force_field.predict(structures, batch_size=2)
    for index, atoms in enumerate(structures):
        atoms.calc = force_field.calculator()
        assert atoms.get_potential_energy() == pytest.approx(batch.energies[index], abs=1e-8)
        np.testing.assert_allclose(atoms.get_forces(), batch.forces[index], atol=1e-8)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), batch.stresses[index], atol=1e-9)
        assert atoms.pbc.tolist() == [True, True, False]  # the caller's flags are untouched


def test_layer_flags_do_not_change_the_result(force_field: ForceField) -> None:
    """Layers are evaluated 3D periodic whatever their pbc flags (as they were trained)."""
    atoms = _layer(9)
    periodic = atoms.copy()
    periodic.pbc = True
    predictions = force_field.predict([atoms, periodic])
    assert predictions.energies[0] == pytest.approx(predictions.energies[1], abs=1e-10)
    np.testing.assert_allclose(predictions.stresses[0], predictions.stresses[1], atol=1e-14)


def test_unknown_elements_are_named(force_field: ForceField) -> None:
    with pytest.raises(ValueError, match="cannot evaluate Au"):
        force_field.predict(
            [Atoms("Au2", positions=[[0, 0, 0], [0, 0, 2.5]], cell=[8, 8, 8], pbc=True)]
        )
