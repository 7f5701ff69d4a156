"""Alloy energies and formation energies in SQL. Functions take ``session`` first and
never commit. Energies are total eV unless a name says otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from atlas2d.db.models import FormationEnergy
from atlas2d.queries.tabular import query_frame
from atlas2d.vocabulary import DFT

_LAYERS = """
SELECT id, key, formula, prototype FROM materials
WHERE chemsys = ANY(CAST(:chemsys AS text[])) AND dimensionality = 2
"""

DFT_ALLOY_ENERGIES_SQL = f"""
WITH layers AS ({_LAYERS}), relaxed AS (
    SELECT DISTINCT ON (r.material_id)
           r.material_id, r.id, r.species, r.final_energy AS energy
    FROM relaxations r JOIN layers l ON l.id = r.material_id
    WHERE r.method = :dft AND r.converged IS NOT FALSE
    ORDER BY r.material_id, r.converged DESC NULLS LAST, r.sequence DESC, r.id DESC
), entries AS (
    SELECT DISTINCT ON (e.material_id) e.material_id, e.id, e.species, e.energy
    FROM energy_entries e JOIN layers l ON l.id = e.material_id
    WHERE e.method = :dft
    ORDER BY e.material_id, e.id DESC
)
SELECT l.id AS material_id, l.key, l.formula, l.prototype,
       COALESCE(r.species, e.species) AS species,
       COALESCE(r.energy, e.energy) AS energy_ev
FROM layers l
LEFT JOIN relaxed r ON r.material_id = l.id
LEFT JOIN entries e ON e.material_id = l.id
WHERE r.id IS NOT NULL OR e.id IS NOT NULL
ORDER BY l.key
"""
"""Each layer's DFT energy for formation energies: the uncorrected final energy of its
last converged DFT relaxation (converged unknown counts after converged), else its
latest hull entry's uncorrected energy. Corrections never enter mixing energies."""

ML_ALLOY_ENERGIES_SQL = f"""
WITH layers AS ({_LAYERS})
SELECT DISTINCT ON (l.id) l.id AS material_id, l.key, l.formula, l.prototype,
       r.species, r.final_energy AS energy_ev
FROM layers l
JOIN relaxations r ON r.material_id = l.id
WHERE r.method = 'ml' AND r.model_version_id = :model_version_id
ORDER BY l.id, r.converged DESC NULLS LAST, r.id DESC
"""
"""Each layer's energy from one model version: its latest converged ML relaxation (the
latest of any when none converged), as hulls take it."""


@dataclass(frozen=True)
class LayerEnergy:
    """A stored layer of an alloy system (or an end member) with one source's energy.

    Attributes:
        material_id, key, formula, prototype: the material.
        species: atomic numbers, shape (n_sites,).
        energy_ev: total energy (eV, uncorrected).
    """

    material_id: int
    key: str
    formula: str
    prototype: str | None
    species: np.ndarray
    energy_ev: float


def _layers(session: Session, sql: str, params: dict[str, Any]) -> list[LayerEnergy]:
    rows = session.execute(text(sql), params).mappings()
    return [
        LayerEnergy(**{**row, "species": np.asarray(row["species"], dtype=np.int64)})
        for row in rows
    ]


def dft_layer_energies(session: Session, chemsys: Sequence[str]) -> list[LayerEnergy]:
    """The DFT energy (:data:`DFT_ALLOY_ENERGIES_SQL`) of every layer in these chemical
    systems, by key."""
    return _layers(session, DFT_ALLOY_ENERGIES_SQL, {"chemsys": list(chemsys), "dft": DFT})


def ml_layer_energies(
    session: Session, model_version_id: int, chemsys: Sequence[str]
) -> list[LayerEnergy]:
    """One model version's energy (:data:`ML_ALLOY_ENERGIES_SQL`) of every layer in
    these chemical systems that it relaxed."""
    return _layers(
        session,
        ML_ALLOY_ENERGIES_SQL,
        {"chemsys": list(chemsys), "model_version_id": model_version_id},
    )


@dataclass(frozen=True)
class LayerMaterial:
    """A stored layer of a chemical system, whatever energies it has."""

    material_id: int
    key: str
    formula: str
    prototype: str | None


def system_materials(session: Session, chemsys: str) -> list[LayerMaterial]:
    """Every layer (dimensionality 2) of one chemical system, by key."""
    rows = session.execute(text(_LAYERS + " ORDER BY key"), {"chemsys": [chemsys]}).mappings()
    return [LayerMaterial(row["id"], row["key"], row["formula"], row["prototype"]) for row in rows]


_FORMATION_KEY = ("material_id", "system", "energy_source")
"""``formation_energies``' primary key."""


def upsert_formation_energies(session: Session, rows: list[dict[str, Any]]) -> int:
    """Store formation energies, replacing the (material, system, energy source) rows that
    exist (``computed_at`` renewed); how many were written."""
    if not rows:
        return 0
    statement = insert(FormationEnergy).values(rows)
    replaced = {
        column: statement.excluded[column] for column in rows[0] if column not in _FORMATION_KEY
    }
    statement = statement.on_conflict_do_update(
        index_elements=list(_FORMATION_KEY),
        set_={**replaced, "computed_at": text("now()")},
    )
    session.execute(statement)
    return len(rows)


def delete_formation_energies(
    session: Session, system: str, energy_source: str, keep_material_ids: Sequence[int]
) -> int:
    """Drop a system's rows of one energy source for materials no longer computed (an
    energy that went away); how many."""
    result = session.execute(
        text(
            "DELETE FROM formation_energies WHERE system = :system"
            " AND energy_source = :source AND NOT material_id = ANY(CAST(:keep AS integer[]))"
        ),
        {"system": system, "source": energy_source, "keep": list(keep_material_ids)},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


FORMATION_COLUMNS = (
    "material_key",
    "formula",
    "x",
    "formation_energy_mev_per_site",
    "formation_energy_mev_per_atom",
    "end_members",
    "energy_source",
)
"""What ``atlas2d alloys formation`` prints."""


def formation_table(
    session: Session, systems: Sequence[str], energy_sources: Sequence[str] | None = None
) -> pd.DataFrame:
    """Stored formation energies of these systems (``A-B-X``), of every energy source or
    of those given: :data:`FORMATION_COLUMNS` plus system, material_id, model_version_id,
    n_metal_sites and alloy_energy_ev; by system, energy source, x and key."""
    return query_frame(
        session,
        "SELECT material_key, formula, x, formation_energy_mev_per_site,"
        " formation_energy_mev_per_atom,"
        " end_member_a_key || ', ' || end_member_b_key AS end_members, energy_source,"
        " system, material_id, model_version_id, n_metal_sites, alloy_energy_ev"
        " FROM alloy_formation_energies"
        " WHERE system = ANY(CAST(:systems AS text[]))"
        " AND (CAST(:sources AS text[]) IS NULL OR energy_source = ANY(:sources))"
        " ORDER BY system, energy_source, x DESC, material_key",
        {
            "systems": list(systems),
            "sources": None if energy_sources is None else list(energy_sources),
        },
    )
