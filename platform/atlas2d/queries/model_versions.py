"""The model registry (``model_versions``) in SQL. Functions take ``session`` first and
never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, delete, func, insert, literal, select, text, update
from sqlalchemy.orm import Session, aliased

from atlas2d.db.models import ModelVersion, TrainingSet


@dataclass(frozen=True)
class ModelVersionRef:
    """One registered model version, with the name and hash of its training set.

    A plain dataclass (picklable): Dask hands it to the workers that load the model.

    Attributes:
        id: ``model_versions.id``. name, version: the ``NAME:VERSION`` reference.
        architecture: ``m3gnet`` or ``mace``. status: ``training``, ``ready`` or
            ``failed``; error: why it failed (None otherwise).
        training_set_id, training_set, training_set_hash: the set it was trained on.
        parent_id: the version it was fine-tuned from, None from scratch.
        hyperparameters: every training setting, defaults included.
        artifact_path: the model file, relative to ``$ATLAS2D_HOME/artifacts`` unless
            absolute; artifact_sha256: its hex digest (both None until ready).
        metrics: ``{split: {energy_mae_mev_per_atom, force_mae_mev_per_a, …}}`` and the
            run's ``epochs_run``, ``stopped_by``, ``train_seconds``.
        training_curve: one dict per epoch (units in the keys).
        environment: package versions, git commit, device, threads, seed, host, pid.
        started_at, finished_at: when the run started and ended (None while training).
    """

    id: int
    name: str
    version: int
    architecture: str
    status: str
    error: str | None
    training_set_id: int
    training_set: str
    training_set_hash: str
    parent_id: int | None
    hyperparameters: dict[str, Any]
    artifact_path: str | None
    artifact_sha256: str | None
    metrics: dict[str, Any]
    training_curve: list[dict[str, Any]]
    environment: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None

    @property
    def label(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"


_VERSIONS = select(
    ModelVersion.id,
    ModelVersion.name,
    ModelVersion.version,
    ModelVersion.architecture,
    ModelVersion.status,
    ModelVersion.error,
    ModelVersion.training_set_id,
    TrainingSet.name.label("training_set"),
    TrainingSet.content_hash.label("training_set_hash"),
    ModelVersion.parent_id,
    ModelVersion.hyperparameters,
    ModelVersion.artifact_path,
    ModelVersion.artifact_sha256,
    ModelVersion.metrics,
    ModelVersion.training_curve,
    ModelVersion.environment,
    ModelVersion.started_at,
    ModelVersion.finished_at,
).join(TrainingSet, TrainingSet.id == ModelVersion.training_set_id)
"""Every column of a version, with its training set's name and hash (as the ref's fields)."""


def _refs(session: Session, query: Executable) -> list[ModelVersionRef]:
    return [ModelVersionRef(**row._mapping) for row in session.execute(query)]


def find_version(session: Session, name: str, version: int | None) -> ModelVersionRef | None:
    """One version of ``name`` (any status), or with ``version`` None the latest ready one."""
    query = _VERSIONS.where(ModelVersion.name == name)
    if version is None:
        query = query.where(ModelVersion.status == "ready").order_by(ModelVersion.version.desc())
    else:
        query = query.where(ModelVersion.version == version)
    found = _refs(session, query.limit(1))
    return found[0] if found else None


def version_by_id(session: Session, model_version_id: int) -> ModelVersionRef:
    """A version by id (it must exist)."""
    (ref,) = _refs(session, _VERSIONS.where(ModelVersion.id == model_version_id))
    return ref


def versions_of(session: Session, name: str) -> list[ModelVersionRef]:
    """Every version of ``name``, newest first (for messages)."""
    query = _VERSIONS.where(ModelVersion.name == name)
    return _refs(session, query.order_by(ModelVersion.version.desc()))


def list_versions(session: Session, name: str | None = None) -> list[ModelVersionRef]:
    """All versions (of one name), by name and version."""
    query = _VERSIONS
    if name is not None:
        query = query.where(ModelVersion.name == name)
    return _refs(session, query.order_by(ModelVersion.name, ModelVersion.version))


def parent_chain(session: Session, model_version_id: int) -> list[ModelVersionRef]:
    """The version and its ancestors, child first."""
    chain = (
        select(ModelVersion.id, ModelVersion.parent_id, literal(0).label("depth"))
        .where(ModelVersion.id == model_version_id)
        .cte("chain", recursive=True)
    )
    parent = aliased(ModelVersion)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, chain.c.depth + 1).join(
            chain, parent.id == chain.c.parent_id
        )
    )
    query = _VERSIONS.join(chain, chain.c.id == ModelVersion.id)
    return _refs(session, query.order_by(chain.c.depth))


def insert_training_version(
    session: Session,
    name: str,
    architecture: str,
    training_set_id: int,
    parent_id: int | None,
    hyperparameters: dict[str, Any],
    environment: dict[str, Any],
) -> tuple[int, int]:
    """Register a run as ``training`` with the next version of its name.

    The name is locked for the transaction (advisory lock) so two runs starting at
    once get different versions. Returns (id, version).
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('model:' || :n))"), {"n": name})
    version = session.execute(
        select(func.coalesce(func.max(ModelVersion.version), 0) + 1).where(
            ModelVersion.name == name
        )
    ).scalar_one()
    new_id = session.execute(
        insert(ModelVersion)
        .values(
            name=name,
            version=version,
            architecture=architecture,
            training_set_id=training_set_id,
            parent_id=parent_id,
            hyperparameters=hyperparameters,
            environment=environment,
            status="training",
            metrics={},
            training_curve=[],
        )
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


def delete_unfinished_version(session: Session, model_version_id: int) -> None:
    """Delete a version that never became ready (``training`` or ``failed``: it has no
    artifact, no relaxation and no child; its predictions go with it)."""
    session.execute(
        delete(ModelVersion)
        .where(ModelVersion.id == model_version_id)
        .where(ModelVersion.status.in_(("training", "failed")))
    )
