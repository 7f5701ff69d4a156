"""What the reference labeller already stored. Functions take ``session`` first and never
commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session


def labelled_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The labelling request keys (``relaxations.info->>'label_key'``) already stored."""
    if not keys:
        return set()
    rows = session.execute(
        text(
            "SELECT r.info->>'label_key' FROM relaxations r"
            " JOIN sources s ON s.id = r.source_id"
            " WHERE s.format = 'labeller' AND r.info->>'label_key' = ANY(:keys)"
        ),
        {"keys": list(keys)},
    )
    return set(rows.scalars())
