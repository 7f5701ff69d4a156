"""The ``frame_predictions`` table: a model's direct predictions on stored frames.
Functions take ``session`` first and never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from atlas2d.db.models import FramePrediction


def unpredicted_frame_ids(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> list[int]:
    """Frames of a split the model has no stored prediction for, by id."""
    rows = session.execute(
        text(
            "SELECT t.frame_id FROM training_set_frames t"
            " WHERE t.training_set_id = :ts AND t.split = :split AND NOT EXISTS ("
            "   SELECT 1 FROM frame_predictions p"
            "   WHERE p.model_version_id = :mv AND p.frame_id = t.frame_id)"
            " ORDER BY t.frame_id"
        ),
        {"ts": training_set_id, "split": split, "mv": model_version_id},
    )
    return list(rows.scalars())


def insert_predictions(session: Session, rows: list[dict[str, Any]]) -> int:
    """Store predictions; rows already stored are left as they are. Returns rows written."""
    if not rows:
        return 0
    result = session.execute(
        pg_insert(FramePrediction).on_conflict_do_nothing().returning(FramePrediction.frame_id),
        rows,
    )
    return len(result.all())


def predictions_with_labels(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> list[Any]:
    """Every stored prediction of a split, next to the frame's labels."""
    return list(
        session.execute(
            text(
                "SELECT t.frame_id, f.n_sites, f.energy, f.forces, f.stress, m.dimensionality,"
                " p.energy AS predicted_energy, p.forces AS predicted_forces,"
                " p.stress AS predicted_stress"
                " FROM training_set_frames t"
                " JOIN frame_predictions p ON p.frame_id = t.frame_id AND p.model_version_id = :mv"
                " JOIN frames f ON f.id = t.frame_id"
                " JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id"
                " WHERE t.training_set_id = :ts AND t.split = :split ORDER BY t.frame_id"
            ),
            {"mv": model_version_id, "ts": training_set_id, "split": split},
        )
    )
