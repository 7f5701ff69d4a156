"""The ``energy_entries`` table: convex-hull entries without a trajectory. Functions take
``session`` first and never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.json_records import json_rows, numbered_rows

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
    # In content-hash order, so that concurrent ingests sharing entries never deadlock;
    # ids are still drawn in the order of ``rows``.
    result = session.execute(
        text(
            numbered_rows("energy_entries", ENTRY_RECORD)
            + " INSERT INTO energy_entries (id, material_id, source_id, method, energy, correction,"
            " n_sites, species, cell, positions, data, content_hash)"
            " SELECT id, material_id, source_id, method, energy, correction, n_sites, species,"
            " cell, decode(positions, 'hex'), data, content_hash"
            " FROM numbered ORDER BY content_hash"
            " ON CONFLICT (content_hash) DO NOTHING RETURNING id"
        ),
        {"rows": json_rows(rows)},
    )
    return len(result.all())
