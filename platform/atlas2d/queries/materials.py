"""Read queries about materials, their relaxations and energy entries."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

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


def material_row(session: Session, key: str) -> dict[str, Any] | None:
    """The material's own columns, or None."""
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
    return None if row is None else dict(row)


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
