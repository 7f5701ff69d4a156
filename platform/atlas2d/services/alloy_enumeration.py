"""``atlas2d alloys enumerate``: the symmetry-distinct alloy configurations of an MX2
system on one prototype lattice, stored as new materials in a candidate pool.

The parent lattice is built from the lowest-energy (DFT, per atom) stored end member of
the prototype (``analysis.alloy_lattice``); icet enumerates the metal sublattice in
in-plane supercells up to ``--max-sites`` metal sites, vacuum kept. Configurations
matching a stored layer or an earlier pool's candidate (pymatgen's StructureMatcher, as
``atlas2d generate`` deduplicates) are counted, not stored. The rest become materials
(``info.alloy``: system, prototype, x, n_metal_sites, parent) and the members of a pool
(generator ``enumerate``), which ``atlas2d label --pool`` labels and ``atlas2d relax
--pool`` relaxes. Made once: the same pool name and parameters find the stored pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ase import Atoms
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloy_lattice, generation
from atlas2d.analysis.alloys import AlloySystem, composition, parse_system
from atlas2d.analysis.alloys_extra import require_alloys_extra
from atlas2d.analysis.structure import structure_sha256
from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.queries import candidate_pools as pool_queries
from atlas2d.queries import materials as materials_queries
from atlas2d.queries import relaxations as relaxation_queries
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.services.alloys import SystemLayer, dft_layers
from atlas2d.services.generate import POOL_NAME, stored_layers
from atlas2d.vocabulary import (
    ALLOY_PROTOTYPES,
    CANDIDATE_OUTCOMES,
    GENERATED_KEY_PREFIX,
    AlloyPrototype,
    or_list,
)

MAX_SITES_LIMIT = 16
"""Enumeration grows fast with the supercell size; beyond this it is not a quick command."""


@dataclass
class EnumerateReport:
    """What an enumeration found and stored.

    Attributes:
        pool: the pool's name. parent_key: the end member the lattice came from.
        counts: configurations per outcome (``generated``, ``duplicate_of_stored``,
            ``duplicate_in_pool``, ``stored``).
        stored_keys: the new materials. already_done: the pool existed with these
            parameters (nothing new).
    """

    pool: str
    parent_key: str
    counts: dict[str, int]
    stored_keys: list[str] = field(default_factory=list)
    already_done: bool = False


def default_pool_name(system: AlloySystem, prototype: str, max_sites: int) -> str:
    """``alloys-Mo-W-S-2H-9``."""
    return f"alloys-{system.label}-{prototype}-{max_sites}"


def _check(prototype: str, max_sites: int, pool: str) -> None:
    if prototype not in ALLOY_PROTOTYPES:
        raise InvalidInput(f"--prototype {prototype!r} is not {or_list(ALLOY_PROTOTYPES)}.")
    if not 1 <= max_sites <= MAX_SITES_LIMIT:
        raise InvalidInput(f"--max-sites {max_sites} is not between 1 and {MAX_SITES_LIMIT}.")
    if not POOL_NAME.match(pool):
        raise InvalidInput(
            f"Pool name {pool!r} is not valid: letters, digits, '.', '_' and '-', at most 64."
        )


def parent_end_member(
    session: Session, system: AlloySystem, prototype: AlloyPrototype
) -> tuple[SystemLayer, Atoms]:
    """The lowest-energy (DFT, per atom) stored end member of the prototype, and its
    final DFT structure.

    Raises:
        NotFound: no AX2 or BX2 layer of that prototype has a DFT relaxation.
    """
    candidates = [
        s
        for s in dft_layers(session, system)
        if s.composition.x in (0.0, 1.0)
        and alloy_lattice.prototype_kind(s.layer.prototype) == prototype
    ]
    finals = {
        f.material_key: f
        for f in relaxation_queries.final_frames_by_key(session, [s.layer.key for s in candidates])
    }
    candidates = [s for s in candidates if s.layer.key in finals]
    if not candidates:
        first, second = system.end_member_formulas
        raise NotFound(
            f"No {first} or {second} layer of prototype {prototype} has a DFT relaxation "
            f"(a material whose prototype names {prototype}, e.g. MX2-{prototype}): ingest or "
            "label one first (`atlas2d ingest`, `atlas2d label`)."
        )
    best = min(candidates, key=lambda s: (s.energy_per_atom_ev, s.layer.key))
    (frame,) = frames_by_id(session, [finals[best.layer.key].frame_id])
    return best, frame_atoms(frame)


def parent_lattice(
    session: Session, system: AlloySystem, prototype: AlloyPrototype
) -> tuple[str, Atoms]:
    """The key of the prototype's lowest-energy DFT end member and the ideal 1×1 layer
    (pbc in-plane only) with its lattice constant, thickness and vacuum.

    Raises:
        NotFound: no end member of the prototype has a DFT relaxation.
    """
    parent, atoms = parent_end_member(session, system, prototype)
    metal = system.metal_a if parent.composition.x == 1.0 else system.metal_b
    geometry = alloy_lattice.layer_geometry(atoms, {metal})
    return parent.layer.key, alloy_lattice.ideal_layer(prototype, metal, system.chalcogen, geometry)


def enumerate_system(
    sessions: sessionmaker[Session],
    system_text: str,
    prototype: str,
    max_sites: int,
    pool: str | None = None,
) -> EnumerateReport:
    """Enumerate, deduplicate and store (see the module docstring).

    Raises:
        InvalidInput: a bad system, prototype, size or pool name.
        NotFound: no end member of the prototype. AlreadyExists: the pool name is taken
            with other parameters. Nothing is written then.
    """
    require_alloys_extra("Alloy enumeration")
    system = parse_system(system_text)
    pool = pool or default_pool_name(system, prototype, max_sites)
    _check(prototype, max_sites, pool)
    kind: AlloyPrototype = prototype  # type: ignore[assignment]  # checked above
    parameters: dict[str, Any] = {
        "system": system.label,
        "prototype": prototype,
        "max_sites": max_sites,
    }
    with sessions.begin() as session:
        parent_key, lattice = parent_lattice(session, system, kind)
        parent_id = materials_queries.material_row(session, parent_key).id  # type: ignore[union-attr]
        parameters["parent"] = parent_key
        existing = pool_queries.pool_row(session, pool)
        if existing is not None:
            if existing.generator != "enumerate" or existing.parameters != parameters:
                raise AlreadyExists(
                    f"Pool {pool!r} exists with other parameters; give another --pool, or "
                    f"see it with `atlas2d generate show {pool}`."
                )
            return EnumerateReport(pool, parent_key, dict(existing.counts), [], True)
    structures = list(alloy_lattice.enumerate_alloys(lattice, system, max_sites))
    formulas = sorted({generation.reduced_formula(s) for s in structures})
    with sessions.begin() as session:
        stored = stored_layers(session, formulas)
    result = generation.deduplicate(structures, stored)
    keys = [
        f"{GENERATED_KEY_PREFIX}-{pool}-"
        + structure_sha256(s.get_atomic_numbers(), s.cell.array, s.positions)[:12]
        for s in structures
    ]
    counts: dict[str, int] = dict.fromkeys(CANDIDATE_OUTCOMES, 0)
    counts["generated"] = len(structures)
    counts["duplicate_in_pool"] = len(result.in_pool)
    counts["duplicate_of_stored"] = len(result.of_stored)
    counts["stored"] = len(result.unique)
    duplicates = [
        {
            "formula": generation.reduced_formula(structures[i]),
            "outcome": outcome,
            "matched_key": key,
        }
        for outcome, matches in (
            ("duplicate_of_stored", dict(result.of_stored)),
            ("duplicate_in_pool", {i: keys[j] for i, j in result.in_pool.items()}),
        )
        for i, key in sorted(matches.items())
    ]
    unique = [(keys[i], structures[i]) for i in result.unique]
    _store(sessions, pool, parameters, counts, duplicates, unique, system, parent_id)
    return EnumerateReport(pool, parent_key, counts, [k for k, _ in unique])


def _store(
    sessions: sessionmaker[Session],
    pool: str,
    parameters: dict[str, Any],
    counts: dict[str, int],
    duplicates: list[dict[str, Any]],
    unique: list[tuple[str, Atoms]],
    system: AlloySystem,
    parent_id: int,
) -> None:
    rows, members = [], []
    for key, atoms in unique:
        found = composition(atoms.get_chemical_symbols(), system)
        assert found is not None  # enumerated on the system's own lattice
        alloy = {
            "system": system.label,
            "prototype": parameters["prototype"],
            "x": found.x,
            "n_metal_sites": found.n_metal_sites,
            "parent": parameters["parent"],
        }
        info = {"alloy": alloy, "generated": {"pool": pool, "method": "enumerate"}}
        rows.append(
            generation.material_fields(atoms)
            | {"key": key, "prototype": f"alloy-{parameters['prototype']}"}
            | {"spacegroup_number": None, "dimensionality": 2, "info": info}
        )
        members.append((key, atoms, {"x": found.x, "n_metal_sites": found.n_metal_sites}))
    try:
        with sessions.begin() as session:
            pool_id = pool_queries.insert_pool(
                session, pool, "enumerate", parameters, counts, duplicates, len(rows)
            )
            stored = materials_queries.upsert_materials(session, rows)
            pool_queries.insert_candidates(
                session,
                [
                    {
                        "pool_id": pool_id,
                        "material_id": stored[key].id,
                        "parent_material_id": parent_id,
                        "substitution": substitution,
                        "score": 1.0,  # every configuration counts the same
                        "n_sites": len(atoms),
                        "species": atoms.get_atomic_numbers(),
                        "cell": atoms.cell.array,
                        "positions": atoms.positions,
                    }
                    for key, atoms, substitution in members
                ],
            )
    except IntegrityError as err:
        raise AlreadyExists(
            f"Pool {pool!r} was created by another run meanwhile; "
            f"`atlas2d generate show {pool}`. Nothing was written."
        ) from err
