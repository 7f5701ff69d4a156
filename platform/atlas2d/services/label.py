"""Label structures with the reference labeller (CHGNet standing in for DFT) and store
the full trajectories as DFT data through the ingest path.

Structures come from files (any format ``atlas2d relax --from-file`` reads; each record
becomes a material whose dimensionality ingest takes from its vacuum) or from stored
materials (step 0 of each selected material's first DFT relaxation). Each is relaxed
by :func:`atlas2d.mlff.labeller.label_relaxation` (FIRE, every step recorded; in-plane
cell for layers, full cell for bulk) and the trajectories of a chunk are written by
:func:`atlas2d.services.ingest.ingest_parsed` as one ``sources`` row of format
``labeller``, in one transaction.

Re-running stores nothing new: each request (material, labeller parameters, exact
starting structure) has a key kept in ``relaxations.info.label_key``, and requests
already stored are not labelled again; a trajectory that reaches the database anyway is
recognised by its content hash (``relaxations.content_hash``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ase import Atoms
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput
from atlas2d.io.records import ParsedFile, Trajectory
from atlas2d.mlff.labeller import (
    LabelSettings,
    cell_relaxation,
    label_key,
    label_relaxation,
    labeller_force_field,
    labeller_parameters,
)
from atlas2d.queries import relaxations as queries
from atlas2d.queries.materials import MaterialFilter
from atlas2d.vocabulary import DEFAULT_LABEL_CHUNK_SIZE

PARSER = "atlas2d.mlff.labeller"


@dataclass(frozen=True)
class StartStructure:
    """A structure to label as it is given (an active-learning campaign's candidates,
    from their ML-relaxed geometry).

    Attributes:
        material_key: the (stored) material it labels.
        start: how it was obtained, recorded with the label (``ml:<relaxation id>``).
        origin, record: how the chunk's source and error messages name it.
    """

    material_key: str
    atoms: Atoms
    start: str
    origin: str
    record: str


@dataclass(frozen=True)
class LabelRequest:
    """What to label, how.

    Attributes:
        files: label the structures in these files (any ingest format; the first frame
            of each material's first trajectory).
        materials: or label stored materials (step 0 of their first DFT relaxation)
            that this filter selects.
        settings: fmax (eV/Å), max_steps, CHGNet model and device.
        chunk_size: structures labelled and committed in one transaction (one
            ``sources`` row); an interruption loses at most the chunk in progress.
    """

    files: tuple[Path, ...] = ()
    materials: MaterialFilter | None = None
    pool: str | None = None
    """Or label the candidates of this pool (``atlas2d generate``), from their generated
    structures."""
    pool_members: tuple[str, ...] | None = None
    """With ``pool``: only these material keys (None: every candidate)."""
    structures: tuple[StartStructure, ...] = ()
    """Or label these structures of stored materials."""
    settings: LabelSettings = field(default_factory=LabelSettings)
    chunk_size: int = DEFAULT_LABEL_CHUNK_SIZE


@dataclass(frozen=True)
class LabelItem:
    """One structure to label and where it came from."""

    material_key: str
    atoms: Atoms
    origin: str
    """The file it was read from (or the selection): the ``sources.path`` of its chunk."""
    record: str
    start: str
    """The starting structure: ``file:<sha256>`` or ``frame:<id>``."""
    key: str
    """The request's key (``relaxations.info.label_key``)."""


@dataclass
class LabelReport:
    """What a ``label`` run did."""

    requested: int = 0
    already_labelled: int = 0
    labelled: int = 0
    converged: int = 0
    stored: int = 0
    """Relaxations written (a labelled trajectory already stored is not written again)."""
    frames: int = 0
    materials_new: int = 0
    optimizer_steps: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    keys: dict[str, str] = field(default_factory=dict)
    """{material key: request key} of every structure requested: its labelled
    relaxation is the one whose ``info.label_key`` is that key."""


def _check(request: LabelRequest) -> None:
    problems = []
    sources = bool(request.files) + (request.materials is not None) + (request.pool is not None)
    if sources + bool(request.structures) != 1:
        problems.append("give one of files (--from-file), --materials or --pool")
    if request.settings.fmax <= 0:
        problems.append(f"--fmax {request.settings.fmax} must be > 0 eV/Å")
    if request.settings.max_steps < 0:
        problems.append(f"--steps {request.settings.max_steps} must be ≥ 0")
    if request.chunk_size < 1:
        problems.append(f"--chunk-size {request.chunk_size} must be at least 1")
    if problems:
        raise InvalidInput("Invalid labelling request: " + "; ".join(problems) + ".")


def _items_from_files(files: tuple[Path, ...]) -> list[tuple[str, Atoms, str, str, str]]:
    """(material key, structure, origin, record, start) of every structure in the files:
    the first frame of each material's first trajectory, oriented as ingest stores it.

    Raises:
        InvalidInput: a file cannot be read, holds no structure, or gives two structures
            one key.
    """
    from atlas2d.io.candidates import read_candidates
    from atlas2d.io.files import expand_paths
    from atlas2d.queries.row_encoding import build_blocks

    starts = []
    for path in expand_paths(list(files)):
        parsed = read_candidates(path)
        if not parsed.trajectories:
            raise InvalidInput(
                f"{path}: holds no structure to label (a convex-hull file? give its "
                "trajectories, or ingest it with `atlas2d ingest`)."
            )
        first: dict[str, tuple[int, Trajectory, Atoms]] = {}
        for block in build_blocks(parsed.trajectories, str(path)):  # checked and oriented
            for t, trajectory in enumerate(block.trajectories):
                index = block.frames_of(t).start
                atoms = Atoms(
                    numbers=trajectory.species,
                    positions=block.positions[index],
                    cell=block.cells[index],
                    pbc=True,
                )
                key = trajectory.material_key
                if key in first and first[key][0] == trajectory.sequence:
                    raise InvalidInput(
                        f"{path}: {first[key][1].record} and {trajectory.record} have the "
                        f"same material key {key!r}; give each structure its own "
                        "`material_key` (extxyz info) so each trajectory belongs to one "
                        "material. Nothing was labelled."
                    )
                if key not in first or trajectory.sequence < first[key][0]:
                    first[key] = (trajectory.sequence, trajectory, atoms)
        for key, (_, trajectory, atoms) in first.items():
            starts.append((key, atoms, str(path), trajectory.record, f"file:{parsed.sha256}"))
    return starts


def _items_from_materials(
    sessions: sessionmaker[Session], selection: MaterialFilter
) -> list[tuple[str, Atoms, str, str, str]]:
    """(material key, structure, origin, record, start) of the selected stored materials."""
    from atlas2d.queries.frames import frame_atoms, frames_by_id
    from atlas2d.queries.relaxations import start_frames

    with sessions.begin() as session:
        starts = start_frames(session, "first", None, None, selection)
        if not starts:
            raise InvalidInput(
                "No material with a DFT relaxation matches the selection; check the filters "
                "(`atlas2d materials list`)."
            )
        rows = {row.frame_id: row for row in frames_by_id(session, [s.frame_id for s in starts])}
    origin = "atlas2d label --materials " + _describe(selection)
    return [
        (
            s.material_key,
            frame_atoms(rows[s.frame_id]),
            origin,
            f"material {s.material_key}",
            f"frame:{s.frame_id}",
        )
        for s in starts
    ]


def _items_from_pool(
    sessions: sessionmaker[Session], pool: str, members: tuple[str, ...] | None
) -> list[tuple[str, Atoms, str, str, str]]:
    """(material key, structure, origin, record, start) of a pool's candidates."""
    from atlas2d.services.generate import candidate_atoms, pool_structures

    candidates = pool_structures(sessions, pool, members)
    if not candidates:
        raise InvalidInput(f"Pool {pool!r} holds no candidate; `atlas2d generate show {pool}`.")
    return [
        (
            c.material_key,
            candidate_atoms(c),
            f"atlas2d label --pool {pool}",
            f"candidate {c.material_key}",
            f"generated:{c.material_key}",
        )
        for c in candidates
    ]


def _describe(selection: MaterialFilter) -> str:
    parts = [f"--chemsys {c}" for c in selection.chemsys]
    parts += [f"--formula {f}" for f in selection.formulas]
    if selection.dimensionality is not None:
        parts.append(f"--dimensionality {selection.dimensionality}")
    parts += [f"--source {s}" for s in selection.sources]
    return " ".join(parts) or "(all)"


def plan(
    sessions: sessionmaker[Session], request: LabelRequest
) -> tuple[list[LabelItem], list[LabelItem]]:
    """The structures still to label, and every structure requested (those already
    labelled too).

    Every structure is checked before anything is labelled: readable, a layer with its
    vacuum along c or bulk, elements CHGNet knows.

    Raises:
        InvalidInput: a bad file or structure (named), or nothing selected.
        MissingExtra: chgnet is not installed.
    """
    _check(request)
    if request.files:
        found = _items_from_files(request.files)
    elif request.pool is not None:
        found = _items_from_pool(sessions, request.pool, request.pool_members)
    elif request.structures:
        found = [(s.material_key, s.atoms, s.origin, s.record, s.start) for s in request.structures]
    else:
        found = _items_from_materials(sessions, request.materials or MaterialFilter())
    known = set(
        labeller_force_field(request.settings.model, request.settings.device).element_symbols
    )
    items = []
    for material_key, atoms, origin, record, start in found:
        unknown = sorted(set(atoms.get_chemical_symbols()) - known)
        if unknown:
            raise InvalidInput(
                f"{origin}: {record}: CHGNet knows elements H to Pu, not {', '.join(unknown)}. "
                "Nothing was labelled."
            )
        try:
            cell_relax = cell_relaxation(atoms)
        except InvalidInput as err:
            raise InvalidInput(f"{origin}: {record}: {err} Nothing was labelled.") from err
        parameters = labeller_parameters(request.settings, cell_relax)
        key = label_key(material_key, atoms, parameters)
        items.append(LabelItem(material_key, atoms, origin, record, start, key))
    with sessions.begin() as session:
        done = queries.labelled_keys(session, [item.key for item in items])
    todo = [item for item in items if item.key not in done]
    return todo, items


def _chunks(items: list[LabelItem], size: int) -> list[list[LabelItem]]:
    """Consecutive items of one origin, at most ``size`` per chunk."""
    chunks: list[list[LabelItem]] = []
    for item in items:
        if chunks and chunks[-1][0].origin == item.origin and len(chunks[-1]) < size:
            chunks[-1].append(item)
        else:
            chunks.append([item])
    return chunks


def label(
    sessions: sessionmaker[Session],
    request: LabelRequest,
    progress: Callable[[int, int, int], None] | None = None,
) -> LabelReport:
    """Label the requested structures and store their trajectories (see the module docstring).

    Args:
        progress: ``progress(done, total, converged)`` after each structure.

    Raises:
        InvalidInput: a bad file or structure; nothing of its chunk is written (chunks
            before it stay stored, and a rerun skips them).
        MissingExtra: chgnet is not installed (``pip install -e ".[demo]"``).
    """
    from atlas2d.services.ingest import ingest_parsed

    began = time.perf_counter()
    todo, requested = plan(sessions, request)
    report = LabelReport(
        requested=len(requested),
        already_labelled=len(requested) - len(todo),
        keys={item.material_key: item.key for item in requested},
    )
    for chunk in _chunks(todo, request.chunk_size):
        trajectories = []
        for item in chunk:
            trajectory = label_relaxation(
                item.atoms, item.material_key, request.settings, item.record
            )
            trajectory.info |= {"label_key": item.key, "start": item.start}
            trajectories.append(trajectory)
            report.labelled += 1
            report.converged += bool(trajectory.converged)
            report.optimizer_steps.append(int(trajectory.info["optimizer_steps"]))
            if progress is not None:
                progress(report.labelled, len(todo), report.converged)
        parsed = ParsedFile(
            path=chunk[0].origin,
            format="labeller",
            sha256="",  # ingest derives it from the trajectories' content hashes
            parser=PARSER,
            options=_options(request.settings, chunk),
            trajectories=trajectories,
        )
        result = ingest_parsed(sessions, parsed)
        report.stored += result.relaxations
        report.frames += result.frames
        report.materials_new += result.materials_new
        if result.relaxations:
            report.sources.append(chunk[0].origin)
    report.sources = list(dict.fromkeys(report.sources))
    report.wall_time_s = time.perf_counter() - began
    return report


def _options(settings: LabelSettings, chunk: list[LabelItem]) -> dict[str, Any]:
    return {
        "labeller": "CHGNet",
        "model": settings.model,
        "fmax": settings.fmax,
        "max_steps": settings.max_steps,
        "device": settings.device,
        "starts": sorted({item.start for item in chunk}),
    }
