"""The W3C PROV export of a model's lineage, read back with ``prov``'s own deserializer.

One committed database of its own holds a lineage made partly before the activity log
and partly while commands were recorded: a base set and model ``base:1`` made without
activities, then two files ingested by one logged ``ingest``, a set made by a logged
``trainset create`` over all three files, and ``fine:1`` fine-tuned from ``base:1`` by a
logged ``train``, evaluated by a logged ``evaluate``. Versions are registered in SQL
(the graph is what matters, not the weights), their model files are real files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prov.model import (
    PROV_LABEL,
    PROV_TYPE,
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvUsage,
)
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.session import make_engine, make_sessions
from atlas2d.errors import NotFound
from atlas2d.io.readers import ReadOptions
from atlas2d.queries import evaluations as evaluation_queries
from atlas2d.queries import model_versions as model_queries
from atlas2d.queries.activities import ActivityRecord
from atlas2d.queries.prov import (
    Contribution,
    LineageModel,
    SourceRecord,
    TrainingSetRecord,
)
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.activities import CommandRun, recording
from atlas2d.services.ingest import ingest_file
from atlas2d.services.prov_export import (
    NAMESPACE_URI,
    Lineage,
    build_document,
    lineage_document,
    lineage_json,
)
from atlas2d.services.trainsets import create_training_set
from tests.conftest import _drop_database, _migrated_database
from tests.support.synthetic import alexandria_document, synthetic_trajectories

ATLAS2D_VERSION = "0.1.0-test"
"""The atlas2d version the registered training runs record in their environment."""


@dataclass(frozen=True)
class Built:
    """The committed lineage and the ids the document must show."""

    sessions: sessionmaker[Session]
    base_id: int
    fine_id: int
    base_sha256: str
    fine_sha256s: tuple[str, str]
    base_source_id: int
    base_set_id: int
    base_evaluation_id: int
    fine_evaluation_id: int
    ingest_activity: int
    set_activity: int
    train_activity: int
    evaluate_activity: int

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.sessions.begin() as session:
            return session.execute(text(sql), params).scalar_one()

    def row(self, sql: str, **params: Any) -> Any:
        with self.sessions.begin() as session:
            return session.execute(text(sql), params).one()


def _layers_file(path: Path, prefix: str, seed: int) -> Path:
    trajectories = synthetic_trajectories(4, 5, 3, seed=seed, key_prefix=prefix)
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


def _register(
    sessions: sessionmaker[Session], name: str, training_set: str, parent_id: int | None, root: Path
) -> int:
    """A ready version of ``name`` trained on ``training_set`` with a real model file."""
    artifact = root / f"{name}.pt"
    artifact.write_bytes(f"weights of {name}".encode())
    with sessions.begin() as session:
        set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = :n"), {"n": training_set}
        ).scalar_one()
        model_id, _ = model_queries.insert_training_version(
            session,
            name,
            "m3gnet",
            set_id,
            parent_id,
            {"epochs": 2, "batch_size": 4, "lr": 1e-3},
            {"packages": {"atlas2d": ATLAS2D_VERSION}, "device": "cpu"},
        )
        model_queries.finish_version(
            session,
            model_id,
            status="ready",
            artifact_path=str(artifact),
            artifact_sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(),
            metrics={
                "test": {"energy_mae_mev_per_atom": 12.5, "n_frames": 6},
                "epochs_run": 2,
                "stopped_by": "epochs",
            },
        )
    return model_id


def _evaluate(sessions: sessionmaker[Session], model_id: int, set_name: str) -> int:
    with sessions.begin() as session:
        set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = :n"), {"n": set_name}
        ).scalar_one()
        return evaluation_queries.insert_evaluation(
            session,
            {
                "model_version_id": model_id,
                "training_set_id": set_id,
                "split": "test",
                "kind": "relaxation",
                "parameters": {"fmax_ev_per_a": 0.1, "steps": 1000},
                "metrics": {"energy_mae_mev_per_atom": 30.0 + model_id, "n_materials": 2},
                "per_element": {},
                "per_spacegroup": {},
            },
        )


@pytest.fixture(scope="module")
def built(database_server: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    url = _migrated_database(database_server, "atlas2d_prov")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    root = tmp_path_factory.mktemp("prov")
    split = SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1)

    # Before the activity log: nothing records an activity.
    base_file = _layers_file(root / "base.json", "base", seed=1)
    ingest_file(sessions, base_file, ReadOptions())
    create_training_set(sessions, "base-set", split)
    base_id = _register(sessions, "base", "base-set", None, root)
    base_evaluation_id = _evaluate(sessions, base_id, "base-set")

    # Logged: one ingest command writes two files; the set takes all three files.
    fine_files = [_layers_file(root / f"fine-{i}.json", f"fine{i}", seed=10 + i) for i in (1, 2)]
    with recording(sessions, CommandRun("ingest", {"paths": fine_files})) as ingest_activity:
        for path in fine_files:
            ingest_file(sessions, path, ReadOptions())
    with recording(sessions, CommandRun("trainset create", {"name": "fine-set"})) as set_activity:
        create_training_set(sessions, "fine-set", split)
    with recording(
        sessions, CommandRun("train", {"name": "fine", "from": "base:1"})
    ) as train_activity:
        fine_id = _register(sessions, "fine", "fine-set", base_id, root)
    with recording(sessions, CommandRun("evaluate", {"model": "fine:1"})) as evaluate_activity:
        fine_evaluation_id = _evaluate(sessions, fine_id, "fine-set")
    with sessions.begin() as session:
        (base_source_id, base_sha256), *fine_sources = session.execute(
            text("SELECT id, sha256 FROM sources ORDER BY id")
        ).all()
        # Declared wrong afterwards: shown, not hidden.
        session.execute(
            text(
                "UPDATE sources SET retracted_at = now(), retraction_reason = 'wrong ENCUT'"
                " WHERE id = :id"
            ),
            {"id": fine_sources[1].id},
        )
        base_set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = 'base-set'")
        ).scalar_one()

    yield Built(
        sessions=sessions,
        base_id=base_id,
        fine_id=fine_id,
        base_sha256=base_sha256,
        fine_sha256s=(fine_sources[0].sha256, fine_sources[1].sha256),
        base_source_id=base_source_id,
        base_set_id=base_set_id,
        base_evaluation_id=base_evaluation_id,
        fine_evaluation_id=fine_evaluation_id,
        ingest_activity=ingest_activity,
        set_activity=set_activity,
        train_activity=train_activity,
        evaluate_activity=evaluate_activity,
    )
    engine.dispose()
    _drop_database(database_server, url)


# --- reading the document back --------------------------------------------------------


def _read_back(built: Built, ref: str) -> ProvDocument:
    """The exported PROV-JSON of ``ref`` read with prov's deserializer; it must equal
    the document it was written from."""
    content = lineage_json(built.sessions, ref)
    document = ProvDocument.deserialize(content=content, format="json")
    assert document == lineage_document(built.sessions, ref)
    assert json.loads(content)["prefix"]["atlas2d"] == NAMESPACE_URI
    return document


def _ids(document: ProvDocument, kind: type) -> set[str]:
    return {str(record.identifier) for record in document.get_records(kind)}


def _edges(document: ProvDocument, kind: type) -> set[tuple[str, str]]:
    """(first, second) formal arguments of every relation of ``kind``: (activity, entity)
    for used, (entity, activity) for wasGeneratedBy, (generated, used) for
    wasDerivedFrom, (activity, agent) for wasAssociatedWith."""
    return {(str(r.args[0]), str(r.args[1])) for r in document.get_records(kind)}


def _record(document: ProvDocument, identifier: str) -> Any:
    (record,) = document.get_record(identifier)
    return record


def _attribute(record: Any, name: str) -> Any:
    values = list(record.get_attribute(name))
    assert len(values) == 1, (name, values)
    return values[0]


def _user() -> str:
    import getpass

    return getpass.getuser()


# --- the tests ------------------------------------------------------------------------


def test_fine_tune_lineage_has_every_entity_activity_agent_and_relation(built: Built) -> None:
    document = _read_back(built, "fine:1")
    first, second = (f"atlas2d:source/{sha}" for sha in built.fine_sha256s)
    base_source = f"atlas2d:source/{built.base_sha256}"
    logged = {
        name: f"atlas2d:activity/{getattr(built, name)}"
        for name in ("ingest_activity", "set_activity", "train_activity", "evaluate_activity")
    }
    base_training = f"atlas2d:train/{built.base_id}"
    base_ingest = f"atlas2d:ingest/{built.base_source_id}"
    base_creation = f"atlas2d:trainset-create/{built.base_set_id}"
    artifacts = {
        ref: "atlas2d:artifact/"
        + built.scalar("SELECT artifact_sha256 FROM model_versions WHERE id = :i", i=model_id)
        for ref, model_id in (("fine", built.fine_id), ("base", built.base_id))
    }
    user, version = built.row(
        "SELECT os_user, atlas2d_version FROM activities WHERE id = :i", i=built.set_activity
    )
    assert user == _user()
    parser_version = built.scalar(
        "SELECT versions->>'atlas2d' FROM sources WHERE id = :i", i=built.base_source_id
    )

    assert _ids(document, ProvEntity) == {
        "atlas2d:model/fine:1",
        "atlas2d:model/base:1",
        *artifacts.values(),
        "atlas2d:trainingset/fine-set",
        "atlas2d:trainingset/base-set",
        base_source,
        first,
        second,
        f"atlas2d:evaluation/{built.fine_evaluation_id}",  # only the audited model's
    }
    assert _ids(document, ProvActivity) == {
        *logged.values(),
        base_training,
        base_ingest,
        base_creation,
    }
    assert _ids(document, ProvAgent) == {
        f"atlas2d:user/{user}",
        "atlas2d:user/unknown",
        f"atlas2d:software/atlas2d-{version}",
        f"atlas2d:software/atlas2d-{ATLAS2D_VERSION}",  # recorded by base:1's run
        f"atlas2d:software/atlas2d-{parser_version}",  # recorded by base.json's parser
        "atlas2d:software/atlas2d-unknown",  # the base set, made before the log
    }
    used = _edges(document, ProvUsage)
    generated = _edges(document, ProvGeneration)
    derived = _edges(document, ProvDerivation)
    associated = _edges(document, ProvAssociation)

    # One logged ingest command wrote both files.
    assert {(logged["ingest_activity"], first), (logged["ingest_activity"], second)} <= used
    assert (base_ingest, base_source) in used
    # The logged set creation used all three files, the older one included.
    for source in (first, second, base_source):
        assert (logged["set_activity"], source) in used
        assert ("atlas2d:trainingset/fine-set", source) in derived
    assert ("atlas2d:trainingset/fine-set", logged["set_activity"]) in generated
    # Training used the set and the parent; the version and its file came from it.
    assert (logged["train_activity"], "atlas2d:trainingset/fine-set") in used
    assert (logged["train_activity"], "atlas2d:model/base:1") in used
    assert ("atlas2d:model/fine:1", logged["train_activity"]) in generated
    assert (artifacts["fine"], logged["train_activity"]) in generated
    assert ("atlas2d:model/fine:1", "atlas2d:model/base:1") in derived
    assert ("atlas2d:model/fine:1", "atlas2d:trainingset/fine-set") in derived
    assert ("atlas2d:model/base:1", "atlas2d:trainingset/base-set") in derived
    # The evaluation used the audited version.
    assert (logged["evaluate_activity"], "atlas2d:model/fine:1") in used
    assert (
        f"atlas2d:evaluation/{built.fine_evaluation_id}",
        logged["evaluate_activity"],
    ) in generated
    # Every logged activity: its user and atlas2d at its version; older ones: unknown.
    for activity in logged.values():
        assert (activity, f"atlas2d:user/{user}") in associated
        assert (activity, f"atlas2d:software/atlas2d-{version}") in associated
    assert (base_training, "atlas2d:user/unknown") in associated
    assert (base_training, f"atlas2d:software/atlas2d-{ATLAS2D_VERSION}") in associated
    assert (base_ingest, f"atlas2d:software/atlas2d-{parser_version}") in associated
    assert (base_creation, "atlas2d:software/atlas2d-unknown") in associated
    assert len(associated) == 2 * len(_ids(document, ProvActivity))


def test_logged_activities_take_their_ids_times_and_command_from_the_log(built: Built) -> None:
    document = _read_back(built, "fine:1")
    for activity_id, command in (
        (built.ingest_activity, "ingest"),
        (built.set_activity, "trainset create"),
        (built.train_activity, "train"),
        (built.evaluate_activity, "evaluate"),
    ):
        started, finished, arguments = built.row(
            "SELECT started_at, finished_at, arguments FROM activities WHERE id = :i",
            i=activity_id,
        )
        record = _record(document, f"atlas2d:activity/{activity_id}")
        assert record.get_startTime() == started
        assert record.get_endTime() == finished
        assert _attribute(record, "atlas2d:command") == command
        assert _attribute(record, "atlas2d:activity_log") is True
        assert json.loads(_attribute(record, "atlas2d:arguments")) == arguments
    ingest = _record(document, f"atlas2d:activity/{built.ingest_activity}")
    assert {str(t) for t in ingest.get_attribute(PROV_TYPE)} == {"atlas2d:Ingest"}
    # The files were stored during their activity, inside its times.
    created = built.scalar("SELECT created_at FROM training_sets WHERE name = 'fine-set'")
    set_activity = _record(document, f"atlas2d:activity/{built.set_activity}")
    assert set_activity.get_startTime() <= created <= set_activity.get_endTime()


def test_rows_made_before_the_log_still_give_a_complete_graph(built: Built) -> None:
    document = _read_back(built, "base:1")
    source = f"atlas2d:source/{built.base_sha256}"
    ingest = f"atlas2d:ingest/{built.base_source_id}"
    creation = f"atlas2d:trainset-create/{built.base_set_id}"
    training = f"atlas2d:train/{built.base_id}"
    evaluation_run = f"atlas2d:evaluate/{built.base_evaluation_id}"
    evaluation = f"atlas2d:evaluation/{built.base_evaluation_id}"

    assert _ids(document, ProvActivity) == {ingest, creation, training, evaluation_run}
    assert _edges(document, ProvUsage) == {
        (ingest, source),
        (creation, source),
        (training, "atlas2d:trainingset/base-set"),
        (evaluation_run, "atlas2d:model/base:1"),
    }
    artifact = "atlas2d:artifact/" + built.scalar(
        "SELECT artifact_sha256 FROM model_versions WHERE id = :i", i=built.base_id
    )
    assert _edges(document, ProvGeneration) == {
        ("atlas2d:trainingset/base-set", creation),
        ("atlas2d:model/base:1", training),
        (artifact, training),
        (evaluation, evaluation_run),
    }
    assert _edges(document, ProvDerivation) == {
        ("atlas2d:trainingset/base-set", source),
        ("atlas2d:model/base:1", "atlas2d:trainingset/base-set"),
    }
    for activity in (ingest, creation, training, evaluation_run):
        assert (activity, "atlas2d:user/unknown") in _edges(document, ProvAssociation)
        assert _attribute(_record(document, activity), "atlas2d:activity_log") is False
    # Times come from the rows themselves.
    started, finished = built.row(
        "SELECT started_at, finished_at FROM model_versions WHERE id = :i", i=built.base_id
    )
    assert _record(document, training).get_startTime() == started
    assert _record(document, training).get_endTime() == finished
    set_created = built.scalar("SELECT created_at FROM training_sets WHERE name = 'base-set'")
    assert _record(document, creation).get_startTime() == set_created


def test_entities_carry_their_recorded_attributes(built: Built) -> None:
    document = _read_back(built, "fine:1")
    model = _record(document, "atlas2d:model/fine:1")
    assert _attribute(model, "atlas2d:architecture") == "m3gnet"
    assert _attribute(model, "atlas2d:status") == "ready"
    assert _attribute(model, "atlas2d:test_energy_mae_mev_per_atom") == 12.5
    assert json.loads(_attribute(model, "atlas2d:hyperparameters"))["lr"] == 1e-3
    assert _attribute(model, PROV_TYPE) == document.valid_qualified_name("atlas2d:ModelVersion")

    training_set = _record(document, "atlas2d:trainingset/fine-set")
    stored_hash, n_frames = built.row(
        "SELECT content_hash, n_frames FROM training_sets WHERE name = 'fine-set'"
    )
    assert _attribute(training_set, "atlas2d:content_hash_sha256") == stored_hash
    assert _attribute(training_set, "atlas2d:frames") == n_frames
    assert json.loads(_attribute(training_set, "atlas2d:rule_parameters"))["ecut"] == 1e6

    retracted = _record(document, f"atlas2d:source/{built.fine_sha256s[1]}")
    assert _attribute(retracted, "atlas2d:retracted") is True
    assert _attribute(retracted, "atlas2d:retraction_reason") == "wrong ENCUT"
    kept = _record(document, f"atlas2d:source/{built.fine_sha256s[0]}")
    assert _attribute(kept, "atlas2d:retracted") is False
    assert _attribute(kept, "atlas2d:format") == "alexandria-traj"
    # The frames each file gave the set, on the usage by the set creation.
    stored_frames = built.scalar(
        "SELECT sum(cardinality(tsr.frame_ids)) FROM training_set_relaxations tsr"
        " JOIN relaxations r ON r.id = tsr.relaxation_id"
        " JOIN training_sets t ON t.id = tsr.training_set_id"
        " JOIN sources s ON s.id = r.source_id WHERE t.name = 'fine-set' AND s.sha256 = :sha",
        sha=built.fine_sha256s[0],
    )
    (usage,) = (
        r
        for r in document.get_records(ProvUsage)
        if str(r.args[0]) == f"atlas2d:activity/{built.set_activity}"
        and str(r.args[1]) == f"atlas2d:source/{built.fine_sha256s[0]}"
    )
    assert _attribute(usage, "atlas2d:frames_contributed") == stored_frames > 0

    evaluation = _record(document, f"atlas2d:evaluation/{built.fine_evaluation_id}")
    assert _attribute(evaluation, "atlas2d:kind") == "relaxation"
    assert _attribute(evaluation, "atlas2d:split") == "test"
    assert _attribute(evaluation, "atlas2d:energy_mae_mev_per_atom") == 30.0 + built.fine_id
    assert _attribute(evaluation, "atlas2d:leakage") is False


def test_an_unknown_model_is_named_in_the_error(built: Built) -> None:
    with pytest.raises(NotFound, match="nothing"):
        lineage_document(built.sessions, "nothing:1")


def test_one_command_in_several_roles_is_one_activity_with_each_type() -> None:
    """``al run`` ingests labels, makes a set and trains in one command: one activity
    with the three types, associated once with its user and once with its atlas2d."""
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    activity = ActivityRecord(
        id=7,
        command="al run",
        arguments={"campaign": "mos2", "iterations": 1},
        os_user="ana maria",
        host="node1",
        pid=42,
        atlas2d_version="9.9",
        git_commit=None,
        git_dirty=None,
        started_at=when,
        finished_at=when,
        status="succeeded",
        error=None,
        rows_written={"sources": 1},
    )
    source = SourceRecord(
        id=1,
        path="labels.json",
        format="alexandria-traj",
        sha256="ab" * 32,
        parser="alexandria",
        versions={"atlas2d": "9.9"},
        n_materials=1,
        n_relaxations=1,
        n_frames=3,
        frames_in_training_sets=3,
        created_at=when,
        retracted_at=None,
        retraction_reason=None,
        activity_id=7,
    )
    training_set = TrainingSetRecord(
        id=2,
        name="al set/1",
        rule="ecut",
        parameters={"ecut": 0.01},
        split_counts={"train": {"frames": 3, "materials": 1}},
        filter_counts={},
        n_frames=3,
        n_materials=1,
        content_hash="cd" * 32,
        created_at=when,
        activity_id=7,
    )
    model = LineageModel(
        depth=0,
        id=3,
        label="mos2-al:1",
        architecture="mace",
        status="failed",
        error="interrupted",
        parent_id=None,
        training_set_id=2,
        hyperparameters={"epochs": 1},
        metrics={},
        environment={},
        artifact_path=None,
        artifact_sha256=None,
        started_at=when,
        finished_at=None,
        activity_id=7,
    )
    lineage = Lineage(
        models=[model],
        training_sets=[training_set],
        contributions=[Contribution(2, 1, 1, 3)],
        sources=[source],
        evaluations=[],
        activities={7: activity},
    )
    document = build_document(lineage)
    read = ProvDocument.deserialize(content=document.serialize(format="json"), format="json")
    assert read == document
    record = _record(read, "atlas2d:activity/7")
    assert {str(t) for t in record.get_attribute(PROV_TYPE)} == {
        "atlas2d:Ingest",
        "atlas2d:TrainingSetCreation",
        "atlas2d:Training",
    }
    assert _attribute(record, PROV_LABEL) == "atlas2d al run"
    assert _edges(read, ProvAssociation) == {
        ("atlas2d:activity/7", "atlas2d:user/ana%20maria"),
        ("atlas2d:activity/7", "atlas2d:software/atlas2d-9.9"),
    }
    # A failed version has no model file: no artifact entity.
    assert _ids(read, ProvEntity) == {
        "atlas2d:source/" + "ab" * 32,
        "atlas2d:trainingset/al%20set%2F1",
        "atlas2d:model/mos2-al:1",
    }
    assert (
        _attribute(_record(read, "atlas2d:trainingset/al%20set%2F1"), "atlas2d:train_frames") == 3
    )
