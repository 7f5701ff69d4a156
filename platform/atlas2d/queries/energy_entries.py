"""The ``energy_entries`` table: convex-hull entries without a trajectory. Functions take
``session`` first and never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.json_records import json_rows

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
        {"rows": json_rows(rows)},
    )
    return len(result.all())
