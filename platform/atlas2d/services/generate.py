"""Generate candidate 2D layers into a named pool, and list, show and export pools.

A pool is made once: its name and every parameter (defaults included) are stored, and
the same command run again finds the pool and adds nothing; the same name with other
parameters is refused. Candidates are proposed from prototype layers (data-mined
substitution, or decoration of symmetry orbits), rejected when charge-imbalanced or
when two atoms are too close, deduplicated with StructureMatcher within the pool and
against the stored materials of the same reduced formula, and the new ones stored in one
transaction as materials (dimensionality 2, ``info.generated``) with their unrelaxed
structure in ``pool_candidates`` (``relax --pool`` and ``label --pool`` start there).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ase import Atoms
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import generation
from atlas2d.analysis.generation import Proposal, Prototype
from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.queries import candidate_pools as queries
from atlas2d.queries import materials as materials_queries
from atlas2d.queries import relaxations as relaxation_queries
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.queries.materials import MaterialFilter
from atlas2d.services.models import resolve
from atlas2d.vocabulary import (
    CANDIDATE_OUTCOMES,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MIN_DISTANCE_FACTOR,
    DEFAULT_PROTOTYPE_MAX_EHULL_EV,
    DEFAULT_SUBSTITUTION_THRESHOLD,
    DFT,
    GENERATED_KEY_PREFIX,
    GENERATORS,
    Generator,
    or_list,
)

PROPOSING_GENERATORS: tuple[Generator, ...] = tuple(
    g for g in GENERATORS if g not in ("file", "enumerate")
)
"""The generators `generate` runs (a ``file`` pool is imported, an ``enumerate`` pool
made by ``alloys enumerate``)."""
POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage ``prototypes`` then ``dedup``."""


@dataclass(frozen=True)
class GenerateRequest:
    """What to generate into which pool.

    Attributes:
        generator: ``substitute`` or ``decorate``.
        chemsys, formulas, materials: narrow the prototypes (substitute: layers within
            ``max_ehull_ev`` of the hull of ``energy``); decorate: ``materials`` are the
            prototypes.
        energy: substitute: whose hull chooses the prototypes, ``dft`` or a model
            version (``NAME`` or ``NAME:VERSION``, recorded as ``NAME:VERSION``).
        threshold: smallest substitution probability kept.
        max_candidates: candidates stored at most (most probable first).
        partial: substitute also one layer orbit of an element at a time (Janus layers).
        allow_unbalanced: keep charge-imbalanced candidates.
        min_distance_factor: reject when two atoms are closer than this × the sum of
            their covalent radii.
        elements: decorate: the elements put on the orbits; substitute: the only
            elements a candidate may contain (empty: any).
        dry_run: generate and count, store nothing (not a parameter of the pool).
    """

    pool: str
    generator: Generator = "substitute"
    chemsys: tuple[str, ...] = ()
    formulas: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    max_ehull_ev: float = DEFAULT_PROTOTYPE_MAX_EHULL_EV
    energy: str = DFT
    threshold: float = DEFAULT_SUBSTITUTION_THRESHOLD
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    partial: bool = False
    allow_unbalanced: bool = False
    min_distance_factor: float = DEFAULT_MIN_DISTANCE_FACTOR
    elements: tuple[str, ...] = ()
    dry_run: bool = False

    def parameters(self) -> dict[str, Any]:
        """Every parameter that defines the pool, defaults included."""
        values = asdict(self)
        del values["pool"], values["dry_run"]
        for name in ("chemsys", "formulas", "materials", "elements"):
            values[name] = sorted(set(values[name]))  # the same command, however written
        if self.generator == "decorate":
            del values["max_ehull_ev"], values["threshold"], values["partial"]
            del values["energy"]
        return values


@dataclass
class GenerateReport:
    """What a generate run did (or found already done)."""

    pool: str
    generator: str
    counts: dict[str, int]
    prototypes: int = 0
    skipped_prototypes: list[str] = field(default_factory=list)
    """Prototypes nothing could be made from, with the reason."""
    stored_keys: list[str] = field(default_factory=list)
    already_done: bool = False
    dry_run: bool = False
    wall_time_s: float = 0.0


def _check(request: GenerateRequest) -> None:
    problems = []
    if not POOL_NAME.match(request.pool):
        problems.append(
            f"pool name {request.pool!r} must be letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    if request.generator not in PROPOSING_GENERATORS:
        problems.append(f"generator {request.generator!r} is not {or_list(PROPOSING_GENERATORS)}")
    if not 0 < request.threshold <= 1:
        problems.append(f"--threshold {request.threshold} must be in (0, 1]")
    if request.max_candidates < 1:
        problems.append(f"--max-candidates {request.max_candidates} must be at least 1")
    if request.min_distance_factor <= 0:
        problems.append(f"--min-distance-factor {request.min_distance_factor} must be > 0")
    if request.max_ehull_ev < 0:
        problems.append(f"--max-ehull {request.max_ehull_ev} must be ≥ 0 eV/atom")
    not_elements = [e for e in request.elements if not generation.is_element(e)]
    if not_elements:
        problems.append(f"{', '.join(map(repr, not_elements))} is not a chemical element")
    if request.generator == "decorate":
        if not request.materials:
            problems.append("decorate needs at least one --prototype KEY")
        if len(set(request.elements)) < 1:
            problems.append("decorate needs --elements, e.g. Mo,W,S,Se")
    if problems:
        raise InvalidInput("Invalid generation request: " + "; ".join(problems) + ".")


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    names = sorted(set(stored) | set(wanted))
    return ", ".join(
        f"{name} {stored.get(name)!r} ≠ {wanted.get(name)!r}"
        for name in names
        if stored.get(name) != wanted.get(name)
    )


def _prototypes(session: Session, request: GenerateRequest) -> list[Prototype]:
    missing = [
        key for key in request.materials if materials_queries.material_row(session, key) is None
    ]
    if missing:
        raise NotFound(
            f"No material has the key {', '.join(map(repr, missing))}; "
            "`atlas2d materials list` shows them. Nothing was written."
        )
    if request.generator == "decorate":
        starts = relaxation_queries.final_frames_by_key(session, request.materials)
        without = sorted(set(request.materials) - {s.material_key for s in starts})
        if without:
            raise InvalidInput(
                f"Prototype {', '.join(map(repr, without))} has no relaxed structure; "
                "label or relax it first. Nothing was written."
            )
    else:
        selection = MaterialFilter(chemsys=request.chemsys, formulas=request.formulas)
        starts = relaxation_queries.prototype_frames(
            session, request.max_ehull_ev, selection, request.materials, request.energy
        )
        if not starts:
            update = "" if request.energy == DFT else f" --energy {request.energy}"
            raise InvalidInput(
                f"No layer within {request.max_ehull_ev} eV/atom of the {request.energy} hull "
                f"matches the selection; run `atlas2d hull update{update}` or widen "
                "--max-ehull/--chemsys/--formula."
            )
    frames = {f.frame_id: f for f in frames_by_id(session, [s.frame_id for s in starts])}
    return [Prototype(s.material_key, frame_atoms(frames[s.frame_id])) for s in starts]


def stored_layers(session: Session, formulas: list[str]) -> dict[str, list[tuple[str, Atoms]]]:
    """formula → [(material key, structure)]: final frames of stored materials and the
    structures of earlier pools' candidates without a relaxation."""
    found: dict[str, dict[str, Atoms]] = {}
    finals = relaxation_queries.final_frames_by_formula(session, formulas)
    frames = {f.frame_id: f for f in frames_by_id(session, [s.frame_id for s in finals])}
    for final in finals:
        found.setdefault(final.formula, {})[final.material_key] = frame_atoms(
            frames[final.frame_id]
        )
    for candidate in queries.candidates_by_formula(session, formulas):
        found.setdefault(candidate.formula, {}).setdefault(
            candidate.material_key,
            Atoms(
                numbers=candidate.species,
                positions=candidate.positions,
                cell=candidate.cell,
                pbc=True,
            ),
        )
    return {formula: sorted(layers.items()) for formula, layers in found.items()}


def generate(
    sessions: sessionmaker[Session],
    request: GenerateRequest,
    progress: Progress | None = None,
) -> GenerateReport:
    """Generate candidates into the pool (see the module docstring).

    Raises:
        InvalidInput: a bad parameter or symbol, or no prototype selected.
        NotFound: an unknown prototype key.
        AlreadyExists: the pool name is taken with other parameters.
    """
    began = time.perf_counter()
    _check(request)
    with sessions.begin() as session:
        if request.generator == "substitute" and request.energy != DFT:
            # A model named without its version is recorded as the version it meant.
            request = replace(request, energy=resolve(session, request.energy).label)
        parameters = request.parameters()
        existing = queries.pool_row(session, request.pool)
        if existing is not None:
            if existing.generator != request.generator or existing.parameters != parameters:
                raise AlreadyExists(
                    f"Pool {request.pool!r} exists with other parameters "
                    f"({_differences(existing.parameters, parameters)}); choose another "
                    f"--pool name, or see it with `atlas2d generate show {request.pool}`."
                )
            return GenerateReport(
                request.pool,
                existing.generator,
                dict(existing.counts),
                already_done=True,
                dry_run=request.dry_run,
                wall_time_s=time.perf_counter() - began,
            )
        prototypes = _prototypes(session, request)
    if request.generator == "decorate":
        for prototype in prototypes:
            needed = len(set(prototype.atoms.get_chemical_symbols()))
            if len(set(request.elements)) < needed:
                raise InvalidInput(
                    f"Prototype {prototype.key} has {needed} elements, but --elements gives "
                    f"{len(set(request.elements))}: give at least {needed} to decorate it. "
                    "Nothing was written."
                )
    report = GenerateReport(request.pool, request.generator, dict.fromkeys(CANDIDATE_OUTCOMES, 0))
    report.prototypes = len(prototypes)
    report.dry_run = request.dry_run
    proposals: list[Proposal] = []
    for done, prototype in enumerate(prototypes, start=1):
        if request.generator == "decorate":
            proposals += generation.decorate(prototype, request.elements)
        else:
            made, why = generation.substitute(prototype, request.threshold, request.partial)
            if why is not None:
                report.skipped_prototypes.append(f"{prototype.key} ({why})")
            if request.elements:  # only these elements may come in
                allowed = set(request.elements)
                made = [p for p in made if set(p.atoms.get_chemical_symbols()) <= allowed]
            proposals += made
        if progress is not None:
            progress("prototypes", done, len(prototypes))
    proposals.sort(key=lambda p: (-p.score, p.parent_key, p.digest()))
    counts = report.counts
    counts["generated"] = len(proposals)
    kept = []
    for proposal in proposals:
        if proposal.charge != 0 and not request.allow_unbalanced:
            counts["charge_imbalanced"] += 1
        elif generation.too_close(proposal.atoms, request.min_distance_factor):
            counts["too_close"] += 1
        else:
            kept.append(proposal)
    formulas = sorted({p.formula for p in kept})
    with sessions.begin() as session:
        stored = stored_layers(session, formulas)
    keys = [f"{GENERATED_KEY_PREFIX}-{request.pool}-{p.digest()}" for p in kept]
    result = generation.deduplicate(
        [p.atoms for p in kept],
        stored,
        None if progress is None else lambda done: progress("dedup", done, len(kept)),
        limit=request.max_candidates,
    )
    duplicates = []
    for index, matched in sorted(result.in_pool.items()):
        duplicates.append(_duplicate(kept[index], keys[matched], "duplicate_in_pool"))
    for index, key in sorted(result.of_stored.items()):
        duplicates.append(_duplicate(kept[index], key, "duplicate_of_stored"))
    counts["duplicate_in_pool"] = len(result.in_pool)
    counts["duplicate_of_stored"] = len(result.of_stored)
    judged = len(result.unique) + len(result.in_pool) + len(result.of_stored)
    counts["over_limit"] = len(kept) - judged
    counts["stored"] = len(result.unique)
    report.stored_keys = [keys[i] for i in result.unique]
    if not request.dry_run:
        _store(
            sessions,
            request,
            parameters,
            counts,
            duplicates,
            [(keys[i], kept[i]) for i in result.unique],
        )
    report.wall_time_s = time.perf_counter() - began
    return report


def _duplicate(proposal: Proposal, matched_key: str, outcome: str) -> dict[str, Any]:
    return {
        "formula": proposal.formula,
        "parent_key": proposal.parent_key,
        "substitution": proposal.substitution,
        "outcome": outcome,
        "matched_key": matched_key,
    }


def _store(
    sessions: sessionmaker[Session],
    request: GenerateRequest,
    parameters: dict[str, Any],
    counts: dict[str, int],
    duplicates: list[dict[str, Any]],
    unique: list[tuple[str, Proposal]],
) -> None:
    rows = []
    for key, proposal in unique:
        fields = generation.material_fields(proposal.atoms)
        info = {
            "generated": {
                "pool": request.pool,
                "method": proposal.method,
                "parent_key": proposal.parent_key,
                "substitutions": proposal.substitution,
                "score": proposal.score,
                "oxidation_states": proposal.oxidation_states,
            }
        }
        rows.append(
            fields
            | {"key": key, "prototype": None, "spacegroup_number": None}
            | {"dimensionality": 2, "info": info}
        )
    try:
        with sessions.begin() as session:
            pool_id = queries.insert_pool(
                session, request.pool, request.generator, parameters, counts, duplicates, len(rows)
            )
            stored = materials_queries.upsert_materials(session, rows)
            parents = {
                key: materials_queries.material_row(session, key)
                for key in {proposal.parent_key for _, proposal in unique}
            }
            queries.insert_candidates(
                session,
                [
                    {
                        "pool_id": pool_id,
                        "material_id": stored[key].id,
                        "parent_material_id": (
                            None
                            if parents[proposal.parent_key] is None
                            else parents[proposal.parent_key].id  # type: ignore[union-attr]
                        ),
                        "substitution": proposal.substitution,
                        "score": proposal.score,
                        "n_sites": len(proposal.atoms),
                        "species": proposal.atoms.get_atomic_numbers(),
                        "cell": proposal.atoms.cell.array,
                        "positions": proposal.atoms.positions,
                    }
                    for key, proposal in unique
                ],
            )
    except IntegrityError as err:
        raise AlreadyExists(
            f"Pool {request.pool!r} was created by another run meanwhile; "
            f"`atlas2d generate show {request.pool}`. Nothing was written."
        ) from err


def import_pool(sessions: sessionmaker[Session], pool: str, path: Path) -> queries.PoolRecord:
    """Make a pool (generator ``file``) of the structures in a file, any format
    ``relax --from-file`` reads: each record becomes a material (its key from the file)
    starting from its first frame. Made once: the same pool name and path find the
    stored pool (its sha256 records the content it was made from).

    Raises:
        InvalidInput: unreadable file, no structure, a key held by another formula, or
            a repeated key. AlreadyExists: the pool name is taken by other content.
    """
    from atlas2d.io.candidates import read_candidates
    from atlas2d.queries.row_encoding import build_blocks, material_rows, starting_structures

    if not POOL_NAME.match(pool):
        raise InvalidInput(f"pool name {pool!r} must be letters, digits, '.', '_' or '-'.")
    with sessions.begin() as session:
        existing = queries.pool_row(session, pool)
    if existing is not None:  # made once: the file is not read again
        if existing.generator != "file" or existing.parameters["path"] != str(path):
            raise AlreadyExists(
                f"Pool {pool!r} exists, made from {existing.parameters.get('path', 'elsewhere')}"
                f"; `atlas2d generate show {pool}`."
            )
        return existing
    parsed = read_candidates(path)
    parameters = {"path": str(path), "sha256": parsed.sha256}
    if not parsed.trajectories:
        raise InvalidInput(f"{path}: holds no structure (a hull file? give its trajectories).")
    blocks = build_blocks(parsed.trajectories, str(path))  # checked, layers oriented
    rows = {row["key"]: row for row in material_rows(parsed, blocks, [])}
    starts: dict[str, Atoms] = {}
    for key, atoms in starting_structures(blocks, "first"):
        if key in starts:
            raise InvalidInput(
                f"{path}: several structures have the material key {key!r}; give each "
                "its own `material_key`."
            )
        starts[key] = atoms
    counts: dict[str, int] = {outcome: 0 for outcome in CANDIDATE_OUTCOMES}
    counts |= {"generated": len(starts), "stored": len(starts)}
    try:
        with sessions.begin() as session:
            pool_id = queries.insert_pool(
                session, pool, "file", parameters, counts, [], len(starts)
            )
            stored = materials_queries.upsert_materials(session, list(rows.values()))
            for key, row in rows.items():
                if stored[key].formula != row["formula"]:
                    raise InvalidInput(
                        f"{path}: material key {key!r} is {row['formula']} in the file but "
                        f"{stored[key].formula} in the database; give the structure another key."
                    )
            queries.insert_candidates(
                session,
                [
                    {
                        "pool_id": pool_id,
                        "material_id": stored[key].id,
                        "parent_material_id": None,
                        "substitution": {},
                        "score": 1.0,
                        "n_sites": len(atoms),
                        "species": atoms.get_atomic_numbers(),
                        "cell": atoms.cell.array,
                        "positions": atoms.positions,
                    }
                    for key, atoms in starts.items()
                ],
            )
            record = queries.pool_row(session, pool)
    except IntegrityError as err:
        raise AlreadyExists(f"Pool {pool!r} was created by another run meanwhile.") from err
    assert record is not None
    return record


# --- list, show, export --------------------------------------------------------------


@dataclass(frozen=True)
class PoolDetails:
    """A pool, its parameters and counts, and its candidates."""

    pool: queries.PoolRecord
    candidates: Any
    """DataFrame: material_key, formula, parent_key, substitution, score, n_sites."""


def list_pools(sessions: sessionmaker[Session]) -> Any:
    """One row per pool (DataFrame): name, generator, candidates, counts, created."""
    with sessions.begin() as session:
        return queries.list_pools(session)


def _pool(session: Session, name: str) -> queries.PoolRecord:
    row = queries.pool_row(session, name)
    if row is None:
        raise NotFound(f"No candidate pool is named {name!r}; `atlas2d generate list` shows them.")
    return row


def show_pool(sessions: sessionmaker[Session], name: str) -> PoolDetails:
    """The pool and its candidates. Raises NotFound."""
    with sessions.begin() as session:
        row = _pool(session, name)
        return PoolDetails(row, queries.candidate_summary(session, row.id))


def pool_structures(
    sessions: sessionmaker[Session], name: str, members: tuple[str, ...] | None = None
) -> list[queries.CandidateStructure]:
    """The pool's candidates with the structures they start from; with ``members``, only
    those material keys. Raises NotFound."""
    with sessions.begin() as session:
        found = queries.pool_candidates(session, _pool(session, name).id)
    if members is None:
        return found
    wanted = set(members)
    return [c for c in found if c.material_key in wanted]


def candidate_atoms(candidate: queries.CandidateStructure) -> Atoms:
    """The generated structure of a candidate (flagged 3D periodic, as stored layers are)."""
    return Atoms(
        numbers=candidate.species, positions=candidate.positions, cell=candidate.cell, pbc=True
    )


def export_pool(sessions: sessionmaker[Session], name: str, out: Path) -> int:
    """Write the pool's candidates as extxyz, each with ``material_key``, ``parent_key``,
    ``formula``, ``score`` and ``substitution`` in its info. Returns how many."""
    from atlas2d.io.exporters import write_structures_extxyz

    candidates = pool_structures(sessions, name)
    return write_structures_extxyz(
        (
            (
                candidate_atoms(c),
                {
                    "material_key": c.material_key,
                    "parent_key": c.parent_key or "",
                    "formula": c.formula,
                    "score": c.score,
                    "substitution": c.substitution,
                    "pool": name,
                },
            )
            for c in candidates
        ),
        out,
    )
