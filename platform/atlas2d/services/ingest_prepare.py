"""Turn validated records into rows: orientation, per-frame summaries, hashes, formulas.

Pure numpy and pymatgen; no database. The ingest service calls this before writing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from atlas2d.analysis import structure
from atlas2d.db.copy_binary import Field, encode_rows
from atlas2d.db.types import vec3_to_bytes
from atlas2d.io.records import EnergyEntryRecord, Trajectory


@dataclass
class PreparedTrajectory:
    """A trajectory in canonical orientation with its per-frame summaries (shapes as in
    ``Trajectory``; summaries are (F,))."""

    source: Trajectory
    cells: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    stresses: np.ndarray | None
    energy_per_atom: np.ndarray
    max_force: np.ndarray
    max_abs_stress: np.ndarray | None
    area_per_atom: np.ndarray
    has_isolated_atom: np.ndarray
    vacuum_axes: list[int]
    info: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""


def composition_fields(species: np.ndarray) -> dict[str, Any]:
    """Reduced formula, chemsys and sorted element list of a set of atomic numbers."""
    from pymatgen.core import Composition

    counts = Counter(chemical_symbols[int(z)] for z in species)
    elements = sorted(counts)
    return {
        "formula": Composition(counts).reduced_formula,
        "chemsys": "-".join(elements),
        "elements": elements,
    }


def spacegroup_number(cell: np.ndarray, positions: np.ndarray, species: np.ndarray) -> int | None:
    """International space-group number (spglib, symprec 0.1 Å), None if spglib fails."""
    import spglib

    frac = np.linalg.solve(cell.T, positions.T).T % 1.0
    try:
        dataset = spglib.get_symmetry_dataset((cell, frac, species), symprec=0.1)
    except Exception:  # spglib raises on degenerate input; the number is optional
        return None
    return None if dataset is None else int(dataset.number)


def _orient(
    cells: np.ndarray,
    positions: np.ndarray,
    forces: np.ndarray | None,
    stresses: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, list[int], dict[str, Any]]:
    """Put a layer's vacuum along c and c along z; leave bulk structures as they are."""
    axes = structure.vacuum_axes(cells[0], positions[0])
    info: dict[str, Any] = {}
    if len(axes) == 1:
        order = structure.layer_axis_order(axes[0])
        cells, positions, forces, stresses, orientation = structure.orient_frames(
            cells, positions, forces, stresses, order
        )
        if orientation.changed:
            info["reoriented"] = {
                "axis_order": list(orientation.axis_order),
                "rotated": orientation.rotated,
                "reason": "the platform keeps a layer's vacuum along c, with c along z",
            }
    return cells, positions, forces, stresses, axes, info


def prepare_trajectory(traj: Trajectory) -> PreparedTrajectory:
    """Orient, summarise and hash one validated trajectory."""
    cells, positions, forces, stresses, axes, info = _orient(
        traj.cells, traj.positions, traj.forces, traj.stresses
    )
    assert forces is not None
    n_sites = traj.n_sites
    prepared = PreparedTrajectory(
        source=traj,
        cells=np.ascontiguousarray(cells, dtype=np.float64),
        positions=np.ascontiguousarray(positions, dtype=np.float64),
        forces=np.ascontiguousarray(forces, dtype=np.float64),
        stresses=None if stresses is None else np.ascontiguousarray(stresses, dtype=np.float64),
        energy_per_atom=traj.energies / n_sites,
        max_force=structure.max_force_norm(forces),
        max_abs_stress=None if stresses is None else structure.max_abs_stress(stresses),
        area_per_atom=structure.area_per_atom(cells, n_sites),
        has_isolated_atom=structure.has_isolated_atom(cells, positions),
        vacuum_axes=axes,
        info={**traj.info, **info},
    )
    prepared.content_hash = trajectory_hash(prepared)
    return prepared


def trajectory_hash(prepared: PreparedTrajectory) -> str:
    """sha256 of what identifies a relaxation: material, method, species and every array."""
    traj = prepared.source
    digest = hashlib.sha256()
    digest.update(f"{traj.material_key}\x00{traj.method}\x00".encode())
    digest.update(np.asarray(traj.species, dtype="<i2").tobytes())
    for values in (prepared.cells, prepared.positions, prepared.forces, traj.energies):
        digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    if prepared.stresses is not None:
        digest.update(prepared.stresses.astype("<f8").tobytes())
    return digest.hexdigest()


def relaxation_row(prepared: PreparedTrajectory, material_id: int, source_id: int) -> dict[str, Any]:
    """The ``relaxations`` row of a prepared trajectory."""
    traj = prepared.source
    last = traj.n_frames - 1
    return {
        "material_id": material_id,
        "source_id": source_id,
        "method": traj.method,
        "sequence": traj.sequence,
        "parameters": traj.parameters,
        "n_sites": traj.n_sites,
        "species": [int(z) for z in traj.species],
        "pbc": list(traj.pbc),
        "n_steps": traj.n_frames,
        "converged": traj.converged,
        "final_energy": float(traj.energies[last]),
        "final_energy_per_atom": float(prepared.energy_per_atom[last]),
        "final_area_per_atom": float(prepared.area_per_atom[last]),
        "wall_time_s": traj.wall_time_s,
        "info": prepared.info,
        "content_hash": prepared.content_hash,
    }


def encode_frames(prepared: PreparedTrajectory, relaxation_id: int) -> bytes:
    """Binary COPY rows of a trajectory's frames (column order of ``FRAME_COLUMNS``)."""
    traj = prepared.source
    n_frames = traj.n_frames
    has_stress = prepared.stresses is not None
    return encode_rows(
        [
            Field("int4", np.full(n_frames, relaxation_id)),
            Field("int4", np.arange(n_frames)),
            Field("int2", np.full(n_frames, traj.n_sites)),
            Field("matrix3", prepared.cells),
            Field("vec3", prepared.positions),
            Field("vec3", prepared.forces),
            Field("matrix3", prepared.stresses) if has_stress else Field("null"),
            Field("float8", traj.energies),
            Field("float8", prepared.energy_per_atom),
            Field("float8", prepared.max_force),
            Field("float8", prepared.max_abs_stress) if has_stress else Field("null"),
            Field("float8", prepared.area_per_atom),
            Field("bool", prepared.has_isolated_atom),
        ]
    )


@dataclass
class PreparedEntry:
    """A convex-hull entry in canonical orientation, with its hash."""

    source: EnergyEntryRecord
    cell: np.ndarray
    positions: np.ndarray
    vacuum_axes: list[int]
    content_hash: str


def prepare_entry(entry: EnergyEntryRecord) -> PreparedEntry:
    """Orient and hash one validated energy entry."""
    cells, positions, _, _, axes, _ = _orient(
        entry.cell[None], entry.positions[None], None, None
    )
    digest = hashlib.sha256()
    digest.update(f"{entry.material_key}\x00".encode())
    digest.update(np.asarray(entry.species, dtype="<i2").tobytes())
    digest.update(np.asarray([entry.energy, entry.correction], dtype="<f8").tobytes())
    digest.update(cells[0].astype("<f8").tobytes())
    digest.update(positions[0].astype("<f8").tobytes())
    return PreparedEntry(entry, cells[0], positions[0], axes, digest.hexdigest())


def entry_row(prepared: PreparedEntry, material_id: int, source_id: int) -> dict[str, Any]:
    """The ``energy_entries`` row of a prepared entry."""
    entry = prepared.source
    return {
        "material_id": material_id,
        "source_id": source_id,
        "method": "dft",
        "energy": entry.energy,
        "correction": entry.correction,
        "n_sites": len(entry.species),
        "species": [int(z) for z in entry.species],
        "cell": prepared.cell,
        "positions": vec3_to_bytes(prepared.positions),
        "data": entry.data,
        "content_hash": prepared.content_hash,
    }
