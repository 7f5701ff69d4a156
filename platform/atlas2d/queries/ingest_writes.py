"""Bulk writes for ingest: set-based SQL and binary COPY. Never commits."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.db.copy_binary import COPY_HEADER, COPY_TRAILER
from atlas2d.db.session import driver_connection

FRAME_COLUMNS = (
    "relaxation_id, step, n_sites, cell, positions, forces, stress, energy, energy_per_atom,"
    " energy_change, max_force, max_abs_stress, area_per_atom, has_isolated_atom, digest"
)
COPY_CHUNK_BYTES = 8 << 20


def source_id_by_sha256(session: Session, sha256: str) -> int | None:
    """Id of the source with this content hash, or None."""
    return session.execute(
        text("SELECT id FROM sources WHERE sha256 = :sha"), {"sha": sha256}
    ).scalar_one_or_none()


def insert_source(session: Session, row: dict[str, Any]) -> int:
    """Insert a ``sources`` row (counts filled in later); return its id."""
    return session.execute(
        text(
            "INSERT INTO sources (format, path, sha256, parser, versions, options,"
            " n_materials, n_relaxations, n_frames, n_entries)"
            " VALUES (:format, :path, :sha256, :parser, CAST(:versions AS jsonb),"
            " CAST(:options AS jsonb), 0, 0, 0, 0) RETURNING id"
        ),
        {**row, "versions": json.dumps(row["versions"]), "options": json.dumps(row["options"])},
    ).scalar_one()


def update_source_counts(session: Session, source_id: int, counts: dict[str, int]) -> None:
    """Record how many materials, relaxations, frames and entries a source brought."""
    session.execute(
        text(
            "UPDATE sources SET n_materials = :n_materials, n_relaxations = :n_relaxations,"
            " n_frames = :n_frames, n_entries = :n_entries WHERE id = :id"
        ),
        {**counts, "id": source_id},
    )


@dataclass(frozen=True)
class StoredMaterial:
    """A material row as the upsert left it."""

    id: int
    formula: str
    inserted: bool


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array: one parameter, parsed server-side by ``jsonb_to_recordset``
    (much cheaper than adapting one Python list per column)."""
    return msgspec.json.encode(rows).decode()


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
        {"rows": _json_rows(rows)},
    )
    return {key: StoredMaterial(id_, formula, inserted) for key, id_, formula, inserted in result}


RELAXATION_RECORD = (
    "material_id int, source_id int, method text, model_version_id int, sequence smallint,"
    " parameters jsonb,"
    " n_sites smallint, species smallint[], pbc boolean[], n_steps int, converged boolean,"
    " final_energy float8, final_energy_per_atom float8, final_area_per_atom float8,"
    " max_energy_change float8, wall_time_s float8, info jsonb, content_hash text"
)


def insert_relaxations(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert relaxations, skipping content hashes already stored.

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
            f"INSERT INTO relaxations ({columns}) SELECT {columns}"
            f" FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t({RELAXATION_RECORD})"
            " ON CONFLICT (content_hash) DO NOTHING RETURNING content_hash, id"
        ),
        {"rows": _json_rows(rows)},
    )
    return dict(result.tuples().all())


def copy_frames(session: Session, encoded_batches: Iterable[bytes]) -> None:
    """Stream binary-COPY rows (from ``copy_binary.encode_rows``) into ``frames``."""
    from psycopg.copy import QueuedLibpqWriter

    connection = driver_connection(session)
    with (
        connection.cursor() as cursor,
        cursor.copy(
            f"COPY frames ({FRAME_COLUMNS}) FROM STDIN (FORMAT BINARY)",
            # A writer thread sends while this thread encodes the next chunk, so the
            # server's work overlaps ours (the two cores are both busy).
            writer=QueuedLibpqWriter(cursor),
        ) as copy,
    ):
        copy.write(COPY_HEADER)
        pending: list[bytes] = []
        size = 0
        for batch in encoded_batches:
            pending.append(batch)
            size += len(batch)
            if size >= COPY_CHUNK_BYTES:
                copy.write(b"".join(pending))
                pending, size = [], 0
        if pending:
            copy.write(b"".join(pending))
        copy.write(COPY_TRAILER)


ENTRY_RECORD = (
    "material_id int, source_id int, method text, energy float8, correction float8,"
    " n_sites smallint, species smallint[], cell float8[], positions text, data jsonb,"
    " content_hash text"
)


def insert_entries(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert energy entries, skipping content hashes already stored; return rows inserted.

    Args:
        rows: dicts with the columns of ``ENTRY_RECORD``; ``cell`` a (3, 3) nested list,
            ``positions`` the little-endian bytes as hex.
    """
    if not rows:
        return 0
    result = session.execute(
        text(
            "INSERT INTO energy_entries (material_id, source_id, method, energy, correction,"
            " n_sites, species, cell, positions, data, content_hash)"
            " SELECT material_id, source_id, method, energy, correction, n_sites, species, cell,"
            " decode(positions, 'hex'), data, content_hash"
            f" FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS t({ENTRY_RECORD})"
            " ON CONFLICT (content_hash) DO NOTHING RETURNING id"
        ),
        {"rows": _json_rows(rows)},
    )
    return len(result.all())
