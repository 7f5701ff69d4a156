"""What ``atlas2d audit model`` reads besides the lineage (``queries.provenance``): the
source files behind training sets, a version's stored predictions and what was made
downstream of it (the activities: ``queries.activities``). Functions take ``session``
first and never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from atlas2d.db.models import FramePrediction


@dataclass(frozen=True)
class SourceContribution:
    """One source file's frames in a training set.

    Attributes:
        source_id: ``sources.id``; None for frames whose relaxation has no source row
            (deleted since the set was made, or made without a file).
        path, sha256, format, parser, versions: the file and who parsed it (None when
            ``source_id`` is None).
        frames: frames of the set taken from the file's relaxations.
        retracted_at, retraction_reason: set when the file was retracted.
    """

    source_id: int | None
    path: str | None
    sha256: str | None
    format: str | None
    parser: str | None
    versions: dict[str, Any] | None
    frames: int
    retracted_at: datetime | None
    retraction_reason: str | None


def training_set_sources(
    session: Session, training_set_ids: Sequence[int]
) -> dict[int, list[SourceContribution]]:
    """{training set id: the source files its frames come from, most frames first}.

    One aggregate over ``training_set_relaxations`` (a row per relaxation, its frames
    counted by the length of ``frame_ids``), so it costs the sets' relaxations, not
    their frames."""
    if not training_set_ids:
        return {}
    rows = session.execute(
        text(
            "SELECT t.training_set_id, s.id AS source_id, s.path, s.sha256, s.format,"
            " s.parser, s.versions, s.retracted_at, s.retraction_reason,"
            " sum(cardinality(t.frame_ids))::bigint AS frames"
            " FROM training_set_relaxations t"
            " LEFT JOIN relaxations r ON r.id = t.relaxation_id"
            " LEFT JOIN sources s ON s.id = r.source_id"
            " WHERE t.training_set_id IN :ids"
            " GROUP BY t.training_set_id, s.id"
            " ORDER BY t.training_set_id, frames DESC, s.id"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": list(training_set_ids)},
    ).mappings()
    found: dict[int, list[SourceContribution]] = defaultdict(list)
    for row in rows:
        fields = dict(row)
        found[fields.pop("training_set_id")].append(SourceContribution(**fields))
    return dict(found)


def predicted_frame_ids(session: Session, model_version_id: int) -> np.ndarray:
    """Ids of the frames a version has stored predictions for, ascending, (P,) int64."""
    ids = session.execute(
        select(FramePrediction.frame_id)
        .where(FramePrediction.model_version_id == model_version_id)
        .order_by(FramePrediction.frame_id)
    ).scalars()
    return np.fromiter(ids, dtype=np.int64)


@dataclass(frozen=True)
class StoredPrediction:
    """A version's stored direct prediction on one frame.

    Attributes:
        energy: total, eV. forces: (n_sites, 3), eV/Å.
    """

    frame_id: int
    energy: float
    forces: np.ndarray


def stored_predictions(
    session: Session, model_version_id: int, frame_ids: Sequence[int]
) -> list[StoredPrediction]:
    """A version's stored predictions on ``frame_ids`` (those it has), by frame id."""
    rows = session.execute(
        select(FramePrediction.frame_id, FramePrediction.energy, FramePrediction.forces)
        .where(
            FramePrediction.model_version_id == model_version_id,
            FramePrediction.frame_id.in_([int(i) for i in frame_ids]),
        )
        .order_by(FramePrediction.frame_id)
    )
    return [StoredPrediction(*row) for row in rows]


DOWNSTREAM_COUNTS = """
SELECT
    (SELECT count(*) FROM frame_predictions WHERE model_version_id = :id) AS frame_predictions,
    (SELECT count(*) FROM relaxations WHERE model_version_id = :id) AS ml_relaxations,
    (SELECT count(*) FROM evaluations WHERE model_version_id = :id) AS evaluations,
    (SELECT count(*) FROM hull_runs WHERE model_version_id = :id) AS hull_runs,
    (SELECT count(*) FROM stability WHERE model_version_id = :id) AS stability_rows,
    (SELECT count(*) FROM model_versions WHERE parent_id = :id) AS fine_tuned_versions,
    (SELECT count(*) FROM al_campaigns WHERE model_version_id = :id) AS campaigns_started,
    (SELECT count(*) FROM al_iterations WHERE screening_model_id = :id) AS iterations_screened,
    (SELECT count(*) FROM al_iterations WHERE produced_model_id = :id) AS iterations_produced
"""
"""What was made with (or made) a version, one count per kind; the keys name them."""

DOWNSTREAM_KEYS = {
    "ml_relaxations": "SELECT m.key || '#' || r.id FROM relaxations r"
    " JOIN materials m ON m.id = r.material_id WHERE r.model_version_id = :id"
    " ORDER BY m.key, r.id",
    "evaluations": "SELECT 'evaluation ' || e.id || ' (' || e.kind"
    " || coalesce(', ' || t.name || coalesce('/' || e.split, ''), '') || ')'"
    " FROM evaluations e LEFT JOIN training_sets t ON t.id = e.training_set_id"
    " WHERE e.model_version_id = :id ORDER BY e.id",
    "hull_runs": "SELECT 'hull run ' || id FROM hull_runs WHERE model_version_id = :id ORDER BY id",
    "stability_rows": "SELECT m.key FROM stability s JOIN materials m ON m.id = s.material_id"
    " WHERE s.model_version_id = :id ORDER BY m.key",
    "fine_tuned_versions": "SELECT name || ':' || version FROM model_versions"
    " WHERE parent_id = :id ORDER BY name, version",
    "campaigns_started": "SELECT name FROM al_campaigns WHERE model_version_id = :id ORDER BY name",
    "iterations_screened": "SELECT c.name || '#' || i.index FROM al_iterations i"
    " JOIN al_campaigns c ON c.id = i.campaign_id WHERE i.screening_model_id = :id"
    " ORDER BY c.name, i.index",
    "iterations_produced": "SELECT c.name || '#' || i.index FROM al_iterations i"
    " JOIN al_campaigns c ON c.id = i.campaign_id WHERE i.produced_model_id = :id"
    " ORDER BY c.name, i.index",
}
"""Keys per kind of :data:`DOWNSTREAM_COUNTS` (frame predictions are only counted):
``MATERIAL_KEY#RELAXATION_ID`` for ML relaxations, material keys for stability rows,
``NAME:VERSION`` for fine-tuned versions, ``CAMPAIGN#ITERATION`` for iterations."""


def downstream_counts(session: Session, model_version_id: int) -> dict[str, int]:
    """{kind: rows} made with a version (see :data:`DOWNSTREAM_COUNTS`)."""
    row = session.execute(text(DOWNSTREAM_COUNTS), {"id": model_version_id}).mappings().one()
    return {kind: int(n) for kind, n in row.items()}


def downstream_keys(session: Session, model_version_id: int) -> dict[str, list[str]]:
    """{kind: keys} of what was made with a version (see :data:`DOWNSTREAM_KEYS`)."""
    return {
        kind: list(session.execute(text(sql), {"id": model_version_id}).scalars())
        for kind, sql in DOWNSTREAM_KEYS.items()
    }
