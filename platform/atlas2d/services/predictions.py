"""Direct predictions of a model version on a training set's frames: stored in
``frame_predictions`` (re-runs predict only what is missing) and summarised as errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.metrics import direct_errors
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.mlff.forcefield import ForceField
from atlas2d.queries import frame_predictions as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.services import models as registry
from atlas2d.vocabulary import SPLITS

CHUNK_FRAMES = 512
"""Frames predicted and committed together: an interrupted run loses at most these."""


def predict_frames(
    sessions: sessionmaker[Session],
    model_version_id: int,
    force_field: ForceField,
    training_set_id: int,
    split: str,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Predict and store every frame of a split that has no prediction yet.

    Commits every :data:`CHUNK_FRAMES` frames. Returns the number of new predictions;
    ``progress(done, total)`` is called after each chunk.
    """
    with sessions.begin() as session:
        todo = queries.unpredicted_frame_ids(session, model_version_id, training_set_id, split)
    written = 0
    for start in range(0, len(todo), CHUNK_FRAMES):
        with sessions.begin() as session:
            frames = frames_by_id(session, todo[start : start + CHUNK_FRAMES])
            predictions = force_field.predict(
                [frame_atoms(frame) for frame in frames], batch_size=batch_size
            )
            written += queries.insert_predictions(
                session, model_version_id, [frame.frame_id for frame in frames], predictions
            )
        if progress is not None:
            progress(min(start + CHUNK_FRAMES, len(todo)), len(todo))
    return written


def split_errors(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> dict[str, Any]:
    """Errors of the stored predictions on a split (``analysis.metrics.direct_errors``)."""
    return direct_errors(
        queries.predictions_with_labels(session, model_version_id, training_set_id, split)
    )


@dataclass
class PredictionReport:
    """What ``atlas2d predict`` did and the errors on the split."""

    model: str
    training_set: str
    split: str
    new_predictions: int
    errors: dict[str, Any]


def predict_split(
    sessions: sessionmaker[Session],
    model_ref: str,
    training_set: str,
    split: str,
    artifacts_dir: Path,
    batch_size: int = 32,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PredictionReport:
    """Predict a training set's split with a ready model version and report the errors.

    Raises:
        NotFound: no such model (ready) or training set. InvalidInput: bad split.
        ArtifactChanged: the model file changed since training.
    """
    if split not in SPLITS:
        raise InvalidInput(f"Split {split!r} is not one of {', '.join(SPLITS)}.")
    with sessions.begin() as session:
        model = registry.resolve(session, model_ref)
        training_set_row = trainset_queries.training_set_row(session, training_set)
    if training_set_row is None:
        raise NotFound(f"No training set is named {training_set!r}; `atlas2d trainset list`.")
    force_field = registry.load_version(sessions, model, artifacts_dir, device)
    try:
        written = predict_frames(
            sessions, model.id, force_field, training_set_row.id, split, batch_size, progress
        )
    except ValueError as err:  # elements the model does not know
        raise InvalidInput(f"Model {model.label} on {training_set!r}: {err}") from err
    with sessions.begin() as session:
        errors = split_errors(session, model.id, training_set_row.id, split)
    return PredictionReport(model.label, training_set, split, written, errors)
