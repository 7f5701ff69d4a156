"""The ``sources`` table: one row per ingested file. Functions take ``session`` first and
never commit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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


def update_source_sha256(session: Session, source_id: int, sha256: str) -> None:
    """Set a source's content hash (known once a streamed file is read to its end)."""
    session.execute(
        text("UPDATE sources SET sha256 = :sha256 WHERE id = :id"),
        {"sha256": sha256, "id": source_id},
    )


@dataclass(frozen=True)
class SourceRow:
    """One ingested file (``sources``; see ``db.models.Source``).

    Attributes:
        path: as given to ``atlas2d ingest`` (relative to where it ran, or absolute).
        sha256: of the file's decompressed content (or of a batch's content).
        n_materials, n_relaxations, n_frames, n_entries: what it brought.
        retracted_at, retraction_reason: both None unless retracted.
        activity_id: the ingest activity (None before the activity log).
    """

    id: int
    format: str
    path: str
    sha256: str
    parser: str
    n_materials: int
    n_relaxations: int
    n_frames: int
    n_entries: int
    created_at: datetime
    retracted_at: datetime | None
    retraction_reason: str | None
    activity_id: int | None


_SOURCE_COLUMNS = (
    "id, format, path, sha256, parser, n_materials, n_relaxations, n_frames, n_entries,"
    " created_at, retracted_at, retraction_reason, activity_id"
)


def _source_rows(session: Session, where: str, params: dict[str, Any]) -> list[SourceRow]:
    rows = session.execute(
        text(f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE {where} ORDER BY id"), params
    ).mappings()
    return [SourceRow(**row) for row in rows]


def source_row(session: Session, source_id: int) -> SourceRow:
    """A source by id (it must exist)."""
    (row,) = _source_rows(session, "id = :id", {"id": source_id})
    return row


def sources_by_path(session: Session, paths: Sequence[str]) -> list[SourceRow]:
    """Sources stored under any of these paths, exactly (by id)."""
    return _source_rows(session, "path = ANY(CAST(:paths AS text[]))", {"paths": list(paths)})


def sources_by_sha256_prefix(session: Session, prefix: str) -> list[SourceRow]:
    """Sources whose sha256 starts with ``prefix`` (lower-case hex), by id."""
    # One row per file: a scan is cheap, and needs no collation-dependent range.
    return _source_rows(session, "starts_with(sha256, :prefix)", {"prefix": prefix})
