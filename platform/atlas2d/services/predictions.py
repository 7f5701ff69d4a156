"""Direct predictions of a model version on a training set's frames: stored in
``frame_predictions`` (re-runs predict only what is missing) and summarised as errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.metrics import LabelledPrediction, direct_errors
from atlas2d.analysis.splits import SPLIT_NAMES
from atlas2d.db.types import vec3_from_bytes
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.mlff.forcefield import ForceField
from atlas2d.queries import model_versions as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.services import models as registry

CHUNK_FRAMES = 512
"""Frames predicted and committed together: an interrupted run loses at most these."""


def frame_atoms(row: Any) -> Atoms:
    """The structure of a frame row (species, cell, positions), flagged 3D periodic."""
    return Atoms(
        numbers=np.asarray(row.species, dtype=np.int64),
        positions=vec3_from_bytes(row.positions),
        cell=np.asarray(row.cell, dtype=np.float64),
        pbc=True,
    )


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
            rows = queries.frames_by_id(session, todo[start : start + CHUNK_FRAMES])
            predictions = force_field.predict([frame_atoms(r) for r in rows], batch_size=batch_size)
            written += queries.insert_predictions(
                session,
                [
                    {
                        "model_version_id": model_version_id,
                        "frame_id": row.frame_id,
                        "n_sites": row.n_sites,
                        "energy": float(predictions.energies[i]),
                        "forces": predictions.forces[i],
                        "stress": predictions.stresses[i],
                    }
                    for i, row in enumerate(rows)
                ],
            )
        if progress is not None:
            progress(min(start + CHUNK_FRAMES, len(todo)), len(todo))
    return written


def split_errors(
    session: Session, model_version_id: int, training_set_id: int, split: str
) -> dict[str, Any]:
    """Errors of the stored predictions on a split (``analysis.metrics.direct_errors``)."""
    rows = queries.predictions_with_labels(session, model_version_id, training_set_id, split)
    return direct_errors(
        [
            LabelledPrediction(
                n_sites=r.n_sites,
                dimensionality=r.dimensionality,
                energy=r.energy,
                predicted_energy=r.predicted_energy,
                forces=vec3_from_bytes(r.forces),
                predicted_forces=vec3_from_bytes(r.predicted_forces),
                stress=queries.as_float_matrix(r.stress),
                predicted_stress=queries.as_float_matrix(r.predicted_stress),
            )
            for r in rows
        ]
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
    if split not in SPLIT_NAMES:
        raise InvalidInput(f"Split {split!r} is not one of {', '.join(SPLIT_NAMES)}.")
    with sessions.begin() as session:
        row = registry.resolve(session, model_ref)
        training_set_row = trainset_queries.training_set_row(session, training_set)
    if training_set_row is None:
        raise NotFound(f"No training set is named {training_set!r}; `atlas2d trainset list`.")
    force_field = registry.load_from_row(row, artifacts_dir, device)
    try:
        written = predict_frames(
            sessions, row["id"], force_field, training_set_row["id"], split, batch_size, progress
        )
    except ValueError as err:  # elements the model does not know
        raise InvalidInput(f"Model {registry.label(row)} on {training_set!r}: {err}") from err
    with sessions.begin() as session:
        errors = split_errors(session, row["id"], training_set_row["id"], split)
    return PredictionReport(registry.label(row), training_set, split, written, errors)
