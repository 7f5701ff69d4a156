"""extxyz and other ASE-readable trajectories: one relaxation per file, or several
grouped by an info key."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from atlas2d.analysis.units import StressUnit, stress_to_ev_a3, voigt_to_matrix
from atlas2d.io.records import Trajectory
from atlas2d.io.validate import bad_record, shown, stress_at_every_step

if TYPE_CHECKING:
    from ase import Atoms

ENERGY_KEYS = ("energy", "REF_energy", "dft_energy")
FORCES_KEYS = ("forces", "REF_forces", "dft_forces")
STRESS_KEYS = ("stress", "REF_stress", "dft_stress")


def _calc_result(atoms: Any, name: str) -> Any:
    calc = atoms.calc
    if calc is not None and name in getattr(calc, "results", {}):
        return calc.results[name]
    return None


def _first(atoms: Any, keys: tuple[str, ...], where: str) -> Any:
    store = atoms.info if where == "info" else atoms.arrays
    for key in keys:
        if key in store:
            return store[key]
    return None


def _frame_values(atoms: Any, path: str, record: str, step: int) -> tuple[float, np.ndarray, Any]:
    energy = _calc_result(atoms, "energy")
    if energy is None:
        energy = _first(atoms, ENERGY_KEYS, "info")
    if energy is None:
        raise bad_record(
            path, record, "energy", f"missing (looked for {', '.join(ENERGY_KEYS)})", step=step
        )
    forces = _calc_result(atoms, "forces")
    if forces is None:
        forces = _first(atoms, FORCES_KEYS, "arrays")
    if forces is None:
        raise bad_record(
            path, record, "forces", f"missing (looked for {', '.join(FORCES_KEYS)})", step=step
        )
    stress = _calc_result(atoms, "stress")
    if stress is None:
        stress = _first(atoms, STRESS_KEYS, "info")
    # extxyz reads "energy=abc" as text and "energy=T" as a boolean: refuse both.
    if isinstance(energy, (bool, np.bool_)) or not isinstance(energy, (int, float, np.number)):
        raise bad_record(
            path, record, "energy", f"expected a number, got {shown(energy)}", step=step
        )
    try:
        return float(energy), np.asarray(forces, dtype=np.float64), stress
    except (ValueError, TypeError, OverflowError) as err:
        raise bad_record(path, record, "forces", f"not numbers ({err})", step=step) from err


def _stress_matrix(stress: Any, path: str, record: str, step: int) -> np.ndarray:
    try:
        values = np.asarray(stress, dtype=np.float64).ravel()
    except (ValueError, TypeError, OverflowError) as err:
        raise bad_record(path, record, "stress", f"not numbers ({err})", step=step) from err
    if np.asarray(stress).dtype.kind not in "iuf":  # "T" (a boolean) or text like "1.5"
        raise bad_record(
            path, record, "stress", f"expected numbers, got {shown(stress)}", step=step
        )
    if values.size == 6:
        return voigt_to_matrix(values)
    if values.size == 9:
        return values.reshape(3, 3)
    raise bad_record(
        path, record, "stress", f"expected 6 or 9 components, got {values.size}", step=step
    )


def read_ase_trajectories(
    content: bytes,
    path: Path,
    group_key: str | None,
    stress_unit: StressUnit,
) -> list[Trajectory]:
    """Relaxations from an extxyz (or ASE .traj) file, frames in file order.

    Args:
        content: the decompressed file.
        path: the file (its name picks the ASE format; its stem is the default key).
        group_key: info key whose value names the material of each frame; frames with
            the same value form one relaxation. None: the whole file is one relaxation,
            keyed by ``info["material_key"]`` or the file stem.
        stress_unit: unit and sign of the stress in the file (ASE's eV/Å³ by default).

    Raises:
        InvalidInput: unreadable file, missing energy/forces, changing species, bad shapes.
    """
    from ase.io import read

    name = str(path)
    fmt = "traj" if path.name.split(".")[1:2] == ["traj"] else "extxyz"
    try:
        stream: Any = io.BytesIO(content) if fmt == "traj" else io.StringIO(content.decode())
        # index=":" always gives a list (ASE annotates Atoms | list[Atoms]).
        images = cast("list[Atoms]", read(stream, index=":", format=fmt))
    except Exception as err:
        raise bad_record(name, "", fmt, f"cannot be parsed ({err})") from err
    if not images:
        raise bad_record(name, "", fmt, "the file holds no frame")
    groups: dict[str, list[tuple[int, Any]]] = {}
    for index, atoms in enumerate(images):
        if group_key is not None:
            if group_key not in atoms.info:
                raise bad_record(name, f"frame {index}", group_key, "missing from the frame's info")
            key = str(atoms.info[group_key])
        else:
            key = str(images[0].info.get("material_key", path.name.split(".")[0]))
        groups.setdefault(key, []).append((index, atoms))
    return [_trajectory(name, key, frames, stress_unit) for key, frames in groups.items()]


def _trajectory(
    name: str, key: str, frames: list[tuple[int, Any]], stress_unit: StressUnit
) -> Trajectory:
    record = f"material {key}"
    species = frames[0][1].numbers.copy()
    energies, forces, stresses = [], [], []
    for step, (index, atoms) in enumerate(frames):
        if not np.array_equal(atoms.numbers, species):
            raise bad_record(
                name,
                f"{record} (frame {index})",
                "species",
                "differ from the first frame of the material",
                step=step,
            )
        energy, force, stress = _frame_values(atoms, name, record, step)
        if force.shape != (len(species), 3):
            raise bad_record(
                name,
                record,
                "forces",
                f"expected shape {(len(species), 3)}, got {force.shape}",
                step=step,
            )
        energies.append(energy)
        forces.append(force)
        stresses.append(None if stress is None else _stress_matrix(stress, name, record, step))
    present = stress_at_every_step(stresses, name, record)
    pbc = frames[0][1].pbc
    return Trajectory(
        material_key=key,
        species=species,
        cells=np.array([atoms.cell.array for _, atoms in frames]),
        positions=np.array([atoms.positions for _, atoms in frames]),
        energies=np.array(energies),
        forces=np.array(forces),
        stresses=None if present is None else stress_to_ev_a3(np.array(present), stress_unit),
        parameters={},
        record=record,
        pbc=(bool(pbc[0]), bool(pbc[1]), bool(pbc[2])),
    )
