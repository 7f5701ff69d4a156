"""``audit model`` on the database of ``trained_registry``: an untouched model passes; a
frame changed behind atlas2d's back, a flipped byte in a model file, registry metrics
that the stored predictions do not give, a swapped model file and retracted sources each
make it fail with a reason that names the culprit.

The module adds a second source file, a training set of it (``audit-extra``) and a
version fine-tuned from ``tiny-m3gnet:1`` on it (``audit-ft:1``) inside one transaction
on one connection, rolled back at the end; each test runs in a savepoint rolled back
after it, so the tampering of one test is gone for the next (model files are restored
in ``finally``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.services.audit_model import (
    ENERGY_TOLERANCE_MEV_PER_ATOM,
    FORCE_TOLERANCE_MEV_PER_A,
    audit_model,
    choose_frames,
)
from atlas2d.services.models import artifact_file, list_models, resolve, show_model
from tests.conftest import tiny_options


@dataclass
class AuditRegistry:
    """The trained registry plus ``audit-ft:1`` (fine-tuned from ``tiny-m3gnet:1`` on
    ``audit-extra``), seen through one connection whose outer transaction is rolled
    back after the module."""

    connection: Connection
    sessions: sessionmaker[Session]
    artifacts_dir: Path
    layers_source: str
    extra_source: str

    def execute(self, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
        """Run SQL as the superuser on the test's connection (behind atlas2d's back)."""
        result = self.connection.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []

    def artifact(self, ref: str) -> Path:
        with self.sessions.begin() as session:
            return artifact_file(resolve(session, ref), self.artifacts_dir)


@pytest.fixture(scope="module")
def audit_registry(trained_registry, tmp_path_factory) -> Iterator[AuditRegistry]:  # type: ignore[no-untyped-def]
    from atlas2d.io.readers import ReadOptions
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.ingest import ingest_file
    from atlas2d.services.training import TrainRequest, train_model
    from atlas2d.services.trainsets import create_training_set
    from tests.support.synthetic import alexandria_document, synthetic_trajectories

    connection = trained_registry.engine.connect()
    outer = connection.begin()
    sessions = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    # The layers of ``layers`` again (so the parent knows every element), under other
    # keys and with shifted energies (so they are new relaxations), in a file of its own.
    trajectories = [
        dataclasses.replace(t, material_key=f"audit-{i}", energies=t.energies - 0.01)
        for i, t in enumerate(synthetic_trajectories(16, 6, 6, seed=21))
    ]
    path = tmp_path_factory.mktemp("audit") / "extra.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    ingest_file(sessions, path, ReadOptions())
    registry = AuditRegistry(connection, sessions, trained_registry.artifacts_dir, "", "")
    ((registry.extra_source,),) = registry.execute(
        "SELECT path FROM sources WHERE path LIKE '%extra.json'"
    )
    ((registry.layers_source,),) = registry.execute(
        "SELECT path FROM sources WHERE path LIKE '%layers.json'"
    )
    create_training_set(
        sessions,
        "audit-extra",
        SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=2, sources=(str(path),)),
    )
    request = TrainRequest(
        "audit-ft", "audit-extra", tiny_options("m3gnet", epochs=1), parent="tiny-m3gnet:1"
    )
    train_model(sessions, request, trained_registry.artifacts_dir)
    try:
        yield registry
    finally:
        outer.rollback()
        connection.close()


@pytest.fixture
def registry(audit_registry: AuditRegistry) -> Iterator[AuditRegistry]:
    """The module's registry; whatever the test changes in the database is undone."""
    savepoint = audit_registry.connection.begin_nested()
    try:
        yield audit_registry
    finally:
        savepoint.rollback()


def audit(registry: AuditRegistry, ref: str, **options: object):  # type: ignore[no-untyped-def]
    return audit_model(registry.sessions, ref, registry.artifacts_dir, **options)  # type: ignore[arg-type]


def first_train_frame(registry: AuditRegistry, training_set: str) -> int:
    ((frame_id,),) = registry.execute(
        "SELECT t.frame_id FROM training_set_frames t"
        " JOIN training_sets s ON s.id = t.training_set_id"
        " WHERE s.name = :name AND t.split = 'train' ORDER BY t.frame_id LIMIT 1",
        name=training_set,
    )
    return int(frame_id)


def test_an_untouched_model_passes(registry: AuditRegistry) -> None:
    result = audit(registry, "tiny-m3gnet:1", reproduce=5, seed=3, keys=True)
    assert (result.verdict, result.reasons) == ("pass", [])
    (version,) = result.lineage
    assert (version.model, version.depth, version.parent) == ("tiny-m3gnet:1", 0, None)
    check = version.training_set
    assert check.name == "layers" and check.reproduced
    assert check.recomputed_hash == check.stored_hash and len(check.stored_hash) == 64
    ((n_frames,),) = registry.execute("SELECT n_frames FROM training_sets WHERE name = 'layers'")
    ((source,),) = [check.sources]
    assert (source.path, source.frames) == (registry.layers_source, n_frames)
    assert source.parser and source.versions and len(source.sha256 or "") == 64
    assert version.artifact.ok and version.artifact.path == str(registry.artifact("tiny-m3gnet:1"))
    assert version.artifact.where == "file and database copy"
    assert version.environment["seed"] == 7 and version.retracted_sources == []
    # The registry's val and test errors, every metric recomputed.
    assert {m.split for m in result.metrics} == {"val", "test"}
    assert all(m.ok for m in result.metrics)
    assert {"energy_mae_mev_per_atom", "force_mae_mev_per_a", "n_frames"} <= {
        m.metric for m in result.metrics
    }
    reproduce = result.reproduce
    assert reproduce is not None and reproduce.ok and len(reproduce.frames) == 5
    assert reproduce.largest_energy_mev_per_atom <= ENERGY_TOLERANCE_MEV_PER_ATOM  # type: ignore[operator]
    assert reproduce.largest_force_mev_per_a <= FORCE_TOLERANCE_MEV_PER_A  # type: ignore[operator]
    ((predictions,),) = registry.execute(
        "SELECT count(*) FROM frame_predictions p JOIN model_versions m"
        " ON m.id = p.model_version_id WHERE m.name = 'tiny-m3gnet' AND m.version = 1"
    )
    assert result.downstream_counts["frame_predictions"] == predictions > 0
    assert result.downstream_counts["ml_relaxations"] == 0
    assert result.downstream_keys is not None
    assert "audit-ft:1" in result.downstream_keys["fine_tuned_versions"]


def test_a_fine_tuned_version_shows_its_lineage_through_the_parent(
    registry: AuditRegistry,
) -> None:
    result = audit(registry, "audit-ft:1")
    assert result.verdict == "pass", result.reasons
    assert [(v.depth, v.model, v.parent) for v in result.lineage] == [
        (0, "audit-ft:1", "tiny-m3gnet:1"),
        (1, "tiny-m3gnet:1", None),
    ]
    assert [v.training_set.name for v in result.lineage] == ["audit-extra", "layers"]
    assert [s.path for s in result.lineage[0].training_set.sources] == [registry.extra_source]
    assert all(v.artifact.ok for v in result.lineage)
    assert result.downstream_keys is None and result.reproduce is None


def test_a_frame_changed_behind_atlas2ds_back_fails_naming_the_set_and_frame(
    registry: AuditRegistry,
) -> None:
    frame_id = first_train_frame(registry, "layers")
    registry.execute("UPDATE frames SET energy = energy + 0.25 WHERE id = :id", id=frame_id)
    result = audit(registry, "tiny-m3gnet:1")
    assert result.verdict == "fail"
    (reason,) = result.reasons
    assert "training set layers" in reason and str(frame_id) in reason
    assert "changed since ingest" in reason
    assert result.lineage[0].training_set.differences["changed"] == {
        "count": 1,
        "first": [frame_id],
    }
    # The fine-tuned child fails through its parent's training set.
    child = audit(registry, "audit-ft:1")
    assert child.verdict == "fail" and len(child.reasons) == 1
    assert "training set layers (of tiny-m3gnet:1)" in child.reasons[0]
    assert [v.training_set.reproduced for v in child.lineage] == [True, False]


def test_a_flipped_byte_in_a_model_file_fails_naming_the_file(registry: AuditRegistry) -> None:
    path = registry.artifact("tiny-m3gnet:1")
    original = path.read_bytes()
    try:
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        result = audit(registry, "tiny-m3gnet:1", reproduce=3)
        assert result.verdict == "fail"
        (reason,) = result.reasons
        assert str(path) in reason and "changed" in reason
        # The changed file is never loaded.
        assert result.reproduce is not None and result.reproduce.frames == []
        assert result.reproduce.skipped == "the model file does not match the registry"
        # The child's own file is fine; its parent's is named.
        child = audit(registry, "audit-ft:1")
        assert child.reasons == [reason]
        # Without this machine's file the database's copy vouches for the model …
        path.unlink()
        check = audit(registry, "tiny-m3gnet:1").lineage[0].artifact
        assert check.ok and check.where == "database copy"
        # … a damaged copy does not …
        registry.execute(
            "UPDATE artifact_blobs SET content = set_byte(content, 100, get_byte(content, 100) # 1)"
            " WHERE sha256 = :sha256",
            sha256=check.registered_sha256,
        )
        (damaged,) = audit(registry, "tiny-m3gnet:1").reasons
        assert damaged.startswith("the database's copy of the model file of tiny-m3gnet:1 is")
        # … and without either, the file is missing.
        registry.execute(
            "DELETE FROM artifact_blobs WHERE sha256 = :sha256", sha256=check.registered_sha256
        )
        (missing,) = audit(registry, "tiny-m3gnet:1").reasons
        assert missing == (
            f"model file of tiny-m3gnet:1 is missing: {path}, and the database holds no copy"
        )
    finally:
        path.write_bytes(original)
    assert audit(registry, "tiny-m3gnet:1").verdict == "pass"


def test_registry_metrics_the_predictions_do_not_give_fail(registry: AuditRegistry) -> None:
    registry.execute(
        "UPDATE model_versions SET metrics = jsonb_set(metrics,"
        " '{test,energy_mae_mev_per_atom}',"
        " to_jsonb((metrics #>> '{test,energy_mae_mev_per_atom}')::float8 * 0.99))"
        " WHERE name = 'tiny-m3gnet' AND version = 1"
    )
    result = audit(registry, "tiny-m3gnet:1")
    (reason,) = result.reasons
    assert reason.startswith("tiny-m3gnet:1 test energy_mae_mev_per_atom: the registry says")
    (wrong,) = [m for m in result.metrics if not m.ok]
    assert wrong.registered == pytest.approx(wrong.recomputed * 0.99)  # type: ignore[operator]


def test_reproduce_catches_a_swapped_model_file_with_a_matching_registry_hash(
    registry: AuditRegistry,
) -> None:
    # Someone points tiny-m3gnet:1 at another model's file and registers its hash: the
    # file checks out, only predicting again shows it is not the model that predicted.
    registry.execute(
        "UPDATE model_versions m SET artifact_path = o.artifact_path,"
        " artifact_sha256 = o.artifact_sha256 FROM model_versions o"
        " WHERE m.name = 'tiny-m3gnet' AND m.version = 1 AND o.name = 'audit-ft'"
    )
    assert audit(registry, "tiny-m3gnet:1").verdict == "pass"  # without --reproduce
    result = audit(registry, "tiny-m3gnet:1", reproduce=6, seed=1)
    assert result.lineage[0].artifact.ok
    reproduce = result.reproduce
    assert reproduce is not None and not reproduce.ok and len(reproduce.frames) == 6
    assert reproduce.largest_energy_mev_per_atom > 10 * ENERGY_TOLERANCE_MEV_PER_ATOM  # type: ignore[operator]
    (reason,) = result.reasons
    assert reason.startswith("tiny-m3gnet:1 predictions not reproduced on")
    assert str(reproduce.out_of_tolerance[0].frame_id) in reason


def test_retracted_sources_taint_the_model_and_its_descendants(registry: AuditRegistry) -> None:
    def tainted() -> dict[str, bool]:
        listed = list_models(registry.sessions)
        return dict(zip(listed["model"], listed["tainted"], strict=True))

    assert not any(tainted().values())
    registry.execute(
        "UPDATE sources SET retracted_at = now(), retraction_reason = 'wrong ENCUT'"
        " WHERE path = :path",
        path=registry.extra_source,
    )
    assert (tainted()["audit-ft:1"], tainted()["tiny-m3gnet:1"]) == (True, False)
    child = audit(registry, "audit-ft:1")
    (reason,) = child.reasons
    assert reason.startswith("audit-ft:1 is tainted: training set audit-extra holds frames")
    assert registry.extra_source in reason and reason.endswith(": wrong ENCUT")
    assert audit(registry, "tiny-m3gnet:1").verdict == "pass"
    # The parent's data retracted: the parent, the other model of the set and the
    # fine-tuned child (a descendant) are all tainted.
    registry.execute(
        "UPDATE sources SET retracted_at = now(), retraction_reason = 'bad k-points'"
        " WHERE path = :path",
        path=registry.layers_source,
    )
    flags = tainted()
    assert flags["tiny-m3gnet:1"] == flags["tiny-mace:1"] == flags["audit-ft:1"] is True
    assert [r[:40] for r in audit(registry, "audit-ft:1").reasons] == [
        "audit-ft:1 is tainted: training set audi",
        "tiny-m3gnet:1 is tainted: training set l",
    ]
    shown = show_model(registry.sessions, "audit-ft:1")
    assert {(s["path"], s["reason"]) for s in shown.tainted_by} == {
        (registry.extra_source, "wrong ENCUT"),
        (registry.layers_source, "bad k-points"),
    }
    assert show_model(registry.sessions, "tiny-m3gnet:1").tainted_by[0]["reason"] == "bad k-points"


def test_bad_requests(registry: AuditRegistry) -> None:
    with pytest.raises(NotFound, match="No model is named 'nope'"):
        audit(registry, "nope")
    with pytest.raises(InvalidInput, match="--reproduce -1"):
        audit(registry, "tiny-m3gnet:1", reproduce=-1)


def test_reproduce_frames_are_chosen_by_the_seed() -> None:
    import numpy as np

    ids = np.arange(100, 200, dtype=np.int64)
    chosen = choose_frames(ids, 5, seed=4)
    assert chosen == choose_frames(ids, 5, seed=4) == sorted(chosen) and len(set(chosen)) == 5
    assert chosen != choose_frames(ids, 5, seed=5)
    assert choose_frames(ids[:3], 5, seed=4) == [100, 101, 102]
