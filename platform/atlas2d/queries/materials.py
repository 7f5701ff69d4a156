"""The ``materials`` table: listing, details, the upsert of ingest, and the selector of
materials by chemical system, formula, dimensionality and source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.json_records import json_rows

MATERIAL_LIST_SQL = """
SELECT m.key, m.formula, m.chemsys, m.dimensionality AS dim, m.spacegroup_number AS spg,
       COALESCE(r.n_relaxations, 0) AS n_relaxations,
       COALESCE(r.n_frames, 0) AS n_frames,
       e.corrected_energy_per_atom AS entry_energy_per_atom_ev
FROM materials m
LEFT JOIN (
    SELECT material_id, count(*) AS n_relaxations, sum(n_steps) AS n_frames
    FROM relaxations GROUP BY material_id
) r ON r.material_id = m.id
LEFT JOIN LATERAL (
    SELECT (energy + correction) / n_sites AS corrected_energy_per_atom
    FROM energy_entries WHERE material_id = m.id ORDER BY id DESC LIMIT 1
) e ON true
WHERE (CAST(:chemsys AS text) IS NULL OR m.chemsys = :chemsys)
  AND (CAST(:formula AS text) IS NULL OR m.formula = :formula)
  AND (CAST(:dimensionality AS int) IS NULL OR m.dimensionality = :dimensionality)
ORDER BY m.key
LIMIT :limit
"""


def normalise_chemsys(chemsys: str | None) -> str | None:
    """``S-Mo`` → ``Mo-S`` (elements sorted, as stored)."""
    if chemsys is None:
        return None
    return "-".join(sorted(e.strip() for e in chemsys.split("-") if e.strip()))


def list_materials(
    session: Session,
    chemsys: str | None = None,
    formula: str | None = None,
    dimensionality: int | None = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """Materials with their relaxation and frame counts, filtered, sorted by key."""
    result = session.execute(
        text(MATERIAL_LIST_SQL),
        {
            "chemsys": normalise_chemsys(chemsys),
            "formula": formula,
            "dimensionality": dimensionality,
            "limit": limit,
        },
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


@dataclass(frozen=True)
class MaterialRow:
    """A material's own columns (``materials``)."""

    id: int
    key: str
    formula: str
    chemsys: str
    elements: list[str]
    dimensionality: int
    spacegroup_number: int | None
    prototype: str | None
    info: dict[str, Any]
    created_at: datetime


def material_row(session: Session, key: str) -> MaterialRow | None:
    """The material with this key, or None."""
    row = (
        session.execute(
            text(
                "SELECT id, key, formula, chemsys, elements, dimensionality, spacegroup_number,"
                " prototype, info, created_at FROM materials WHERE key = :key"
            ),
            {"key": key},
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else MaterialRow(**row)


def material_relaxations(session: Session, material_id: int) -> pd.DataFrame:
    """The material's relaxations in order, with their final values."""
    result = session.execute(
        text(
            "SELECT r.id AS relaxation_id, r.method, r.sequence, s.format AS source,"
            " r.n_sites, r.n_steps, r.converged,"
            " r.final_energy AS final_energy_ev,"
            " r.final_energy_per_atom AS final_energy_per_atom_ev,"
            " r.final_area_per_atom AS final_area_per_atom_a2,"
            " (r.info ? 'reoriented') AS reoriented"
            " FROM relaxations r LEFT JOIN sources s ON s.id = r.source_id"
            " WHERE r.material_id = :id ORDER BY r.source_id, r.sequence, r.id"
        ),
        {"id": material_id},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def material_entries(session: Session, material_id: int) -> pd.DataFrame:
    """The material's convex-hull energy entries."""
    result = session.execute(
        text(
            "SELECT e.id AS entry_id, s.path AS source_path, e.n_sites,"
            " e.energy AS energy_ev, e.correction AS correction_ev,"
            " (e.energy + e.correction) / e.n_sites AS corrected_energy_per_atom_ev"
            " FROM energy_entries e JOIN sources s ON s.id = e.source_id"
            " WHERE e.material_id = :id ORDER BY e.id"
        ),
        {"id": material_id},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


@dataclass(frozen=True)
class StoredMaterial:
    """A material row as the upsert left it."""

    id: int
    formula: str
    inserted: bool


def upsert_materials(session: Session, rows: list[dict[str, Any]]) -> dict[str, StoredMaterial]:
    """Insert new materials; on an existing key fill fields that are still empty.

    Args:
        rows: dicts with key, formula, chemsys, elements (list[str]), prototype,
            spacegroup_number, dimensionality, info (dict). Keys must be unique.

    Returns:
        key → StoredMaterial (``formula`` is the stored one, so callers can check it).
    """
    if not rows:
        return {}
    result = session.execute(
        text(
            "INSERT INTO materials (key, formula, chemsys, elements, n_elements, prototype,"
            " spacegroup_number, dimensionality, info)"
            " SELECT key, formula, chemsys, elements, cardinality(elements), prototype,"
            " spacegroup_number, dimensionality, info"
            " FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t(key text, formula text,"
            " chemsys text, elements text[], prototype text, spacegroup_number smallint,"
            " dimensionality smallint, info jsonb)"
            " ON CONFLICT (key) DO UPDATE SET"
            " prototype = COALESCE(materials.prototype, EXCLUDED.prototype),"
            " spacegroup_number = COALESCE(materials.spacegroup_number, EXCLUDED.spacegroup_number),"
            " dimensionality = COALESCE(materials.dimensionality, EXCLUDED.dimensionality),"
            " info = EXCLUDED.info || materials.info"
            " RETURNING key, id, formula, (xmax = 0) AS inserted"
        ),
        {"rows": json_rows(rows)},
    )
    return {key: StoredMaterial(id_, formula, inserted) for key, id_, formula, inserted in result}


@dataclass(frozen=True)
class MaterialFilter:
    """Which materials to relax when no training set is given (all must match).

    Attributes:
        chemsys: chemical systems (elements sorted, ``Mo-S``); empty = any.
        formulas: reduced formulas; empty = any. dimensionality: 2 layers, 3 bulk.
        sources: ingest source ids or paths the material's DFT relaxations come from.
    """

    chemsys: tuple[str, ...] = ()
    formulas: tuple[str, ...] = ()
    dimensionality: int | None = None
    sources: tuple[str, ...] = ()
