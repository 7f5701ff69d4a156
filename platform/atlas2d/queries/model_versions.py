"""The model registry and stored predictions in SQL. Functions take ``session`` first
and never commit."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from atlas2d.db.models import ModelVersion, TrainingSet

COLUMNS = [c.name for c in ModelVersion.__table__.columns]


def _as_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def _version_select() -> Any:
    return select(
        ModelVersion.__table__,
        TrainingSet.name.label("training_set"),
        TrainingSet.content_hash.label("training_set_hash"),
    ).join(TrainingSet, TrainingSet.id == ModelVersion.training_set_id)


def find_version(session: Session, name: str, version: int | None) -> dict[str, Any] | None:
    """One version of ``name`` (any status), or with ``version`` None the latest ready one."""
    query = _version_select().where(ModelVersion.name == name)
    if version is None:
        query = query.where(ModelVersion.status == "ready").order_by(ModelVersion.version.desc())
    else:
        query = query.where(ModelVersion.version == version)
    row = session.execute(query.limit(1)).first()
    return None if row is None else _as_dict(row)


def version_by_id(session: Session, model_version_id: int) -> dict[str, Any]:
    row = session.execute(_version_select().where(ModelVersion.id == model_version_id)).one()
    return _as_dict(row)


def versions_of(session: Session, name: str) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first (for messages)."""
    query = _version_select().where(ModelVersion.name == name)
    return [_as_dict(r) for r in session.execute(query.order_by(ModelVersion.version.desc()))]


def list_versions(session: Session, name: str | None = None) -> list[dict[str, Any]]:
    """All versions (of one name), by name and version."""
    query = _version_select()
    if name is not None:
        query = query.where(ModelVersion.name == name)
    query = query.order_by(ModelVersion.name, ModelVersion.version)
    return [_as_dict(r) for r in session.execute(query)]


def insert_training_version(session: Session, row: dict[str, Any]) -> tuple[int, int]:
    """Register a run as ``training`` with the next version of its name.

    The name is locked for the transaction (advisory lock) so two runs starting at
    once get different versions. Returns (id, version).
    """
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('model:' || :n))"), {"n": row["name"]}
    )
    version = session.execute(
        select(func.coalesce(func.max(ModelVersion.version), 0) + 1).where(
            ModelVersion.name == row["name"]
        )
    ).scalar_one()
    new_id = session.execute(
        insert(ModelVersion)
        .values(**row, version=version, status="training", metrics={}, training_curve=[])
        .returning(ModelVersion.id)
    ).scalar_one()
    return new_id, version


def finish_version(session: Session, model_version_id: int, **values: Any) -> None:
    """Set the outcome of a run (status, artifact, metrics, error) and its end time."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == model_version_id)
        .values(**values, finished_at=func.now())
    )


def parent_chain(session: Session, model_version_id: int) -> list[dict[str, Any]]:
    """The version and its ancestors, child first."""
    rows = session.execute(
        text(
            """
            WITH RECURSIVE chain(id, parent_id, depth) AS (
                SELECT id, parent_id, 0 FROM model_versions WHERE id = :id
                UNION ALL
                SELECT m.id, m.parent_id, c.depth + 1
                FROM model_versions m JOIN chain c ON m.id = c.parent_id
            )
            SELECT m.id, m.name, m.version, m.architecture, m.status, t.name AS training_set
            FROM chain c JOIN model_versions m ON m.id = c.id
            JOIN training_sets t ON t.id = m.training_set_id
            ORDER BY c.depth
            """
        ),
        {"id": model_version_id},
    )
    return [_as_dict(r) for r in rows]


# --- predictions ----------------------------------------------------------------------


def as_float_matrix(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)
