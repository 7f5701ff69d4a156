"""The ``sources`` table: one row per ingested file. Functions take ``session`` first and
never commit."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


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
