"""Model files in the database (``artifact_blobs``) and the local cache: a machine
without the file loads the database's copy after checking its hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import ArtifactChanged, NotFound
from atlas2d.queries import artifact_blobs
from atlas2d.services import models as registry
from atlas2d.services.models import artifact_file, load_force_field, resolve
from tests.conftest import rolled_back_sessions
from tests.support.synthetic import synthetic_trajectories


@pytest.fixture
def rolled_back(trained_registry) -> Iterator[sessionmaker[Session]]:  # type: ignore[no-untyped-def]
    """Sessions on the trained registry's database whose changes are rolled back."""
    with rolled_back_sessions(trained_registry.engine) as sessions:
        yield sessions


def _execute(sessions: sessionmaker[Session], sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with sessions.begin() as session:
        result = session.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def _atoms() -> Atoms:
    layer = synthetic_trajectories(16, 6, 6, seed=21)[0]  # the registry's elements
    return Atoms(numbers=layer.species, positions=layer.positions[0], cell=layer.cells[0], pbc=True)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_training_stored_each_model_file_once(trained_registry) -> None:  # type: ignore[no-untyped-def]
    rows = _execute(
        trained_registry.sessions,
        "SELECT m.name, m.artifact_sha256, b.n_bytes, encode(sha256(b.content), 'hex')"
        " FROM model_versions m JOIN artifact_blobs b ON b.sha256 = m.artifact_sha256"
        " WHERE m.name IN ('tiny-m3gnet', 'tiny-mace') AND m.version = 1",
    )
    assert {name for name, *_ in rows} == {"tiny-m3gnet", "tiny-mace"}
    for name, sha256, n_bytes, stored in rows:
        path = artifact_file(
            _model(trained_registry.sessions, name), trained_registry.artifacts_dir
        )
        assert stored == sha256 and n_bytes == path.stat().st_size


def test_storing_the_same_bytes_again_adds_no_row(sessions: sessionmaker[Session]) -> None:
    content = b"model bytes"
    sha256 = hashlib.sha256(content).hexdigest()
    with sessions.begin() as session:
        assert artifact_blobs.store_blob(session, sha256, content) is True
        assert artifact_blobs.store_blob(session, sha256, content) is False
        assert artifact_blobs.blob_size(session, sha256) == len(content)
        assert artifact_blobs.read_blob_slice(session, sha256, 3, 4) == content[3:7]
    ((count,),) = _execute(
        sessions, "SELECT count(*) FROM artifact_blobs WHERE sha256 = :s", s=sha256
    )
    assert count == 1


def _model(sessions: sessionmaker[Session], ref: str):  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        return resolve(session, ref)


def test_bytes_that_do_not_hash_to_the_given_sha256_are_not_stored(
    sessions: sessionmaker[Session],
) -> None:
    sha256 = hashlib.sha256(b"model bytes").hexdigest()
    with sessions.begin() as session:
        with pytest.raises(ValueError, match=f"under sha256 {sha256[:16]}…: its bytes hash"):
            artifact_blobs.store_blob(session, sha256, b"other bytes")
        assert artifact_blobs.blob_size(session, sha256) is None


def test_a_missing_absolute_model_file_is_named_by_its_registered_path(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    registered = tmp_path / "elsewhere" / "model.pt"
    sha256 = hashlib.sha256(b"gone").hexdigest()
    model = SimpleNamespace(label="gone:1", artifact_path=str(registered), artifact_sha256=sha256)
    with pytest.raises(NotFound) as raised:
        registry.read_artifact(sessions, model, tmp_path / "artifacts")  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message
    cached = tmp_path / "artifacts" / "blobs" / sha256
    assert f"its file {registered} (nor its cached copy {cached}) does not exist" in message


def test_a_machine_without_the_file_loads_the_database_copy(
    trained_registry,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = trained_registry.sessions
    model = _model(sessions, "tiny-mace:1")
    slices = []
    read_slice = artifact_blobs.read_blob_slice

    def counting(*args):  # type: ignore[no-untyped-def]
        slices.append(args[2:])
        return read_slice(*args)

    monkeypatch.setattr(artifact_blobs, "read_blob_slice", counting)
    monkeypatch.setattr(registry, "ARTIFACT_CHUNK_BYTES", 4096)  # many slices
    empty = tmp_path / "artifacts"
    fetched = load_force_field(sessions, "tiny-mace:1", empty).predict([_atoms()])
    original = load_force_field(sessions, "tiny-mace:1", trained_registry.artifacts_dir)
    expected = original.predict([_atoms()])
    np.testing.assert_array_equal(fetched.energies, expected.energies)
    np.testing.assert_array_equal(fetched.forces[0], expected.forces[0])
    # Fetched in slices into the cache, at the registered path, and nothing else left.
    cached = artifact_file(model, empty)
    source = artifact_file(model, trained_registry.artifacts_dir)
    assert _files(empty) == [cached] and cached.read_bytes() == source.read_bytes()
    assert len(slices) == -(-cached.stat().st_size // 4096) > 1
    # The next load reads the cache: no fetch.
    slices.clear()
    load_force_field(sessions, "tiny-mace:1", empty)
    assert slices == []


def test_a_damaged_database_copy_is_refused_and_nothing_is_cached(
    rolled_back: sessionmaker[Session], tmp_path: Path
) -> None:
    sha256 = _model(rolled_back, "tiny-m3gnet:1").artifact_sha256
    _execute(
        rolled_back,
        "UPDATE artifact_blobs SET content = set_byte(content, 7, get_byte(content, 7) # 1)"
        " WHERE sha256 = :sha256",
        sha256=sha256,
    )
    with pytest.raises(ArtifactChanged) as raised:
        load_force_field(rolled_back, "tiny-m3gnet:1", tmp_path / "artifacts")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("Refusing to load model tiny-m3gnet:1: the database's copy")
    assert f"the registry recorded {sha256[:16]}…" in message
    assert _files(tmp_path) == []


def test_a_version_registered_before_the_blobs_is_stored_by_its_first_load(
    rolled_back: sessionmaker[Session],
    trained_registry,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    sha256 = _model(rolled_back, "tiny-m3gnet:1").artifact_sha256
    _execute(rolled_back, "DELETE FROM artifact_blobs WHERE sha256 = :s", s=sha256)
    with pytest.raises(NotFound, match="does not exist on this machine and the database holds"):
        load_force_field(rolled_back, "tiny-m3gnet:1", tmp_path / "artifacts")
    # The machine that has the file stores it in the database when it loads it …
    load_force_field(rolled_back, "tiny-m3gnet:1", trained_registry.artifacts_dir)
    ((stored,),) = _execute(
        rolled_back,
        "SELECT encode(sha256(content), 'hex') FROM artifact_blobs WHERE sha256 = :s",
        s=sha256,
    )
    assert stored == sha256
    # … and from then on every machine can load it.
    assert load_force_field(rolled_back, "tiny-m3gnet:1", tmp_path / "artifacts")
