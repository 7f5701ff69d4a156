"""Relax materials with a model version and write the ML-relaxed results back.

Each (model version, material, relaxation parameters) is one request, identified by a
key stored as the ML relaxation's ``content_hash`` (unique): a request already stored is
skipped (``--force`` replaces it), and two workers can never store the same result
(``ON CONFLICT DO NOTHING``). Work is done in chunks of materials, each relaxed and
committed in one transaction, so an interrupted run loses at most the chunks in flight
and the next run continues where it stopped. Chunks run here, or on Dask workers
(a ``LocalCluster`` of single-threaded processes, or an existing scheduler) that load
the model themselves (sha256 checked) and write to PostgreSQL directly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.records import Trajectory
from atlas2d.mlff.forcefield import ForceField
from atlas2d.mlff.relax import RelaxResult, RelaxSettings
from atlas2d.queries import frames as frames_queries
from atlas2d.queries import materials as materials_queries
from atlas2d.queries import relaxations as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.materials import MaterialFilter
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.services import models as registry
from atlas2d.vocabulary import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEFAULT_START,
    ENGINES,
    HELD_OUT_SPLIT,
    STARTS,
    Device,
    Engine,
    Split,
    StartFrom,
    or_list,
)


@dataclass(frozen=True)
class RelaxRequest:
    """What to relax, with which model, how.

    Attributes:
        model: ``NAME`` or ``NAME:VERSION`` (ready).
        training_set, split: relax the materials of a training-set split; or, with
            ``training_set`` None, the materials ``materials`` selects.
        start: ``first`` (step 0 of the material's first DFT relaxation, the unrelaxed
            structure) or ``final`` (the DFT-relaxed structure).
        engine: ``ase`` (one structure at a time) or ``batched`` (torch-sim).
        chunk_size: materials relaxed and committed in one transaction (None: the
            engine's :data:`~atlas2d.vocabulary.DEFAULT_CHUNK_SIZE`).
        max_atoms: atoms per model call of the batched engine (None: by device).
    """

    model: str
    training_set: str | None = None
    split: Split = HELD_OUT_SPLIT
    materials: MaterialFilter | None = None
    start: StartFrom = DEFAULT_START
    settings: RelaxSettings = field(default_factory=RelaxSettings)
    engine: Engine = DEFAULT_ENGINE
    chunk_size: int | None = None
    force: bool = False
    device: Device = DEFAULT_DEVICE
    max_atoms: int | None = None
    pool: str | None = None
    """Relax the candidates of this pool (``atlas2d generate``), from their generated
    structures."""
    pool_members: tuple[str, ...] | None = None
    """With ``pool``: only these material keys (None: every candidate)."""
    files: tuple[Path, ...] = ()
    """Relax the structures in these files (any ingest format) instead: each record
    becomes a material (without DFT data) and starts from its first (``start``
    ``first``) or last frame."""


@dataclass(frozen=True)
class WorkItem:
    """One material to relax: where it starts (a stored frame, or a structure read from
    a file) and the key of its result."""

    material_id: int
    material_key: str
    dimensionality: int | None
    frame_id: int | None
    key: str
    structure: Atoms | None = None
    start_file: str | None = None
    """sha256 of the file the structure came from (recorded in the parameters)."""


@dataclass
class ChunkOutcome:
    """What one chunk stored, and the materials it could not (named, with the reason)."""

    relaxed: int = 0
    converged: int = 0
    diverged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class RelaxReport:
    """What a ``relax`` run did. Rates are structures per second of wall time."""

    model: str
    requested: int
    already_done: int
    relaxed: int
    converged: int
    diverged: list[str]
    skipped: list[str]
    wall_time_s: float
    engine: Engine
    workers: int

    @property
    def structures_per_s(self) -> float:
        return self.relaxed / self.wall_time_s if self.wall_time_s > 0 else 0.0


def relaxation_parameters(request: RelaxRequest, start_file: str | None = None) -> dict[str, Any]:
    """The parameters that define a result (stored in ``relaxations.parameters``).

    The engine is not among them: both engines find the same minimum (tested), so a
    result of either satisfies the request.
    """
    parameters = {
        "optimizer": "FIRE",
        "cell_filter": "FrechetCellFilter",
        "cell": "in-plane for layers (z-index stress zeroed), full for bulk",
        "fmax_ev_per_a": request.settings.fmax,
        "max_steps": request.settings.max_steps,
        "start": request.start,
        "save_trajectory": request.settings.save_trajectory,
    }
    if start_file is not None:  # a structure from a file, not the stored DFT data
        parameters["start_file_sha256"] = start_file
    if request.pool is not None:  # a candidate starts from its generated structure
        del parameters["start"]
    return parameters


def request_key(
    model_version_id: int, material_id: int, parameters: dict[str, Any], start: str
) -> str:
    """sha256 identifying one result: model version, material, parameters and the
    starting structure (a frame id, or a file's sha256), so a result made from an older
    DFT frame is not taken for one from a newer."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    text = f"ml\0{model_version_id}\0{material_id}\0{canonical}\0{start}"
    return hashlib.sha256(text.encode()).hexdigest()


def _check(request: RelaxRequest) -> None:
    problems = []
    if request.engine not in ENGINES:
        problems.append(f"engine {request.engine!r} is not {or_list(ENGINES)}")
    if request.start not in STARTS:
        problems.append(f"start {request.start!r} is not {or_list(STARTS)}")
    if request.settings.fmax <= 0:
        problems.append(f"--fmax {request.settings.fmax} must be > 0 eV/Å")
    if request.settings.max_steps < 0:
        problems.append(f"--steps {request.settings.max_steps} must be ≥ 0")
    if request.chunk_size is not None and request.chunk_size < 1:
        problems.append(f"--chunk-size {request.chunk_size} must be at least 1")
    if problems:
        raise InvalidInput("Invalid relaxation request: " + "; ".join(problems) + ".")


def plan(
    sessions: sessionmaker[Session], request: RelaxRequest
) -> tuple[ModelVersionRef, list[WorkItem], int]:
    """The model row, the work still to do and how many requests are already stored.

    Raises:
        NotFound: no such model (ready) or training set; InvalidInput: nothing selected.
    """
    _check(request)
    if request.files:
        return _plan_files(sessions, request)
    if request.pool is not None:
        return _plan_pool(sessions, request, request.pool)
    parameters = relaxation_parameters(request)
    with sessions.begin() as session:
        model = registry.resolve(session, request.model)
        training_set_id = None
        if request.training_set is not None:
            row = trainset_queries.training_set_row(session, request.training_set)
            if row is None:
                raise NotFound(
                    f"No training set is named {request.training_set!r}; `atlas2d trainset list`."
                )
            training_set_id = row.id
        starts = queries.start_frames(
            session, request.start, training_set_id, request.split, request.materials
        )
        if not starts:
            raise InvalidInput(
                "No material with a DFT relaxation matches the selection; check the training "
                "set and split or the material filters (`atlas2d materials list`)."
            )
        items = [
            WorkItem(
                s.material_id,
                s.material_key,
                s.dimensionality,
                s.frame_id,
                request_key(model.id, s.material_id, parameters, f"frame:{s.frame_id}"),
            )
            for s in starts
        ]
        todo, done = _not_done(session, items, request.force)
    return model, todo, done


def _not_done(session: Session, items: list[WorkItem], force: bool) -> tuple[list[WorkItem], int]:
    if force:  # replaced chunk by chunk, in the transaction that stores the new result
        return items, 0
    done = queries.stored_keys(session, [item.key for item in items])
    return [item for item in items if item.key not in done], len(done)


def _plan_pool(
    sessions: sessionmaker[Session], request: RelaxRequest, pool: str
) -> tuple[ModelVersionRef, list[WorkItem], int]:
    """The candidates of a pool, each from its generated structure."""
    from atlas2d.analysis.structure import structure_sha256
    from atlas2d.services.generate import candidate_atoms, pool_structures

    candidates = pool_structures(sessions, pool, request.pool_members)
    if not candidates:
        raise InvalidInput(f"Pool {pool!r} holds no candidate; `atlas2d generate show {pool}`.")
    # The structure's own digest names the start: a pool recreated under the same name
    # from changed data does not reuse an old result.
    parameters = relaxation_parameters(request)
    starts = [candidate_atoms(c) for c in candidates]
    with sessions.begin() as session:
        model = registry.resolve(session, request.model)
        items = [
            WorkItem(
                c.material_id,
                c.material_key,
                c.dimensionality,
                None,
                request_key(
                    model.id,
                    c.material_id,
                    parameters,
                    "generated:"
                    + structure_sha256(atoms.numbers, atoms.cell.array, atoms.positions),
                ),
                atoms,
            )
            for c, atoms in zip(candidates, starts, strict=True)
        ]
        todo, done = _not_done(session, items, request.force)
    return model, todo, done


def _plan_files(
    sessions: sessionmaker[Session], request: RelaxRequest
) -> tuple[ModelVersionRef, list[WorkItem], int]:
    """Materials and starting structures from files (any ingest format)."""
    from atlas2d.io.candidates import read_candidates
    from atlas2d.io.files import expand_paths
    from atlas2d.queries.row_encoding import build_blocks, starting_structures
    from atlas2d.queries.row_encoding import material_rows as rows_of

    starts: list[tuple[str, Atoms, str]] = []
    rows_by_key: dict[str, dict[str, Any]] = {}
    for path in expand_paths(list(request.files)):
        parsed = read_candidates(path)
        if not parsed.trajectories:
            raise InvalidInput(
                f"{path}: holds no structure to relax (a hull file? use its trajectories)."
            )
        blocks = build_blocks(parsed.trajectories, str(path))  # checked and oriented
        for row in rows_of(parsed, blocks, []):
            rows_by_key[row["key"]] = row
        starts += [
            (key, atoms, parsed.sha256) for key, atoms in starting_structures(blocks, request.start)
        ]
    keys = [key for key, _, _ in starts]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidInput(
            f"Several structures in {', '.join(map(str, request.files))} have the material key "
            f"{', '.join(repeated)}; give each its own `material_key` (extxyz info) so each "
            "result belongs to one material."
        )
    with sessions.begin() as session:
        model = registry.resolve(session, request.model)
        stored = materials_queries.upsert_materials(session, list(rows_by_key.values()))
        for key, row in rows_by_key.items():
            if stored[key].formula != row["formula"]:
                raise InvalidInput(
                    f"Material key {key!r} from the file is {row['formula']} but the database "
                    f"holds {stored[key].formula} under it; give the structure another key."
                )
        items = [
            WorkItem(
                stored[key].id,
                key,
                rows_by_key[key]["dimensionality"],
                None,
                request_key(
                    model.id,
                    stored[key].id,
                    relaxation_parameters(request, sha256),
                    f"file:{sha256}",
                ),
                atoms,
                sha256,
            )
            for key, atoms, sha256 in starts
        ]
        todo, done = _not_done(session, items, request.force)
    return model, todo, done


def _starting_structures(
    session: Session, items: Sequence[WorkItem]
) -> list[tuple[Atoms, tuple[bool, bool, bool]]]:
    """Each item's starting structure and the pbc flags its result is stored with."""
    from atlas2d.queries.frames import StoredFrame, frame_atoms, frames_by_id

    ids = [item.frame_id for item in items if item.frame_id is not None]
    rows: dict[int | None, StoredFrame] = {row.frame_id: row for row in frames_by_id(session, ids)}
    return [
        (item.structure, (True, True, item.dimensionality != 2))
        if item.structure is not None
        else (frame_atoms(rows[item.frame_id]), rows[item.frame_id].pbc)
        for item in items
    ]


def _run_engine(
    force_field: ForceField,
    engine: Engine,
    structures: list[Atoms],
    in_plane: list[bool],
    settings: RelaxSettings,
    max_atoms: int | None,
) -> list[RelaxResult]:
    if engine == "batched":
        from atlas2d.mlff.batched import relax_batched

        return relax_batched(force_field, structures, in_plane, settings, max_atoms)
    from atlas2d.mlff.relax import relax_ase

    return list(relax_ase(force_field, structures, in_plane, settings))


def relax_chunk(
    sessions: sessionmaker[Session],
    model: ModelVersionRef,
    force_field: ForceField,
    items: Sequence[WorkItem],
    parameters: dict[str, Any],
    engine: Engine,
    settings: RelaxSettings,
    max_atoms: int | None = None,
    replace: bool = False,
) -> ChunkOutcome:
    """Relax a chunk of materials and store the results in one transaction.

    Structures with elements the model does not know are skipped and named in the
    outcome; with ``replace`` the chunk's stored results are deleted in the same
    transaction that stores the new ones (``--force``: an interruption loses nothing).
    """
    from atlas2d.queries.row_encoding import build_blocks, encode_frames, relaxation_row

    with sessions.begin() as session:
        starts = _starting_structures(session, items)
    outcome = ChunkOutcome()
    known = set(force_field.element_symbols)
    runnable = []
    for item, start in zip(items, starts, strict=True):
        unknown = sorted(set(start[0].get_chemical_symbols()) - known)
        if unknown:
            outcome.skipped.append(
                f"{item.material_key} ({', '.join(unknown)} unknown to the model)"
            )
        else:
            runnable.append((item, start))
    items = [item for item, _ in runnable]
    starts = [start for _, start in runnable]
    in_plane = [item.dimensionality == 2 for item in items]
    structures = [atoms for atoms, _ in starts]
    results = (
        _run_engine(force_field, engine, structures, in_plane, settings, max_atoms) if items else []
    )
    trajectories, kept = [], []
    for item, (atoms, pbc), result in zip(items, starts, results, strict=True):
        arrays = (result.energies, result.cells, result.positions, result.forces, result.stresses)
        if not all(np.isfinite(a).all() for a in arrays):
            outcome.diverged.append(item.material_key)  # not stored: a rerun tries again
            continue
        kept.append((item, result))
        trajectories.append(
            Trajectory(
                material_key=item.material_key,
                species=atoms.get_atomic_numbers(),
                cells=result.cells,
                positions=result.positions,
                energies=result.energies,
                forces=result.forces,
                stresses=result.stresses,
                parameters=parameters
                if item.start_file is None
                else parameters | {"start_file_sha256": item.start_file},
                record=f"ML relaxation of {item.material_key}",
                converged=result.converged,
                method="ml",
                pbc=pbc,
                wall_time_s=result.wall_time_s,
                info={
                    "model": model.label,
                    "engine": result.engine,
                    "start_frame_id": item.frame_id,
                    "stored_frames": "trajectory" if settings.save_trajectory else "final",
                    "optimizer_steps": result.n_steps,
                    "key": item.key,
                },
            )
        )
    if trajectories:
        blocks = build_blocks(trajectories, "ML relaxation")
        by_key = {item.key: (item, result) for item, result in kept}
        with sessions.begin() as session:
            if replace:
                queries.delete_by_keys(session, [item.key for item, _ in kept])
            rows = []
            for block in blocks:
                for t, trajectory in enumerate(block.trajectories):
                    item, result = by_key[trajectory.info["key"]]
                    row = relaxation_row(block, t, item.material_id, None)
                    row |= {"model_version_id": model.id, "content_hash": item.key}
                    rows.append(row)
            inserted = queries.insert_relaxations(session, rows)
            ids = [[inserted.get(t.info["key"]) for t in block.trajectories] for block in blocks]
            frames_queries.copy_frames(
                session,
                (
                    chunk
                    for block, block_ids in zip(blocks, ids, strict=True)
                    for chunk in encode_frames(block, block_ids)
                ),
            )
        outcome.relaxed = len(inserted)
        outcome.converged = sum(result.converged for item, result in kept if item.key in inserted)
    return outcome


def _chunks(items: Sequence[WorkItem], size: int) -> list[list[WorkItem]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def relax(
    sessions: sessionmaker[Session],
    request: RelaxRequest,
    artifacts_dir: Path,
    workers: int = 0,
    scheduler: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> RelaxReport:
    """Relax the selected materials and store the results (see the module docstring).

    Args:
        workers: Dask worker processes on this machine (0: relax in this process).
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        progress: ``progress(done, total, converged)`` after each chunk.
    """
    began = time.perf_counter()
    model, todo, already = plan(sessions, request)
    parameters = relaxation_parameters(request)
    total = ChunkOutcome()
    chunks = _chunks(todo, request.chunk_size or DEFAULT_CHUNK_SIZE[request.engine])

    def add(outcome: ChunkOutcome) -> None:
        total.relaxed += outcome.relaxed
        total.converged += outcome.converged
        total.diverged += outcome.diverged
        total.skipped += outcome.skipped
        if progress is not None:
            done = total.relaxed + len(total.diverged) + len(total.skipped)
            progress(done, len(todo), total.converged)

    if chunks and (workers > 0 or scheduler):
        from atlas2d.services.relax_dask import run_on_dask

        run_on_dask(
            relax_chunk,
            sessions,
            model,
            chunks,
            parameters,
            request,
            artifacts_dir,
            workers,
            scheduler,
            add,
        )
    elif chunks:
        force_field = registry.load_version(sessions, model, artifacts_dir, request.device)
        for chunk in chunks:
            add(
                relax_chunk(
                    sessions,
                    model,
                    force_field,
                    chunk,
                    parameters,
                    request.engine,
                    request.settings,
                    request.max_atoms,
                    request.force,
                )
            )
    return RelaxReport(
        model=model.label,
        requested=len(todo) + already,
        already_done=already,
        relaxed=total.relaxed,
        converged=total.converged,
        diverged=total.diverged,
        skipped=total.skipped,
        wall_time_s=time.perf_counter() - began,
        engine=request.engine,
        workers=workers if not scheduler else -1,
    )
