"""The ``materials`` table: listing, details, the upsert of ingest, and the selector of
materials by chemical system, formula, dimensionality and source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.json_records import json_rows, numbered_rows

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
{MATERIAL_FILTER}
ORDER BY m.key
LIMIT :limit
"""

MATERIAL_FILTER = """
WHERE (CAST(:chemsys AS text) IS NULL OR m.chemsys = :chemsys)
  AND (CAST(:formula AS text) IS NULL OR m.formula = :formula)
  AND (CAST(:dimensionality AS int) IS NULL OR m.dimensionality = :dimensionality)
"""
"""The filters of a material listing (bound parameters chemsys, formula, dimensionality)."""


def count_materials(
    session: Session,
    chemsys: str | None = None,
    formula: str | None = None,
    dimensionality: int | None = None,
) -> int:
    """How many materials match the filters of :func:`list_materials` (no limit)."""
    return int(
        session.execute(
            text(f"SELECT count(*) FROM materials m {MATERIAL_FILTER}"),
            {
                "chemsys": normalise_chemsys(chemsys),
                "formula": formula,
                "dimensionality": dimensionality,
            },
        ).scalar_one()
    )


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
        text(MATERIAL_LIST_SQL.format(MATERIAL_FILTER=MATERIAL_FILTER)),
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


MATERIAL_RECORD = (
    "key text, formula text, chemsys text, elements text[], prototype text,"
    " spacegroup_number smallint, dimensionality smallint, info jsonb"
)

# Concurrent ingests meet on material keys. Each statement below takes its row locks in
# key order, so two writers wait for each other in one direction only, never in a cycle
# (two files holding the same keys in opposite orders used to deadlock). Ids are still
# drawn in file order, as a plain INSERT would draw them.
_INSERT_NEW_SQL = f"""{numbered_rows("materials", MATERIAL_RECORD)}
INSERT INTO materials (id, key, formula, chemsys, elements, n_elements, prototype,
                       spacegroup_number, dimensionality, info)
SELECT id, key, formula, chemsys, elements, cardinality(elements), prototype,
       spacegroup_number, dimensionality, info
FROM numbered ORDER BY key
ON CONFLICT (key) DO NOTHING
RETURNING key, id, formula
"""

# A stored material is rewritten only when this file fills a gap in it (a prototype,
# space group or dimensionality it lacks, an info key it lacks): the common re-ingest
# touches no row. The rows to fill are locked in key order first.
_FILL_GAPS_SQL = f"""
WITH t AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t({MATERIAL_RECORD})
), gaps AS (
    SELECT m.id, t.prototype, t.spacegroup_number, t.dimensionality,
           COALESCE(t.info, '{{}}') AS info
    FROM materials m JOIN t ON t.key = m.key
    WHERE (m.prototype IS NULL AND t.prototype IS NOT NULL)
       OR (m.spacegroup_number IS NULL AND t.spacegroup_number IS NOT NULL)
       OR (m.dimensionality IS NULL AND t.dimensionality IS NOT NULL)
       OR COALESCE(t.info, '{{}}') || m.info <> m.info
    ORDER BY m.key
    FOR NO KEY UPDATE OF m
)
UPDATE materials m SET
    prototype = COALESCE(m.prototype, gaps.prototype),
    spacegroup_number = COALESCE(m.spacegroup_number, gaps.spacegroup_number),
    dimensionality = COALESCE(m.dimensionality, gaps.dimensionality),
    info = gaps.info || m.info
FROM gaps WHERE m.id = gaps.id
"""


def upsert_materials(session: Session, rows: list[dict[str, Any]]) -> dict[str, StoredMaterial]:
    """Insert new materials; on an existing key fill fields that are still empty (and add
    info keys it lacks), leaving every other stored material untouched and unlocked.

    Safe against concurrent writers of the same keys in any order: rows are locked in
    key order (see ``_INSERT_NEW_SQL``).

    Args:
        rows: dicts with key, formula, chemsys, elements (list[str]), prototype,
            spacegroup_number, dimensionality, info (dict). Keys must be unique.

    Returns:
        key → StoredMaterial (``formula`` is the stored one, so callers can check it).
    """
    if not rows:
        return {}
    stored = {
        key: StoredMaterial(id_, formula, True)
        for key, id_, formula in session.execute(
            text(_INSERT_NEW_SQL), {"rows": json_rows(rows)}
        ).tuples()
    }
    present = [row for row in rows if row["key"] not in stored]
    if present:
        session.execute(text(_FILL_GAPS_SQL), {"rows": json_rows(present)})
        existing = session.execute(
            text("SELECT key, id, formula FROM materials WHERE key = ANY(:keys)"),
            {"keys": [row["key"] for row in present]},
        ).tuples()
        stored.update({key: StoredMaterial(id_, formula, False) for key, id_, formula in existing})
    return stored


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
