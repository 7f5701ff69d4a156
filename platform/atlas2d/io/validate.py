"""Checks every record before anything is written, with messages that say where and what."""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers

from atlas2d.errors import InvalidInput
from atlas2d.io.records import EnergyEntryRecord, Trajectory

MAX_ATOMIC_NUMBER = 118


def bad_record(
    path: str, record: str, field: str, problem: str, step: int | None = None
) -> InvalidInput:
    """An ``InvalidInput`` naming file, record, step and field."""
    where = f"{path}: {record}" if record else path
    if step is not None:
        where += f", step {step}"
    return InvalidInput(
        f"{where}, field '{field}': {problem}. Nothing from this file was written; fix or "
        "remove the record, or pass --skip-bad to ingest the other files."
    )


def atomic_number(symbol: str, path: str, record: str, field: str, site: int) -> int:
    """Atomic number of an element symbol; refuses dummy symbols such as ``X``."""
    z = atomic_numbers.get(symbol.strip())
    if not z:  # ASE maps the dummy 'X' to 0
        raise bad_record(
            path,
            record,
            field,
            f"species {symbol.strip()!r} of site {site} is not a chemical element",
        )
    return z


def _expect_shape(
    values: np.ndarray, shape: tuple[int, ...], path: str, record: str, field: str
) -> None:
    if values.shape != shape:
        raise bad_record(path, record, field, f"expected shape {shape}, got {values.shape}")


def validate_trajectory(traj: Trajectory, path: str) -> None:
    """Check the shapes and species of a trajectory (values are checked per block, see
    ``queries.row_encoding``).

    Raises:
        InvalidInput: naming the file, record, step and field at fault.
    """
    record = traj.record or f"material {traj.material_key}"
    species = np.asarray(traj.species)
    if species.ndim != 1 or species.size == 0:
        raise bad_record(path, record, "species", "expected a non-empty list of atomic numbers")
    if species.min() < 1 or species.max() > MAX_ATOMIC_NUMBER:
        raise bad_record(path, record, "species", "atomic numbers must lie in 1..118")
    n_frames, n_sites = len(traj.energies), len(species)
    if n_frames == 0:
        raise bad_record(path, record, "steps", "the trajectory has no step")
    _expect_shape(traj.energies, (n_frames,), path, record, "energy")
    _expect_shape(traj.cells, (n_frames, 3, 3), path, record, "cell")
    _expect_shape(traj.positions, (n_frames, n_sites, 3), path, record, "positions")
    _expect_shape(traj.forces, (n_frames, n_sites, 3), path, record, "forces")
    if traj.stresses is not None:
        _expect_shape(traj.stresses, (n_frames, 3, 3), path, record, "stress")


def validate_entry(entry: EnergyEntryRecord, path: str) -> None:
    """Check a convex-hull entry's shapes, species and finiteness."""
    record = entry.record or f"entry {entry.material_key}"
    species = np.asarray(entry.species)
    if species.ndim != 1 or species.size == 0 or species.min() < 1:
        raise bad_record(path, record, "structure.species", "expected atomic numbers ≥ 1")
    _expect_shape(entry.cell, (3, 3), path, record, "structure.lattice")
    _expect_shape(entry.positions, (len(species), 3), path, record, "structure.sites")
    for field, value in (("energy", entry.energy), ("correction", entry.correction)):
        if not np.isfinite(value):
            raise bad_record(path, record, field, "value is NaN or infinite")
    if not (np.isfinite(entry.cell).all() and np.isfinite(entry.positions).all()):
        raise bad_record(path, record, "structure", "coordinates are NaN or infinite")
