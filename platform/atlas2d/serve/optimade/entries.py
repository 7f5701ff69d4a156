"""The SQL of OPTIMADE ``structures`` entries: count, page and single entry, and the
decoding of a row into an entry (``{"id", "type", "attributes"}``).

Each material is one entry. Filters and sorts read ``materials m`` plus only the joins
their properties name, so the common filters (elements, nelements, formulas) are index
scans of ``materials`` alone; the structure (final DFT frame or hull entry), stability
and energy sources are joined for the page's rows only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from ase.data import chemical_symbols
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.db.types import Matrix3, SmallIntArray, Vec3Array
from atlas2d.serve.optimade.filters import SqlFilter
from atlas2d.serve.optimade.meta import utc_timestamp
from atlas2d.serve.optimade.properties import (
    ENERGY_SOURCES_SQL,
    PROVIDER_PREFIX,
    Join,
    Property,
)
from atlas2d.vocabulary import DFT

# The material's structure: its last DFT relaxation (its final frame is read for the
# page), else its latest DFT energy entry.
STRUCTURE_JOIN = f"""
LEFT JOIN LATERAL (
    SELECT c.relaxation_id, c.entry_id, c.n_sites, c.species, c.created_at FROM (
        (SELECT 0 AS preference, r.id AS relaxation_id, CAST(NULL AS integer) AS entry_id,
                r.n_sites, r.species, r.created_at
         FROM relaxations r WHERE r.material_id = m.id AND r.method = '{DFT}'
         ORDER BY r.sequence DESC, r.id DESC LIMIT 1)
        UNION ALL
        (SELECT 1, NULL, e.id, e.n_sites, e.species, e.created_at
         FROM energy_entries e WHERE e.material_id = m.id AND e.method = '{DFT}'
         ORDER BY e.id DESC LIMIT 1)
    ) AS c ORDER BY c.preference LIMIT 1
) s ON true"""

STABILITY_JOIN = f"LEFT JOIN stability st ON st.material_id = m.id AND st.energy_source = '{DFT}'"

JOINS: dict[Join, str] = {"structure": STRUCTURE_JOIN, "stability": STABILITY_JOIN}

ENTRY_COLUMNS = f"""
    m.key, m.elements, m.n_elements, m.formula, m.formula_alphabetical, m.formula_anonymous,
    m.dimensionality, m.spacegroup_number, s.n_sites, s.species,
    GREATEST(m.created_at, s.created_at) AS last_modified,
    COALESCE(f.cell, e.cell) AS cell, COALESCE(f.positions, e.positions) AS positions,
    st.e_above_hull, st.formation_energy_per_atom,
    {ENERGY_SOURCES_SQL} AS energy_sources"""

ENTRY_FROM = f"""{STRUCTURE_JOIN}
{STABILITY_JOIN}
LEFT JOIN LATERAL (
    SELECT cell, positions FROM frames
    WHERE relaxation_id = s.relaxation_id ORDER BY step DESC LIMIT 1
) f ON true
LEFT JOIN energy_entries e ON e.id = s.entry_id"""

_DECODED = {"species": SmallIntArray(), "cell": Matrix3(), "positions": Vec3Array()}

DIMENSION_TYPES = {0: [0, 0, 0], 1: [1, 0, 0], 2: [1, 1, 0], 3: [1, 1, 1]}


@dataclass(frozen=True)
class SortKey:
    """One ``sort`` field: the property and its direction."""

    prop: Property
    descending: bool


def _joins(needed: frozenset[Join]) -> str:
    # In this order: the stability join never reads s, but the structure join must
    # come first for any expression that reads both.
    return "\n".join(JOINS[j] for j in ("structure", "stability") if j in needed)


def count_entries(session: Session, where: SqlFilter) -> int:
    """How many entries match ``where``."""
    sql = f"SELECT count(*) FROM materials m {_joins(where.joins)} WHERE {where.where}"
    return int(session.execute(text(sql), dict(where.params)).scalar_one())


def page_entries(
    session: Session,
    where: SqlFilter,
    sort: Sequence[SortKey],
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """The entries matching ``where`` in ``sort`` order (then by id), rows
    ``offset`` … ``offset + limit - 1``, decoded (:func:`entry_attributes`)."""
    needed = where.joins.union(*(key.prop.joins for key in sort))
    sort_columns = "".join(f", {key.prop.sql} AS sort_{i}" for i, key in enumerate(sort))
    inner_order = "".join(
        f"{key.prop.sql} {'DESC' if key.descending else 'ASC'} NULLS LAST, " for key in sort
    )
    outer_order = "".join(
        f"page.sort_{i} {'DESC' if key.descending else 'ASC'} NULLS LAST, "
        for i, key in enumerate(sort)
    )
    sql = f"""
SELECT {ENTRY_COLUMNS}
FROM (
    SELECT m.id AS material_id, m.key AS sort_key{sort_columns}
    FROM materials m {_joins(needed)}
    WHERE {where.where}
    ORDER BY {inner_order}m.key
    LIMIT :page_limit OFFSET :page_offset
) AS page
JOIN materials m ON m.id = page.material_id
{ENTRY_FROM}
ORDER BY {outer_order}page.sort_key"""
    params = {**where.params, "page_limit": limit, "page_offset": offset}
    rows = session.execute(text(sql).columns(**_DECODED), params).mappings().all()
    return [dict(row) for row in rows]


def one_entry(session: Session, key: str) -> dict[str, Any] | None:
    """The entry of the material keyed ``key``, or None."""
    sql = f"SELECT {ENTRY_COLUMNS} FROM materials m {ENTRY_FROM} WHERE m.key = :key"
    row = session.execute(text(sql).columns(**_DECODED), {"key": key}).mappings().one_or_none()
    return None if row is None else dict(row)


def _ratios(formula: str | None, elements: list[str]) -> list[float] | None:
    """Fractions of ``elements`` in ``formula`` (``Se2W`` → Se 2/3, W 1/3)."""
    if formula is None:
        return None
    counts: dict[str, int] = {}
    for element, number in re.findall(r"([A-Z][a-z]*)(\d*)", formula):
        counts[element] = counts.get(element, 0) + (int(number) if number else 1)
    if sorted(counts) != elements:
        return None
    total = sum(counts.values())
    return [counts[e] / total for e in elements]


def entry_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """Every attribute of an entry from its row (``ENTRY_COLUMNS``); lengths Å,
    energies eV/atom."""
    elements = sorted(row["elements"])
    species_z: np.ndarray | None = row["species"]
    symbols = None if species_z is None else [chemical_symbols[int(z)] for z in species_z]
    cell: np.ndarray | None = row["cell"]
    positions: np.ndarray | None = row["positions"]
    modified: datetime = row["last_modified"]
    dimensionality = row["dimensionality"]
    return {
        "last_modified": utc_timestamp(modified),
        "elements": elements,
        "nelements": row["n_elements"],
        "elements_ratios": _ratios(row["formula_alphabetical"], elements),
        "chemical_formula_descriptive": row["formula"],
        "chemical_formula_reduced": row["formula_alphabetical"],
        "chemical_formula_anonymous": row["formula_anonymous"],
        "dimension_types": DIMENSION_TYPES.get(dimensionality),
        "nperiodic_dimensions": None if dimensionality is None else int(dimensionality),
        "lattice_vectors": None if cell is None else cell.tolist(),
        "cartesian_site_positions": None if positions is None else positions.tolist(),
        "nsites": row["n_sites"],
        "species": None
        if symbols is None
        else [
            {"name": s, "chemical_symbols": [s], "concentration": [1.0]}
            for s in sorted(set(symbols))
        ],
        "species_at_sites": symbols,
        "structure_features": [],
        f"_{PROVIDER_PREFIX}_e_above_hull": row["e_above_hull"],
        f"_{PROVIDER_PREFIX}_formation_energy": row["formation_energy_per_atom"],
        f"_{PROVIDER_PREFIX}_dimensionality": dimensionality,
        f"_{PROVIDER_PREFIX}_spacegroup": row["spacegroup_number"],
        f"_{PROVIDER_PREFIX}_energy_sources": list(row["energy_sources"]),
    }
