"""Provenance in SQL: a model's lineage, the retracted sources behind training sets and
models (``tainted``). Functions take ``session`` first and never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class LineageStep:
    """One version on a model's parent chain (``model_lineage``).

    Attributes:
        depth: 0 for the model itself, 1 for its parent, … up to the root.
        model_version_id, model: the ancestor (``NAME:VERSION``).
        training_set_id, training_set, training_set_hash: what it was trained on.
        artifact_path, artifact_sha256: its registered model file (None until ready).
        activity_id: the activity that trained it (None before the activity log).
    """

    depth: int
    model_version_id: int
    model: str
    architecture: str
    status: str
    training_set_id: int
    training_set: str
    training_set_hash: str
    artifact_path: str | None
    artifact_sha256: str | None
    activity_id: int | None


def lineage(session: Session, model_version_id: int) -> list[LineageStep]:
    """The model and its ancestors, model first, root last."""
    rows = session.execute(
        text(
            "SELECT depth, ancestor_id AS model_version_id, ancestor AS model, architecture,"
            " status, training_set_id, training_set, training_set_hash, artifact_path,"
            " artifact_sha256, activity_id FROM model_lineage"
            " WHERE model_version_id = :model ORDER BY depth"
        ),
        {"model": model_version_id},
    ).mappings()
    return [LineageStep(**row) for row in rows]


@dataclass(frozen=True)
class RetractedSource:
    """A retracted source file and why."""

    source_id: int
    path: str
    sha256: str
    reason: str


def retracted_sources_by_training_set(
    session: Session, training_set_ids: Iterable[int] | None = None
) -> dict[int, list[RetractedSource]]:
    """{training set id: retracted sources of its frames}, for the given sets (all when
    None); sets without retracted content are absent. Starts from the (few) retracted
    sources, so it costs their relaxations, not the sets' size."""
    query = """
        SELECT DISTINCT tsr.training_set_id, s.id AS source_id, s.path, s.sha256,
               s.retraction_reason AS reason
        FROM sources s
        JOIN relaxations r ON r.source_id = s.id
        JOIN training_set_relaxations tsr ON tsr.relaxation_id = r.id
        WHERE s.retracted_at IS NOT NULL
    """
    params: dict[str, object] = {}
    statement = text(query + " ORDER BY tsr.training_set_id, s.id")
    if training_set_ids is not None:
        statement = text(
            query + " AND tsr.training_set_id IN :ids ORDER BY tsr.training_set_id, s.id"
        ).bindparams(bindparam("ids", expanding=True))
        params["ids"] = list(training_set_ids)
        if not params["ids"]:
            return {}
    found: dict[int, list[RetractedSource]] = defaultdict(list)
    for row in session.execute(statement, params).mappings():
        found[row["training_set_id"]].append(
            RetractedSource(row["source_id"], row["path"], row["sha256"], row["reason"])
        )
    return dict(found)


def tainted_models(session: Session) -> dict[int, list[RetractedSource]]:
    """{model version id: retracted sources in its training set or an ancestor's}, for
    every tainted version (descendants of a tainted version are tainted too)."""
    by_set = retracted_sources_by_training_set(session)
    if not by_set:
        return {}
    rows = session.execute(
        text(
            "SELECT model_version_id, training_set_id FROM model_lineage"
            " WHERE training_set_id IN :sets ORDER BY model_version_id, depth"
        ).bindparams(bindparam("sets", expanding=True)),
        {"sets": list(by_set)},
    )
    tainted: dict[int, list[RetractedSource]] = defaultdict(list)
    for model_version_id, training_set_id in rows:
        for source in by_set[training_set_id]:
            if source not in tainted[model_version_id]:
                tainted[model_version_id].append(source)
    return dict(tainted)
