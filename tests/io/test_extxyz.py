"""extxyz / ASE trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import mx2
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from atlas2d.errors import InvalidInput
from atlas2d.io.readers import ReadOptions, read_file


def _frames(key: str, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for step in range(n):
        atoms = mx2("MoS2", a=3.18 + 0.01 * step, vacuum=8.0)
        atoms.info["material_key"] = key
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=-20.0 - 0.1 * step,
            forces=rng.standard_normal((3, 3)),
            stress=rng.standard_normal(6) * 0.01,
        )
        frames.append(atoms)
    return frames


def test_one_relaxation_per_file(tmp_path: Path) -> None:
    frames = _frames("MoS2-2H", 4, seed=1)
    path = tmp_path / "relax.extxyz"
    write(path, frames)
    (traj,) = read_file(path, ReadOptions()).trajectories
    assert traj.material_key == "MoS2-2H"
    assert traj.n_frames == 4
    assert np.allclose(traj.energies, [-20.0, -20.1, -20.2, -20.3])
    assert np.allclose(traj.forces, [a.get_forces() for a in frames])
    assert np.allclose(
        traj.stresses, [a.get_stress(voigt=False) for a in frames]
    )  # eV/Å³ as written


def test_frames_grouped_by_an_info_key(tmp_path: Path) -> None:
    a, b = _frames("A", 3, seed=1), _frames("B", 2, seed=2)
    path = tmp_path / "many.extxyz"
    write(path, [a[0], b[0], a[1], b[1], a[2]])
    trajectories = read_file(path, ReadOptions(group_key="material_key")).trajectories
    assert [(t.material_key, t.n_frames) for t in trajectories] == [("A", 3), ("B", 2)]
    assert np.allclose(trajectories[0].energies, [-20.0, -20.1, -20.2])


def test_a_frame_without_energy_is_refused(tmp_path: Path) -> None:
    frames = _frames("A", 2, seed=1)
    frames[1].calc = None
    frames[1].info.pop("energy", None)
    path = tmp_path / "relax.extxyz"
    write(path, frames)
    with pytest.raises(InvalidInput, match=r"material A, step 1, field 'energy': missing"):
        read_file(path, ReadOptions())


def test_a_missing_group_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "relax.extxyz"
    write(path, _frames("A", 2, seed=1))
    with pytest.raises(InvalidInput, match=r"frame 0, field 'sample': missing"):
        read_file(path, ReadOptions(group_key="sample"))
