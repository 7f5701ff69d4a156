"""A model's lineage as a W3C PROV document (PROV-JSON through the ``prov`` package).

The document holds, for the model and every ancestor on its parent chain:

* entities: each model version (``atlas2d:model/NAME:VERSION``), its model file
  (``atlas2d:artifact/<sha256>``), its training set (``atlas2d:trainingset/NAME``), the
  source files that gave frames to those sets (``atlas2d:source/<sha256>``), and the
  audited model's evaluations (``atlas2d:evaluation/<id>``);
* activities: the ingest of each source, the creation of each set, the training of
  each version, each evaluation. A row made by a logged command points at its activity
  (``atlas2d:activity/<id>``, shared by every row that command made, with the log's
  times, command and arguments); a row made before the log gets an activity of its own
  (``atlas2d:ingest/<source id>``, ``atlas2d:trainset-create/<set id>``,
  ``atlas2d:train/<model version id>``, ``atlas2d:evaluate/<evaluation id>``) timed
  from the row;
* agents: the OS user who ran each activity (``atlas2d:user/<name>``, ``unknown``
  before the log), a prov:Person, and atlas2d at the version that ran it
  (``atlas2d:software/atlas2d-<version>``), a prov:SoftwareAgent;
* relations: ingest and set creation ``used`` the source files; a set
  ``wasGeneratedBy`` its creation and ``wasDerivedFrom`` its files; training ``used``
  the set (and the parent version of a fine-tune); a version and its file
  ``wasGeneratedBy`` the training, the version ``wasDerivedFrom`` its set and its
  parent; an evaluation ``used`` the version and its result ``wasGeneratedBy`` it;
  every activity ``wasAssociatedWith`` its user and its atlas2d.

Custom attributes are ``atlas2d:``-prefixed with units in their names; dicts travel as
JSON strings (PROV attribute values are strings, numbers, booleans or times).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from prov.constants import PROV, PROV_LABEL, PROV_TYPE
from prov.identifier import Identifier, QualifiedName
from prov.model import ProvDocument
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.queries import prov as queries
from atlas2d.queries.activities import ActivityRecord, activities_by_ids
from atlas2d.queries.prov import (
    Contribution,
    EvaluationRecord,
    LineageModel,
    SourceRecord,
    TrainingSetRecord,
)
from atlas2d.services import models as registry

NAMESPACE_PREFIX = "atlas2d"
NAMESPACE_URI = "https://atlas2d.org/ns#"
"""Identifies atlas2d's records and attributes; not a page to fetch."""

UNKNOWN = "unknown"
"""The user (and atlas2d version) of a row made before the activity log."""

PERSON = PROV["Person"]
SOFTWARE_AGENT = PROV["SoftwareAgent"]

Attributes = dict[str | Identifier, Any]
"""A PROV record's attributes: qualified name → string, number, boolean or time."""


@dataclass(frozen=True)
class Role:
    """What an activity does to the lineage, and how one made before the log is named.

    Attributes:
        slug: the synthetic activity id's path (``atlas2d:<slug>/<row id>``).
        prov_type: the activity's ``prov:type`` in the atlas2d namespace.
        description: what it did, for ``prov:label``.
    """

    slug: str
    prov_type: str
    description: str


INGEST = Role("ingest", "Ingest", "ingest")
TRAINSET_CREATE = Role("trainset-create", "TrainingSetCreation", "training-set creation")
TRAIN = Role("train", "Training", "training")
EVALUATE = Role("evaluate", "EvaluationRun", "evaluation")


@dataclass(frozen=True)
class Lineage:
    """Everything the document shows, read in one transaction."""

    models: list[LineageModel]
    training_sets: list[TrainingSetRecord]
    contributions: list[Contribution]
    sources: list[SourceRecord]
    evaluations: list[EvaluationRecord]
    activities: dict[int, ActivityRecord]


def lineage_document(sessions: sessionmaker[Session], model_ref: str) -> ProvDocument:
    """The PROV document of a model version's lineage (see the module docstring).

    Args:
        model_ref: ``NAME:VERSION``, or ``NAME`` for its latest ready version.

    Raises:
        NotFound: no such model or version.
        InvalidInput: the reference is malformed.
    """
    with sessions.begin() as session:
        model = registry.resolve(session, model_ref, require_ready=False)
        lineage = read_lineage(session, model.id)
    return build_document(lineage)


def lineage_json(sessions: sessionmaker[Session], model_ref: str) -> str:
    """``lineage_document`` serialised as PROV-JSON, indented by 2."""
    return str(lineage_document(sessions, model_ref).serialize(format="json", indent=2))


def read_lineage(session: Session, model_version_id: int) -> Lineage:
    """The rows behind a model version's lineage document."""
    models = queries.lineage_models(session, model_version_id)
    set_ids = sorted({model.training_set_id for model in models})
    contributions = queries.contributions(session, set_ids)
    source_ids = sorted({c.source_id for c in contributions})
    training_sets = queries.training_sets(session, set_ids)
    sources = queries.sources(session, source_ids, set_ids)
    evaluations = queries.evaluations_of(session, model_version_id)
    activity_ids = {
        row.activity_id
        for rows in (models, training_sets, sources, evaluations)
        for row in rows
        if row.activity_id is not None
    }
    return Lineage(
        models=models,
        training_sets=training_sets,
        contributions=contributions,
        sources=sources,
        evaluations=evaluations,
        activities=activities_by_ids(session, activity_ids),
    )


def build_document(lineage: Lineage) -> ProvDocument:
    """The PROV document of ``lineage`` (pure: no database)."""
    graph = _Graph(lineage.activities)
    source_entities = {source.id: graph.source(source) for source in lineage.sources}
    set_entities = {}
    for training_set in lineage.training_sets:
        set_entities[training_set.id] = graph.training_set(
            training_set,
            [
                (source_entities[c.source_id], c)
                for c in lineage.contributions
                if c.training_set_id == training_set.id
            ],
        )
    model_entities: dict[int, QualifiedName] = {}
    # Root first, so that a fine-tune finds its parent's entity.
    for model in sorted(lineage.models, key=lambda m: -m.depth):
        parent = model_entities.get(model.parent_id) if model.parent_id is not None else None
        model_entities[model.id] = graph.model(model, set_entities[model.training_set_id], parent)
    audited = next(model for model in lineage.models if model.depth == 0)
    for evaluation in lineage.evaluations:
        graph.evaluation(evaluation, model_entities[audited.id])
    return graph.document


class _Graph:
    """A PROV document under construction: adds each record and relation once."""

    def __init__(self, activities: dict[int, ActivityRecord]) -> None:
        self.document = ProvDocument()
        self.ns = self.document.add_namespace(NAMESPACE_PREFIX, NAMESPACE_URI)
        self._logged = activities
        self._activities: dict[QualifiedName, Any] = {}
        self._agents: set[QualifiedName] = set()
        self._relations: set[tuple[str, QualifiedName, QualifiedName]] = set()

    # --- identifiers -------------------------------------------------------------------

    def _id(self, kind: str, local: str) -> QualifiedName:
        return self.ns[f"{kind}/{quote(local, safe='-._~:')}"]

    def _attributes(self, values: dict[str, Any]) -> Attributes:
        """``atlas2d:``-prefixed attributes; None values are left out, dicts and lists
        become JSON strings."""
        attributes: Attributes = {}
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True)
            attributes[self.ns[_attribute_name(key)]] = value
        return attributes

    # --- entities ----------------------------------------------------------------------

    def source(self, source: SourceRecord) -> QualifiedName:
        """The source file, and its ingest that used it."""
        entity = self._id("source", source.sha256)
        self.document.entity(
            entity,
            {
                PROV_TYPE: self.ns["SourceFile"],
                PROV_LABEL: source.path,
                **self._attributes(
                    {
                        "path": source.path,
                        "sha256": source.sha256,
                        "format": source.format,
                        "parser": source.parser,
                        "parser_versions": source.versions,
                        "materials_ingested": source.n_materials,
                        "relaxations_ingested": source.n_relaxations,
                        "frames_ingested": source.n_frames,
                        "frames_in_training_sets": source.frames_in_training_sets,
                        "retracted": source.retracted_at is not None,
                        "retracted_at": source.retracted_at,
                        "retraction_reason": source.retraction_reason,
                    }
                ),
            },
        )
        ingest = self.activity(
            INGEST,
            source.id,
            source.activity_id,
            start=source.created_at,
            end=None,
            atlas2d_version=source.versions.get("atlas2d"),
            subject=source.path,
        )
        self._used(ingest, entity)
        return entity

    def training_set(
        self,
        training_set: TrainingSetRecord,
        contributions: list[tuple[QualifiedName, Contribution]],
    ) -> QualifiedName:
        """The training set, its creation that used the source files, and its derivation
        from them. ``contributions``: (source entity, what it gave the set)."""
        entity = self._id("trainingset", training_set.name)
        split_counts = {
            f"{split}_{what}": n
            for split, counts in training_set.split_counts.items()
            for what, n in counts.items()
        }
        self.document.entity(
            entity,
            {
                PROV_TYPE: self.ns["TrainingSet"],
                PROV_LABEL: training_set.name,
                **self._attributes(
                    {
                        "name": training_set.name,
                        "rule": training_set.rule,
                        "content_hash_sha256": training_set.content_hash,
                        "frames": training_set.n_frames,
                        "materials": training_set.n_materials,
                        **split_counts,
                        "rule_parameters": training_set.parameters,
                        "removed_by_filter": training_set.filter_counts,
                    }
                ),
            },
        )
        creation = self.activity(
            TRAINSET_CREATE,
            training_set.id,
            training_set.activity_id,
            start=training_set.created_at,
            end=None,
            atlas2d_version=None,
            subject=training_set.name,
        )
        for source, contribution in contributions:
            self._used(
                creation,
                source,
                {
                    "relaxations_contributed": contribution.n_relaxations,
                    "frames_contributed": contribution.n_frames,
                },
            )
            self._derived(entity, source, creation)
        self._generated(entity, creation, training_set.created_at)
        return entity

    def model(
        self,
        model: LineageModel,
        training_set: QualifiedName,
        parent: QualifiedName | None,
    ) -> QualifiedName:
        """The model version, its artifact, and its training (which used the set and the
        parent of a fine-tune)."""
        entity = self._id("model", model.label)
        self.document.entity(
            entity,
            {
                PROV_TYPE: self.ns["ModelVersion"],
                PROV_LABEL: model.label,
                **self._attributes(
                    {
                        **_figures(model.metrics),
                        "model": model.label,
                        "architecture": model.architecture,
                        "status": model.status,
                        "error": model.error,
                        "hyperparameters": model.hyperparameters,
                        "artifact_path": model.artifact_path,
                        "artifact_sha256": model.artifact_sha256,
                    }
                ),
            },
        )
        training = self.activity(
            TRAIN,
            model.id,
            model.activity_id,
            start=model.started_at,
            end=model.finished_at,
            atlas2d_version=(model.environment.get("packages") or {}).get("atlas2d"),
            subject=model.label,
        )
        self._used(training, training_set)
        self._derived(entity, training_set, training)
        if parent is not None:
            self._used(training, parent)
            self._derived(entity, parent, training)
        generated_at = model.finished_at or model.started_at
        self._generated(entity, training, generated_at)
        if model.artifact_sha256 is not None:
            artifact = self._id("artifact", model.artifact_sha256)
            self.document.entity(
                artifact,
                {
                    PROV_TYPE: self.ns["ModelArtifact"],
                    PROV_LABEL: f"model file of {model.label}",
                    **self._attributes(
                        {"path": model.artifact_path, "sha256": model.artifact_sha256}
                    ),
                },
            )
            self._generated(artifact, training, generated_at)
        return entity

    def evaluation(self, evaluation: EvaluationRecord, model: QualifiedName) -> QualifiedName:
        """The evaluation's result and the run that used the model version."""
        entity = self._id("evaluation", str(evaluation.id))
        subject = f"{evaluation.kind} evaluation {evaluation.id}"
        self.document.entity(
            entity,
            {
                PROV_TYPE: self.ns["Evaluation"],
                PROV_LABEL: subject,
                **self._attributes(
                    {
                        **{
                            key: value
                            for key, value in evaluation.metrics.items()
                            if _is_scalar(value)
                        },
                        "kind": evaluation.kind,
                        "training_set": evaluation.training_set,
                        "split": evaluation.split,
                        "parameters": evaluation.parameters,
                        "leakage": evaluation.leakage,
                        "leaked_materials": evaluation.leaked_materials,
                        "ancestor_val_materials": evaluation.ancestor_val_materials,
                    }
                ),
            },
        )
        run = self.activity(
            EVALUATE,
            evaluation.id,
            evaluation.activity_id,
            start=evaluation.created_at,
            end=None,
            atlas2d_version=None,
            subject=subject,
        )
        self._used(run, model)
        self._generated(entity, run, evaluation.created_at)
        return entity

    # --- activities and agents ---------------------------------------------------------

    def activity(
        self,
        role: Role,
        row_id: int,
        activity_id: int | None,
        start: datetime,
        end: datetime | None,
        atlas2d_version: str | None,
        subject: str,
    ) -> QualifiedName:
        """The activity that made a row: the logged one it points at, else one of its
        own timed from the row (``start``, ``end``) and run by an unknown user with the
        atlas2d version the row recorded (``atlas2d_version``, None: unknown)."""
        logged = self._logged.get(activity_id) if activity_id is not None else None
        if logged is None:
            identifier = self._id(role.slug, str(row_id))
            attributes: Attributes = {
                PROV_LABEL: f"{role.description} of {subject} (before the activity log)",
                **self._attributes({"activity_log": False}),
            }
            user, version = UNKNOWN, atlas2d_version or UNKNOWN
        else:
            identifier = self._id("activity", str(logged.id))
            start, end = logged.started_at, logged.finished_at
            attributes = {
                PROV_LABEL: f"atlas2d {logged.command}",
                **self._attributes(
                    {
                        "activity_log": True,
                        "command": logged.command,
                        "arguments": logged.arguments,
                        "status": logged.status,
                        "error": logged.error,
                        "host": logged.host,
                        "pid": logged.pid,
                        "os_user": logged.os_user,
                        "atlas2d_version": logged.atlas2d_version,
                        "git_commit": logged.git_commit,
                        "git_dirty": logged.git_dirty,
                        "rows_written": logged.rows_written,
                    }
                ),
            }
            user, version = logged.os_user, logged.atlas2d_version
        prov_type = self.ns[role.prov_type]
        existing = self._activities.get(identifier)
        if existing is not None:
            # One command playing several roles (``al run`` ingests, makes a set, trains).
            if prov_type not in set(existing.get_attribute(PROV_TYPE)):
                existing.add_attributes({PROV_TYPE: prov_type})
            return identifier
        self._activities[identifier] = self.document.activity(
            identifier, start, end, {PROV_TYPE: prov_type, **attributes}
        )
        self._associated(identifier, self._user(user))
        self._associated(identifier, self._software(version))
        return identifier

    def _user(self, os_user: str) -> QualifiedName:
        agent = self._id("user", os_user)
        if agent not in self._agents:
            self._agents.add(agent)
            self.document.agent(
                agent,
                {PROV_TYPE: PERSON, PROV_LABEL: os_user, **self._attributes({"os_user": os_user})},
            )
        return agent

    def _software(self, version: str) -> QualifiedName:
        agent = self._id("software", f"atlas2d-{version}")
        if agent not in self._agents:
            self._agents.add(agent)
            self.document.agent(
                agent,
                {
                    PROV_TYPE: SOFTWARE_AGENT,
                    PROV_LABEL: f"atlas2d {version}",
                    **self._attributes({"version": version}),
                },
            )
        return agent

    # --- relations ---------------------------------------------------------------------

    def _once(self, relation: str, first: QualifiedName, second: QualifiedName) -> bool:
        key = (relation, first, second)
        if key in self._relations:
            return False
        self._relations.add(key)
        return True

    def _used(
        self,
        activity: QualifiedName,
        entity: QualifiedName,
        values: dict[str, Any] | None = None,
    ) -> None:
        if self._once("used", activity, entity):
            self.document.used(activity, entity, other_attributes=self._attributes(values or {}))

    def _generated(self, entity: QualifiedName, activity: QualifiedName, time: datetime) -> None:
        if self._once("wasGeneratedBy", entity, activity):
            self.document.wasGeneratedBy(entity, activity, time)

    def _derived(
        self, entity: QualifiedName, origin: QualifiedName, activity: QualifiedName
    ) -> None:
        if self._once("wasDerivedFrom", entity, origin):
            self.document.wasDerivedFrom(entity, origin, activity)

    def _associated(self, activity: QualifiedName, agent: QualifiedName) -> None:
        if self._once("wasAssociatedWith", activity, agent):
            self.document.wasAssociatedWith(activity, agent)


def _attribute_name(key: str) -> str:
    """A JSON key as an attribute's local name (letters, digits, ``_ . -``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """A model's metrics flattened one level: ``{split: {key: v}}`` → ``{split_key: v}``,
    run figures (``epochs_run``, ``train_seconds``) as they are; deeper values dropped."""
    figures: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            figures.update({f"{key}_{name}": v for name, v in value.items() if _is_scalar(v)})
        elif _is_scalar(value):
            figures[key] = value
    return figures
