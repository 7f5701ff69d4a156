"""What a W3C PROV document of a model's lineage is made of, read from SQL: the model
and its ancestors (``model_lineage``), their training sets, the source files behind
those sets, the model's evaluations and the activities that made them. Functions take
``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from atlas2d.db.models import Evaluation, Source, TrainingSet


@dataclass(frozen=True)
class LineageModel:
    """One version on the audited model's parent chain.

    Attributes:
        depth: 0 for the audited model, 1 for its parent, … up to the root.
        label: ``NAME:VERSION``; parent_id: the version it was fine-tuned from.
        hyperparameters: every training setting; metrics: ``{split: {…_mev_per_atom,
            …}}`` and run figures (units in the keys); environment: package versions,
            host, device, seed of the run.
        artifact_path, artifact_sha256: the model file (None unless ready).
        started_at, finished_at: the training run (finished_at None while training).
        activity_id: the logged activity that trained it (None before the log).
    """

    depth: int
    id: int
    label: str
    architecture: str
    status: str
    error: str | None
    parent_id: int | None
    training_set_id: int
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    environment: dict[str, Any]
    artifact_path: str | None
    artifact_sha256: str | None
    started_at: datetime
    finished_at: datetime | None
    activity_id: int | None


def lineage_models(session: Session, model_version_id: int) -> list[LineageModel]:
    """The model and its ancestors, model first, root last."""
    rows = session.execute(
        text(
            "SELECT l.depth, m.id, l.ancestor AS label, m.architecture, m.status, m.error,"
            " m.parent_id, m.training_set_id, m.hyperparameters, m.metrics, m.environment,"
            " m.artifact_path, m.artifact_sha256, m.started_at, m.finished_at, m.activity_id"
            " FROM model_lineage l JOIN model_versions m ON m.id = l.ancestor_id"
            " WHERE l.model_version_id = :model ORDER BY l.depth"
        ),
        {"model": model_version_id},
    ).mappings()
    return [LineageModel(**row) for row in rows]


@dataclass(frozen=True)
class TrainingSetRecord:
    """A training set as recorded when it was made.

    Attributes:
        parameters: the rule's parameters (ecut in eV/atom, filters, split, seed, …).
        split_counts: ``{split: {"frames": n, "materials": m}}``; filter_counts:
            ``{filter: {"frames": n, "materials": m}}`` removed by each outlier filter.
        content_hash: sha256 of the selected content.
        activity_id: the logged activity that made it (None before the log).
    """

    id: int
    name: str
    rule: str
    parameters: dict[str, Any]
    split_counts: dict[str, Any]
    filter_counts: dict[str, Any]
    n_frames: int
    n_materials: int
    content_hash: str
    created_at: datetime
    activity_id: int | None


def training_sets(session: Session, ids: Collection[int]) -> list[TrainingSetRecord]:
    """The training sets with these ids, by id."""
    rows = session.execute(
        select(
            TrainingSet.id,
            TrainingSet.name,
            TrainingSet.rule,
            TrainingSet.parameters,
            TrainingSet.split_counts,
            TrainingSet.filter_counts,
            TrainingSet.n_frames,
            TrainingSet.n_materials,
            TrainingSet.content_hash,
            TrainingSet.created_at,
            TrainingSet.activity_id,
        )
        .where(TrainingSet.id.in_(list(ids)))
        .order_by(TrainingSet.id)
    ).mappings()
    return [TrainingSetRecord(**row) for row in rows]


@dataclass(frozen=True)
class Contribution:
    """What one source file gave one training set: relaxations and selected frames."""

    training_set_id: int
    source_id: int
    n_relaxations: int
    n_frames: int


def contributions(session: Session, training_set_ids: Collection[int]) -> list[Contribution]:
    """Per (training set, source file): the relaxations and frames the set took from the
    file, by set and source."""
    if not training_set_ids:
        return []
    rows = session.execute(
        text(
            "SELECT tsr.training_set_id, r.source_id, count(*) AS n_relaxations,"
            " sum(cardinality(tsr.frame_ids))::bigint AS n_frames"
            " FROM training_set_relaxations tsr JOIN relaxations r ON r.id = tsr.relaxation_id"
            " WHERE tsr.training_set_id IN :sets AND r.source_id IS NOT NULL"
            " GROUP BY tsr.training_set_id, r.source_id ORDER BY tsr.training_set_id, r.source_id"
        ).bindparams(bindparam("sets", expanding=True)),
        {"sets": list(training_set_ids)},
    ).mappings()
    return [Contribution(**row) for row in rows]


@dataclass(frozen=True)
class SourceRecord:
    """An ingested file.

    Attributes:
        versions: package versions of the parser (atlas2d, ase, …).
        n_materials, n_relaxations, n_frames: what the ingest stored from it.
        frames_in_training_sets: distinct frames of this file in the given sets.
        retracted_at, retraction_reason: set when the file was declared wrong.
        activity_id: the logged activity that ingested it (None before the log).
    """

    id: int
    path: str
    format: str
    sha256: str
    parser: str
    versions: dict[str, Any]
    n_materials: int
    n_relaxations: int
    n_frames: int
    frames_in_training_sets: int
    created_at: datetime
    retracted_at: datetime | None
    retraction_reason: str | None
    activity_id: int | None


def sources(
    session: Session, ids: Collection[int], training_set_ids: Collection[int]
) -> list[SourceRecord]:
    """The source files with these ids, by id, with the distinct frames each gave the
    training sets ``training_set_ids`` (a frame in two of them counts once)."""
    if not ids:
        return []
    frames = session.execute(
        text(
            "SELECT r.source_id, count(DISTINCT frame_id) FROM training_set_relaxations tsr"
            " JOIN relaxations r ON r.id = tsr.relaxation_id"
            " CROSS JOIN LATERAL unnest(tsr.frame_ids) AS frame_id"
            " WHERE tsr.training_set_id IN :sets AND r.source_id IN :sources"
            " GROUP BY r.source_id"
        ).bindparams(bindparam("sets", expanding=True), bindparam("sources", expanding=True)),
        {"sets": list(training_set_ids) or [-1], "sources": list(ids)},
    )
    frames_by_source = {source_id: int(n) for source_id, n in frames}
    rows = session.execute(
        select(
            Source.id,
            Source.path,
            Source.format,
            Source.sha256,
            Source.parser,
            Source.versions,
            Source.n_materials,
            Source.n_relaxations,
            Source.n_frames,
            Source.created_at,
            Source.retracted_at,
            Source.retraction_reason,
            Source.activity_id,
        )
        .where(Source.id.in_(list(ids)))
        .order_by(Source.id)
    ).mappings()
    return [
        SourceRecord(**row, frames_in_training_sets=frames_by_source.get(row["id"], 0))
        for row in rows
    ]


@dataclass(frozen=True)
class EvaluationRecord:
    """A stored evaluation of a model version.

    Attributes:
        kind: ``direct`` or ``relaxation``; training_set, split: the materials evaluated
            (None when not a training-set split).
        metrics: overall figures, units in the keys; parameters: what was evaluated.
        leakage, leaked_materials, ancestor_val_materials: the leakage guard's counts.
        activity_id: the logged activity that evaluated (None before the log).
    """

    id: int
    kind: str
    training_set: str | None
    split: str | None
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    leakage: bool
    leaked_materials: int
    ancestor_val_materials: int
    created_at: datetime
    activity_id: int | None


def evaluations_of(session: Session, model_version_id: int) -> list[EvaluationRecord]:
    """The evaluations of one model version, oldest first."""
    rows = session.execute(
        select(
            Evaluation.id,
            Evaluation.kind,
            TrainingSet.name.label("training_set"),
            Evaluation.split,
            Evaluation.metrics,
            Evaluation.parameters,
            Evaluation.leakage,
            Evaluation.leaked_materials,
            Evaluation.ancestor_val_materials,
            Evaluation.created_at,
            Evaluation.activity_id,
        )
        .outerjoin(TrainingSet, TrainingSet.id == Evaluation.training_set_id)
        .where(Evaluation.model_version_id == model_version_id)
        .order_by(Evaluation.created_at, Evaluation.id)
    ).mappings()
    return [EvaluationRecord(**row) for row in rows]
