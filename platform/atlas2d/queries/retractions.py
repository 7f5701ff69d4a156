"""Retracted sources in SQL: marking a source retracted (and back), and what a stored
training set still holds of it (what a new set leaves out is part of its selection,
``queries.training_sets.retracted_runs``). Functions take ``session`` first and never
commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session


def retract(session: Session, source_id: int, reason: str) -> datetime | None:
    """Mark a source retracted now with ``reason``; return the time, or None when it
    already was (then nothing changes). Nothing is deleted."""
    return session.execute(
        text(
            "UPDATE sources SET retracted_at = now(), retraction_reason = :reason"
            " WHERE id = :id AND retracted_at IS NULL RETURNING retracted_at"
        ),
        {"id": source_id, "reason": reason},
    ).scalar_one_or_none()


def unretract(session: Session, source_id: int) -> bool:
    """Clear a source's retraction; False when it was not retracted (nothing changes)."""
    cleared = session.execute(
        text(
            "UPDATE sources SET retracted_at = NULL, retraction_reason = NULL"
            " WHERE id = :id AND retracted_at IS NOT NULL RETURNING id"
        ),
        {"id": source_id},
    ).scalar_one_or_none()
    return cleared is not None


@dataclass(frozen=True)
class RetractedContent:
    """What a stored training set holds of one retracted source.

    Attributes:
        relaxations: its relaxations in the set; frames: their selected frames;
        materials: their materials. train_frames, val_frames, test_frames: frames per split.
    """

    source_id: int
    path: str
    sha256: str
    reason: str
    retracted_at: datetime
    relaxations: int
    frames: int
    materials: int
    train_frames: int
    val_frames: int
    test_frames: int


def retracted_content(session: Session, training_set_id: int) -> list[RetractedContent]:
    """The retracted sources a stored training set holds frames of, with counts (by
    source id). Starts from the retracted sources' relaxations."""
    rows = session.execute(
        text(
            "SELECT s.id AS source_id, s.path, s.sha256, s.retraction_reason AS reason,"
            " s.retracted_at, count(*) AS relaxations,"
            " sum(cardinality(t.frame_ids)) AS frames,"
            " count(DISTINCT r.material_id) AS materials,"
            " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'train'), 0)"
            " AS train_frames,"
            " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'val'), 0)"
            " AS val_frames,"
            " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'test'), 0)"
            " AS test_frames"
            " FROM sources s JOIN relaxations r ON r.source_id = s.id"
            " JOIN training_set_relaxations t ON t.relaxation_id = r.id"
            " AND t.training_set_id = :id"
            " WHERE s.retracted_at IS NOT NULL"
            " GROUP BY s.id ORDER BY s.id"
        ),
        {"id": training_set_id},
    ).mappings()
    return [RetractedContent(**row) for row in rows]
