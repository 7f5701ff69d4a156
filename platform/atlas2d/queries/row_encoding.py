"""Turn validated records into rows: orientation, per-frame summaries, hashes, formulas.

Pure numpy and pymatgen; no database. Trajectories sharing a number of sites (and
whether they carry stress) are concatenated into one ``FrameBlock`` so that every
summary is computed by a few array operations over all their frames at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from atlas2d.analysis import structure
from atlas2d.analysis.structure import dimensionality_from_vacuum
from atlas2d.db.copy_binary import Field, encode_rows
from atlas2d.db.digests import frame_digests
from atlas2d.db.types import vec3_to_bytes
from atlas2d.errors import InvalidInput
from atlas2d.io.records import EnergyEntryRecord, ParsedFile, Trajectory
from atlas2d.io.validate import bad_record
from atlas2d.vocabulary import StartFrom

ENCODE_CHUNK_FRAMES = 4096
"""Frames per binary-COPY chunk: small enough to stream, large enough to vectorise."""


def composition_fields(species: np.ndarray) -> dict[str, Any]:
    """Reduced formula (pymatgen's), chemsys and sorted element list of atomic numbers."""
    numbers, counts = np.unique(np.asarray(species), return_counts=True)
    return dict(_composition(tuple(zip(numbers.tolist(), counts.tolist(), strict=True))))


@lru_cache(maxsize=65536)
def _composition(counts: tuple[tuple[int, int], ...]) -> tuple[tuple[str, Any], ...]:
    # Cached: datasets repeat compositions, and pymatgen's Composition is slow to build.
    from pymatgen.core import Composition

    by_symbol = {chemical_symbols[z]: n for z, n in counts}
    elements = sorted(by_symbol)
    return (
        ("formula", Composition(by_symbol).reduced_formula),
        ("chemsys", "-".join(elements)),
        ("elements", elements),
    )


@dataclass
class Summaries:
    """Per-frame scalars stored with every frame, each of shape (F,).

    Attributes:
        energy_per_atom: eV/atom.
        energy_change: |e_i − e_{i+1}| per atom to the next step of the same relaxation,
            eV/atom; meaningless (and never stored) at a relaxation's last step.
        max_force: largest per-atom force norm, eV/Å.
        max_abs_stress: largest |σ_ij|, eV/Å³; None when the block has no stress.
        area_per_atom: |a × b| / N, Å²/atom.
    """

    energy_per_atom: np.ndarray
    energy_change: np.ndarray
    max_force: np.ndarray
    max_abs_stress: np.ndarray | None
    area_per_atom: np.ndarray


@dataclass
class FrameBlock:
    """All frames of trajectories with the same ``n_sites`` and stress presence.

    Trajectory ``t`` owns frames ``offsets[t]:offsets[t + 1]``. Arrays are in the
    stored canonical form (layers oriented with vacuum along c, c along z): cells
    (F, 3, 3) Å, positions (F, N, 3) Å, forces (F, N, 3) eV/Å, stresses (F, 3, 3)
    eV/Å³ or None, energies (F,) eV. The scalar summaries (``Summaries``) are computed
    and checked before anything is written; ``has_isolated_atom`` is computed chunk by
    chunk while the frames stream to the database (``encode_frames``).
    """

    n_sites: int
    trajectories: list[Trajectory]
    offsets: np.ndarray
    cells: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    stresses: np.ndarray | None
    energies: np.ndarray
    vacuum: np.ndarray
    """(T, 3) bool: vacuum along a, b, c of each trajectory's first frame (before orienting)."""
    infos: list[dict[str, Any]]
    hashes: list[str]
    summaries: Summaries | None = None

    def frames_of(self, t: int) -> slice:
        return slice(int(self.offsets[t]), int(self.offsets[t + 1]))


def _locate(offsets: np.ndarray, frame: int) -> tuple[int, int]:
    """(trajectory index, step) of a frame of a block."""
    t = int(np.searchsorted(offsets, frame, side="right") - 1)
    return t, frame - int(offsets[t])


def _check_values(block: FrameBlock, path: str) -> None:
    """Refuse NaN/inf values and degenerate cells, naming record, step and field."""
    arrays = {
        "energy": block.energies,
        "cell": block.cells,
        "positions": block.positions,
        "forces": block.forces,
    }
    if block.stresses is not None:
        arrays["stress"] = block.stresses
    problems = [
        (name, np.isfinite(v.reshape(len(v), -1)).all(axis=1), "value is NaN or infinite")
        for name, v in arrays.items()
    ]
    problems.append(
        ("cell", np.abs(np.linalg.det(block.cells)) > 1e-6, "the lattice vectors are degenerate")
    )
    for name, ok, problem in problems:
        if not ok.all():
            t, step = _locate(block.offsets, int(np.flatnonzero(~ok)[0]))
            traj = block.trajectories[t]
            raise bad_record(
                path, traj.record or f"material {traj.material_key}", name, problem, step=step
            )


def _orient_layers(block: FrameBlock, path: str) -> None:
    """Re-orient, in place, every layer whose vacuum is not along c or whose c is not along z."""
    for t, vacuum in enumerate(block.vacuum):
        order = structure.layer_order_from_vacuum(vacuum)
        frames = block.frames_of(t)
        if order is None or (
            order == (0, 1, 2) and not structure.needs_rotation(block.cells[frames])
        ):
            continue
        cells, positions, forces, stresses, orientation = structure.orient_frames(
            block.cells[frames],
            block.positions[frames],
            block.forces[frames],
            None if block.stresses is None else block.stresses[frames],
            order,
        )
        block.cells[frames], block.positions[frames], block.forces[frames] = (
            cells,
            positions,
            forces,
        )
        if block.stresses is not None:
            block.stresses[frames] = stresses
        if not np.isfinite(positions).all():  # finite, but too large to rotate
            raise bad_record(
                path,
                block.trajectories[t].record or f"material {block.trajectories[t].material_key}",
                "positions",
                "values too large to turn into the stored orientation (they overflow)",
            )
        block.infos[t] = {
            **block.infos[t],
            "reoriented": {
                "axis_order": list(orientation.axis_order),
                "rotated": orientation.rotated,
                "reason": "the platform keeps a layer's vacuum along c, with c along z",
            },
        }


def _summarise(block: FrameBlock) -> Summaries:
    energy_per_atom = block.energies / block.n_sites
    return Summaries(
        energy_per_atom=energy_per_atom,
        energy_change=np.abs(np.diff(energy_per_atom, append=np.nan)),
        max_force=structure.max_force_norm(block.forces),
        max_abs_stress=None if block.stresses is None else structure.max_abs_stress(block.stresses),
        area_per_atom=structure.area_per_atom(block.cells, block.n_sites),
    )


def _check_summaries(block: FrameBlock, summaries: Summaries, path: str) -> None:
    """Refuse a frame whose finite values give an infinite (or NaN) summary, naming the
    record, step and the input field it comes from: forces of 1e308 have an infinite
    norm, a lattice vector of 1e308 an infinite area."""
    not_last = np.ones(len(block.energies), dtype=bool)
    not_last[block.offsets[1:] - 1] = False
    checks = [
        ("energy", "energy_per_atom", summaries.energy_per_atom, None),
        ("energy", "energy_change (to the next step)", summaries.energy_change, not_last),
        ("forces", "max_force (the largest force norm)", summaries.max_force, None),
        ("cell", "area_per_atom (|a × b| / N)", summaries.area_per_atom, None),
    ]
    if summaries.max_abs_stress is not None:
        checks.append(("stress", "max_abs_stress", summaries.max_abs_stress, None))
    for field, summary, values, where in checks:
        bad = ~np.isfinite(values) if where is None else ~np.isfinite(values) & where
        if bad.any():
            t, step = _locate(block.offsets, int(np.flatnonzero(bad)[0]))
            traj = block.trajectories[t]
            raise bad_record(
                path,
                traj.record or f"material {traj.material_key}",
                field,
                f"the values are finite but too large: their {summary} is infinite",
                step=step,
            )


def _trajectory_hash(block: FrameBlock, t: int) -> str:
    """sha256 of what identifies a relaxation: material, method, species and every array."""
    traj, frames = block.trajectories[t], block.frames_of(t)
    digest = hashlib.sha256()
    digest.update(f"{traj.material_key}\x00{traj.method}\x00".encode())
    digest.update(np.asarray(traj.species, dtype="<i2").tobytes())
    arrays = [block.cells, block.positions, block.forces, block.energies]
    if block.stresses is not None:
        arrays.append(block.stresses)
    for values in arrays:
        digest.update(np.ascontiguousarray(values[frames]).data)  # slices of C arrays: no copy
    return digest.hexdigest()


def build_block(trajectories: list[Trajectory], path: str) -> FrameBlock:
    """Concatenate, check, orient and hash trajectories of equal size.

    Raises:
        InvalidInput: a NaN or infinite value, a degenerate cell, or finite values whose
            summaries (max force, max stress, area and energy per atom, energy change)
            are infinite, naming the record, step and field.
    """
    offsets = np.concatenate([[0], np.cumsum([t.n_frames for t in trajectories])])
    has_stress = trajectories[0].stresses is not None

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(t, name) for t in trajectories], dtype=np.float64)

    block = FrameBlock(
        n_sites=trajectories[0].n_sites,
        trajectories=trajectories,
        offsets=offsets,
        cells=joined("cells"),
        positions=joined("positions"),
        forces=joined("forces"),
        stresses=joined("stresses") if has_stress else None,
        energies=joined("energies"),
        vacuum=np.empty((0, 3), dtype=bool),
        infos=[dict(t.info) for t in trajectories],
        hashes=[],
    )
    # Values that overflow give inf or NaN, which the checks refuse with the record, step
    # and field; numpy's warnings would only add lines to that one-line error.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _check_values(block, path)
        first = offsets[:-1]
        block.vacuum = structure.vacuum_mask(block.cells[first], block.positions[first])
        _orient_layers(block, path)
        block.summaries = _summarise(block)
        _check_summaries(block, block.summaries, path)
    block.hashes = [_trajectory_hash(block, t) for t in range(len(trajectories))]
    return block


def build_blocks(trajectories: list[Trajectory], path: str) -> list[FrameBlock]:
    """Group trajectories by (n_sites, has stress) and build one block per group."""
    groups: dict[tuple[int, bool], list[Trajectory]] = {}
    for traj in trajectories:
        groups.setdefault((traj.n_sites, traj.stresses is not None), []).append(traj)
    return [build_block(group, path) for group in groups.values()]


def relaxation_row(
    block: FrameBlock, t: int, material_id: int, source_id: int | None
) -> dict[str, Any]:
    """The ``relaxations`` row of trajectory ``t`` of a block."""
    traj = block.trajectories[t]
    summaries = _summaries(block)
    last = int(block.offsets[t + 1]) - 1
    final_energy = float(block.energies[last])
    changes = summaries.energy_change[block.offsets[t] : last]  # the last step has no next
    return {
        "material_id": material_id,
        "source_id": source_id,
        "method": traj.method,
        "model_version_id": None,
        "sequence": traj.sequence,
        "parameters": traj.parameters,
        "n_sites": traj.n_sites,
        "species": [int(z) for z in traj.species],
        "pbc": list(traj.pbc),
        "n_steps": traj.n_frames,
        "converged": traj.converged,
        "final_energy": final_energy,
        "final_energy_per_atom": final_energy / traj.n_sites,
        "final_area_per_atom": float(summaries.area_per_atom[last]),
        "max_energy_change": float(changes.max()) if changes.size else None,
        "wall_time_s": traj.wall_time_s,
        "info": block.infos[t],
        "content_hash": block.hashes[t],
    }


def encode_frames(block: FrameBlock, relaxation_ids: list[int | None]) -> Iterator[bytes]:
    """Summarise and encode the block's frames as binary COPY rows, chunk by chunk.

    Trajectories whose id is None (already stored) are skipped. Column order is
    ``queries.frames.FRAME_COLUMNS``. Computing summaries here, lazily, lets them overlap
    with the database writing the previous chunk.
    """
    counts = np.diff(block.offsets)
    ids = np.repeat(np.array([-1 if i is None else i for i in relaxation_ids]), counts)
    first = np.repeat(block.offsets[:-1], counts)
    steps = np.arange(len(ids)) - first
    is_last = np.zeros(len(ids), dtype=bool)
    is_last[block.offsets[1:] - 1] = True
    summaries = _summaries(block)
    keep = np.flatnonzero(ids >= 0)
    for start in range(0, keep.size, ENCODE_CHUNK_FRAMES):
        rows = keep[start : start + ENCODE_CHUNK_FRAMES]
        # A last step has no next step: its energy_change is NULL, a row of another layout.
        for last in (False, True):
            part = rows[is_last[rows] == last]
            if part.size:
                yield _encode_part(block, summaries, part, ids, steps, first, with_change=not last)


def _summaries(block: FrameBlock) -> Summaries:
    if block.summaries is None:
        raise ValueError("build_block() computes the summaries; this block did not come from it")
    return block.summaries


def _encode_part(
    block: FrameBlock,
    summaries: Summaries,
    rows: np.ndarray,
    ids: np.ndarray,
    steps: np.ndarray,
    first: np.ndarray,
    with_change: bool,
) -> bytes:
    cells, positions, forces = block.cells[rows], block.positions[rows], block.forces[rows]
    stresses = None if block.stresses is None else block.stresses[rows]
    max_abs_stress = summaries.max_abs_stress
    with np.errstate(over="ignore", invalid="ignore"):  # huge (finite) coordinates: no warning
        isolated = structure.has_isolated_atom(
            block.cells, block.positions, reference=first, frames=rows
        )
    return encode_rows(
        [
            Field("int4", ids[rows]),
            Field("int4", steps[rows]),
            Field("int2", np.full(rows.size, block.n_sites)),
            Field("matrix3", cells),
            Field("vec3", positions),
            Field("vec3", forces),
            Field("matrix3", stresses) if stresses is not None else Field("null"),
            Field("float8", block.energies[rows]),
            Field("float8", summaries.energy_per_atom[rows]),
            Field("float8", summaries.energy_change[rows]) if with_change else Field("null"),
            Field("float8", summaries.max_force[rows]),
            Field("float8", max_abs_stress[rows]) if max_abs_stress is not None else Field("null"),
            Field("float8", summaries.area_per_atom[rows]),
            Field("bool", isolated),
            Field(
                "bytes",
                frame_digests(
                    steps[rows], block.energies[rows], cells, positions, forces, stresses
                ),
            ),
        ]
    )


@dataclass
class PreparedEntry:
    """A convex-hull entry in canonical orientation, with its hash."""

    source: EnergyEntryRecord
    cell: np.ndarray
    positions: np.ndarray
    vacuum: np.ndarray
    """(3,) bool: vacuum along a, b, c (before orienting)."""
    content_hash: str


def prepare_entry(entry: EnergyEntryRecord) -> PreparedEntry:
    """Orient and hash one validated energy entry."""
    cell, positions = entry.cell[None], entry.positions[None]
    vacuum = structure.vacuum_mask(cell, positions)[0]
    order = structure.layer_order_from_vacuum(vacuum)
    if order is not None:
        cell, positions, _, _, _ = structure.orient_frames(cell, positions, None, None, order)
    digest = hashlib.sha256()
    digest.update(f"{entry.material_key}\x00".encode())
    digest.update(np.asarray(entry.species, dtype="<i2").tobytes())
    digest.update(np.asarray([entry.energy, entry.correction], dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(cell[0], dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(positions[0], dtype="<f8").tobytes())
    return PreparedEntry(entry, cell[0], positions[0], vacuum, digest.hexdigest())


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
        "cell": prepared.cell.tolist(),
        "positions": vec3_to_bytes(prepared.positions).hex(),
        "data": entry.data,
        "content_hash": prepared.content_hash,
    }


def material_rows(
    parsed: ParsedFile, blocks: list[FrameBlock], entries: list[PreparedEntry]
) -> list[dict[str, Any]]:
    """One ``materials`` row per key in the file; compositions must agree within the file.

    Dimensionality comes from the file's own data when it gives one, else from the
    vacuum detected in the key's first structure.
    """
    structures: dict[str, list[tuple[Any, int, str]]] = {}
    for block in blocks:
        for t, traj in enumerate(block.trajectories):
            structures.setdefault(traj.material_key, []).append(
                (traj.species, int(block.vacuum[t].sum()), traj.record)
            )
    for prepared in entries:
        entry = prepared.source
        structures.setdefault(entry.material_key, []).append(
            (entry.species, int(prepared.vacuum.sum()), entry.record)
        )
    rows = []
    for key, items in structures.items():
        composition = composition_fields(items[0][0])
        for species, _, record in items[1:]:
            other = composition_fields(species)["formula"]
            if other != composition["formula"]:
                raise InvalidInput(
                    f"{parsed.path}: {record}: material {key!r} has formula {other} here but "
                    f"{composition['formula']} elsewhere in the file. Give the two different "
                    "keys; nothing from this file was written."
                )
        material = parsed.material(key)
        dimensionality = material.dimensionality
        if dimensionality is None:
            dimensionality = dimensionality_from_vacuum(items[0][1])
        rows.append(
            {
                "key": key,
                **composition,
                "prototype": material.prototype,
                "spacegroup_number": material.spacegroup_number,
                "dimensionality": dimensionality,
                "info": material.info,
            }
        )
    return rows


def starting_structures(blocks: list[FrameBlock], start: StartFrom) -> list[tuple[str, Atoms]]:
    """(material key, structure) of every trajectory of checked, oriented blocks: its
    first frame (``first``) or its last (``final``), flagged 3D periodic as stored."""
    found = []
    for block in blocks:
        for t, trajectory in enumerate(block.trajectories):
            frames = block.frames_of(t)
            index = frames.start if start == "first" else frames.stop - 1
            atoms = Atoms(
                numbers=trajectory.species,
                positions=block.positions[index],
                cell=block.cells[index],
                pbc=True,
            )
            found.append((trajectory.material_key, atoms))
    return found
