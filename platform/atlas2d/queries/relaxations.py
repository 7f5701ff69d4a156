"""The ``relaxations`` table: set-based inserts of new relaxations, the starting frames of
chosen materials, and lookups by request key. Functions take ``session`` first and never
commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.json_records import json_rows, numbered_rows
from atlas2d.queries.materials import MaterialFilter
from atlas2d.vocabulary import DFT, Split, StartFrom

RELAXATION_RECORD = (
    "material_id int, source_id int, method text, model_version_id int, sequence smallint,"
    " parameters jsonb,"
    " n_sites smallint, species smallint[], pbc boolean[], n_steps int, converged boolean,"
    " final_energy float8, final_energy_per_atom float8, final_area_per_atom float8,"
    " max_energy_change float8, wall_time_s float8, info jsonb, content_hash text"
)


def insert_relaxations(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert relaxations, skipping content hashes already stored.

    Rows are inserted in content-hash order, so that concurrent ingests of files sharing
    trajectories wait for each other's hashes in one direction only and never deadlock;
    ids are still drawn in the order of ``rows``.

    Args:
        rows: dicts with the columns of ``RELAXATION_RECORD``.

    Returns:
        content_hash → id for the rows inserted now (hashes already present are absent).
    """
    if not rows:
        return {}
    columns = ", ".join(c.split()[0] for c in RELAXATION_RECORD.split(","))
    result = session.execute(
        text(
            numbered_rows("relaxations", RELAXATION_RECORD)
            + f" INSERT INTO relaxations (id, {columns}) SELECT id, {columns}"
            " FROM numbered ORDER BY content_hash"
            " ON CONFLICT (content_hash) DO NOTHING RETURNING content_hash, id"
        ),
        {"rows": json_rows(rows)},
    )
    return dict(result.tuples().all())


# The starting frame of each material: step 0 of its first DFT relaxation ('first') or
# the last step of its last one ('final').
_START_SQL = """
WITH chosen AS ({chosen}),
start AS (
    SELECT DISTINCT ON (r.material_id) r.material_id, r.id AS relaxation_id, r.n_steps
    FROM relaxations r JOIN chosen c ON c.material_id = r.material_id
    WHERE r.method = 'dft'
    ORDER BY r.material_id, {order}
)
SELECT m.id AS material_id, m.key AS material_key, m.dimensionality, f.id AS frame_id
FROM start s
JOIN materials m ON m.id = s.material_id
JOIN frames f ON f.relaxation_id = s.relaxation_id AND f.step = {step}
ORDER BY m.id
"""


_FIRST = {"order": "r.sequence, r.id", "step": "0"}


_FINAL = {"order": "r.sequence DESC, r.id DESC", "step": "s.n_steps - 1"}


_BY_SPLIT = """
SELECT DISTINCT r.material_id FROM training_set_relaxations t
JOIN relaxations r ON r.id = t.relaxation_id
WHERE t.training_set_id = :training_set_id AND t.split = :split
"""


_BY_FILTER = """
SELECT m.id AS material_id FROM materials m
WHERE (cardinality(CAST(:chemsys AS text[])) = 0 OR m.chemsys = ANY(CAST(:chemsys AS text[])))
  AND (cardinality(CAST(:formulas AS text[])) = 0 OR m.formula = ANY(CAST(:formulas AS text[])))
  AND (CAST(:dimensionality AS int) IS NULL OR m.dimensionality = :dimensionality)
  AND (cardinality(CAST(:sources AS text[])) = 0 OR EXISTS (
        SELECT 1 FROM relaxations r JOIN sources s ON s.id = r.source_id
        WHERE r.material_id = m.id AND (s.path = ANY(CAST(:sources AS text[]))
                                        OR CAST(s.id AS text) = ANY(CAST(:sources AS text[])))))
"""


@dataclass(frozen=True)
class StartFrame:
    """The frame a chosen material's relaxation starts from."""

    material_id: int
    material_key: str
    dimensionality: int
    frame_id: int


def start_frames(
    session: Session,
    start: StartFrom,
    training_set_id: int | None = None,
    split: Split | None = None,
    material_filter: MaterialFilter | None = None,
) -> list[StartFrame]:
    """The starting frame of every chosen material with a DFT relaxation, by material
    id: step 0 of its first DFT relaxation (``first``) or the last step of its last one
    (``final``)."""
    chosen = _BY_SPLIT if training_set_id is not None else _BY_FILTER
    selection = material_filter or MaterialFilter()
    sql = _START_SQL.format(chosen=chosen, **(_FIRST if start == "first" else _FINAL))
    rows = session.execute(
        text(sql),
        {
            "training_set_id": training_set_id,
            "split": split,
            "chemsys": list(selection.chemsys),
            "formulas": list(selection.formulas),
            "dimensionality": selection.dimensionality,
            "sources": list(selection.sources),
        },
    ).mappings()
    return [StartFrame(**row) for row in rows]


def stored_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The request keys (``relaxations.content_hash``) already stored."""
    rows = session.execute(
        text("SELECT content_hash FROM relaxations WHERE content_hash = ANY(:keys)"),
        {"keys": list(keys)},
    )
    return set(rows.scalars())


def delete_by_keys(session: Session, keys: Sequence[str]) -> int:
    """Delete stored ML relaxations (and their frames) by request key (``--force``)."""
    result = session.execute(
        text("DELETE FROM relaxations WHERE method = 'ml' AND content_hash = ANY(:keys)"),
        {"keys": list(keys)},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult at run time


def relaxations_by_label_key(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """{labelling request key (``relaxations.info->>'label_key'``): the id of the
    relaxation the reference labeller stored for it}, for the keys already stored."""
    if not keys:
        return {}
    rows = session.execute(
        text(
            "SELECT r.info->>'label_key', max(r.id) FROM relaxations r"
            " JOIN sources s ON s.id = r.source_id"
            " WHERE s.format = 'labeller' AND r.info->>'label_key' = ANY(:keys) GROUP BY 1"
        ),
        {"keys": list(keys)},
    )
    return dict(rows.tuples().all())


def labelled_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The labelling request keys already stored."""
    return set(relaxations_by_label_key(session, keys))


def final_energies(session: Session, relaxation_ids: Sequence[int]) -> dict[int, float]:
    """{relaxation id: its final energy, eV/atom}."""
    rows = session.execute(
        text("SELECT id, final_energy_per_atom FROM relaxations WHERE id = ANY(:ids)"),
        {"ids": list(relaxation_ids)},
    )
    return dict(rows.tuples().all())


# The prototypes of candidate generation: layers on or near one energy source's hull
# (DFT's, or a model's), each with the last step of its last DFT relaxation.
_PROTOTYPE_SQL = """
WITH chosen AS (
    SELECT m.id AS material_id FROM materials m
    JOIN stability s ON s.material_id = m.id AND s.energy_source = :energy_source
    WHERE m.dimensionality = 2 AND s.e_above_hull <= :max_ehull
      AND (cardinality(CAST(:chemsys AS text[])) = 0 OR m.chemsys = ANY(CAST(:chemsys AS text[])))
      AND (cardinality(CAST(:formulas AS text[])) = 0
           OR m.formula = ANY(CAST(:formulas AS text[])))
      AND (cardinality(CAST(:keys AS text[])) = 0 OR m.key = ANY(CAST(:keys AS text[])))
),
last AS (
    SELECT DISTINCT ON (r.material_id) r.material_id, r.id AS relaxation_id, r.n_steps
    FROM relaxations r JOIN chosen c ON c.material_id = r.material_id
    WHERE r.method = :dft
    ORDER BY r.material_id, r.sequence DESC, r.id DESC
)
SELECT m.id AS material_id, m.key AS material_key, m.dimensionality, f.id AS frame_id
FROM last l
JOIN materials m ON m.id = l.material_id
JOIN frames f ON f.relaxation_id = l.relaxation_id AND f.step = l.n_steps - 1
ORDER BY m.key
"""


def prototype_frames(
    session: Session,
    max_ehull_ev: float,
    material_filter: MaterialFilter | None = None,
    keys: Sequence[str] = (),
    energy_source: str = DFT,
) -> list[StartFrame]:
    """The final DFT frame of every layer (dimensionality 2) at most ``max_ehull_ev``
    above the hull of ``energy_source`` (``dft`` or a model's ``NAME:VERSION``),
    narrowed by chemical systems, formulas and keys; by key."""
    selection = material_filter or MaterialFilter()
    rows = session.execute(
        text(_PROTOTYPE_SQL),
        {
            "dft": DFT,
            "energy_source": energy_source,
            "max_ehull": max_ehull_ev,
            "chemsys": list(selection.chemsys),
            "formulas": list(selection.formulas),
            "keys": list(keys),
        },
    ).mappings()
    return [StartFrame(**row) for row in rows]


_FINAL_BY_KEY_SQL = """
SELECT DISTINCT ON (m.id) m.id AS material_id, m.key AS material_key, m.dimensionality,
       f.id AS frame_id
FROM materials m
JOIN relaxations r ON r.material_id = m.id
JOIN frames f ON f.relaxation_id = r.id AND f.step = r.n_steps - 1
WHERE {where}
ORDER BY m.id, (r.method = 'dft') DESC, r.sequence DESC, r.id DESC
"""


def final_frames_by_key(session: Session, keys: Sequence[str]) -> list[StartFrame]:
    """Each material's final frame: the last step of its last DFT relaxation, else of
    its last ML relaxation."""
    rows = session.execute(
        text(_FINAL_BY_KEY_SQL.format(where="m.key = ANY(CAST(:keys AS text[]))")),
        {"keys": list(keys)},
    ).mappings()
    return [StartFrame(**row) for row in rows]


@dataclass(frozen=True)
class FormulaFrame:
    """The final frame of a stored material of some reduced formula."""

    material_key: str
    formula: str
    frame_id: int


def final_frames_by_formula(session: Session, formulas: Sequence[str]) -> list[FormulaFrame]:
    """The final frame (DFT first, else ML) of every 2D material with one of these reduced
    formulas (a bulk crystal of the formula is no duplicate of a layer: its monolayer is
    the thing worth finding)."""
    sql = (
        "SELECT DISTINCT ON (m.id) m.key AS material_key, m.formula, f.id AS frame_id"
        " FROM materials m"
        " JOIN relaxations r ON r.material_id = m.id"
        " JOIN frames f ON f.relaxation_id = r.id AND f.step = r.n_steps - 1"
        " WHERE m.formula = ANY(CAST(:formulas AS text[])) AND m.dimensionality = 2"
        " ORDER BY m.id, (r.method = 'dft') DESC, r.sequence DESC, r.id DESC"
    )
    rows = session.execute(text(sql), {"formulas": list(formulas)}).mappings()
    return [FormulaFrame(**row) for row in rows]
