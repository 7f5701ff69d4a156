"""The ``frame_predictions`` table: a model's direct predictions on stored frames.
Functions take ``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Integer, Text, column, exists, select, table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from atlas2d.analysis.metrics import LabelledPrediction
from atlas2d.db.models import Frame, FramePrediction, Material, Relaxation
from atlas2d.mlff.forcefield import Predictions

TRAINING_SET_FRAMES = table(
    "training_set_frames",
    column("training_set_id", Integer),
    column("relaxation_id", Integer),
    column("frame_id", BigInteger),
    column("split", Text),
)
"""The view listing a training set's frames one per row (``TrainingSetRelaxation``)."""


def unpredicted_frame_ids(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> list[int]:
    """Frames of a split the model has no stored prediction for, by id."""
    t = TRAINING_SET_FRAMES.c
    predicted = exists().where(
        FramePrediction.model_version_id == model_version_id,
        FramePrediction.frame_id == t.frame_id,
    )
    query = (
        select(t.frame_id)
        .where(t.training_set_id == training_set_id, t.split == split, ~predicted)
        .order_by(t.frame_id)
    )
    return list(session.execute(query).scalars())


def insert_predictions(
    session: Session, model_version_id: int, frame_ids: Sequence[int], predictions: Predictions
) -> int:
    """Store a model's predictions for frames (in the order of ``predictions``); those
    already stored are left as they are. Returns rows written."""
    if not frame_ids:
        return 0
    rows = [
        {
            "model_version_id": model_version_id,
            "frame_id": frame_id,
            "n_sites": len(predictions.forces[i]),
            "energy": float(predictions.energies[i]),
            "forces": predictions.forces[i],
            "stress": predictions.stresses[i],
        }
        for i, frame_id in enumerate(frame_ids)
    ]
    result = session.execute(
        pg_insert(FramePrediction).on_conflict_do_nothing().returning(FramePrediction.frame_id),
        rows,
    )
    return len(result.all())


def predictions_with_labels(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> list[LabelledPrediction]:
    """Every stored prediction of a split next to the frame's labels, by frame id."""
    t = TRAINING_SET_FRAMES.c
    rows = session.execute(
        select(
            Frame.n_sites,
            Material.dimensionality,
            Frame.energy,
            FramePrediction.energy.label("predicted_energy"),
            Frame.forces,
            FramePrediction.forces.label("predicted_forces"),
            Frame.stress,
            FramePrediction.stress.label("predicted_stress"),
        )
        .select_from(TRAINING_SET_FRAMES)
        .join(
            FramePrediction,
            (FramePrediction.frame_id == t.frame_id)
            & (FramePrediction.model_version_id == model_version_id),
        )
        .join(Frame, Frame.id == t.frame_id)
        .join(Relaxation, Relaxation.id == Frame.relaxation_id)
        .join(Material, Material.id == Relaxation.material_id)
        .where(t.training_set_id == training_set_id, t.split == split)
        .order_by(t.frame_id)
    )
    return [LabelledPrediction(**row._mapping) for row in rows]
