"""Ingest of an Alexandria trajectory file in batches: the same rows as one batch,
bounded memory for a compressed file, and nothing written when a later batch is bad."""

from __future__ import annotations

import bz2
import hashlib
import json
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput
from atlas2d.io.readers import InputFile, ReadOptions
from atlas2d.services.ingest import ALREADY_PRESENT, INGESTED, ingest_file
from tests.support.synthetic import alexandria_document, synthetic_trajectories

TABLES = ("sources", "materials", "relaxations", "frames")


def _document(n_materials: int, seed: int = 3) -> dict[str, Any]:
    trajectories = synthetic_trajectories(n_materials, (2, 6), (3, 9), seed=seed)
    document = alexandria_document(trajectories)
    # A material with two relaxations, and one trajectory twice (stored once).
    first = next(iter(document))
    document[first].append(json.loads(json.dumps(document[first][0])))
    document[first][1]["steps"] = document[first][1]["steps"][1:]
    document[first].append(json.loads(json.dumps(document[first][0])))
    return document


def _stored(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Everything the ingest wrote, without row ids."""
    with sessions.begin() as session:
        frames = session.execute(
            text(
                "SELECT m.key, r.content_hash, f.step, f.digest, f.energy, f.forces, f.stress,"
                " f.max_force, f.energy_per_atom FROM frames f"
                " JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id ORDER BY 1, 2, 3"
            )
        ).all()
        relaxations = session.execute(
            text(
                "SELECT m.key, r.content_hash, r.n_steps, r.final_energy, r.parameters"
                " FROM relaxations r JOIN materials m ON m.id = r.material_id ORDER BY 1, 2"
            )
        ).all()
        materials = session.execute(
            text("SELECT key, formula, dimensionality FROM materials ORDER BY key")
        ).all()
        sources = session.execute(
            text(
                "SELECT sha256, format, n_materials, n_relaxations, n_frames, n_entries"
                " FROM sources"
            )
        ).all()
    return {
        "frames": [tuple(r) for r in frames],
        "relaxations": [tuple(r) for r in relaxations],
        "materials": [tuple(r) for r in materials],
        "sources": [tuple(r) for r in sources],
    }


def _delete_all(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for table in ("frames", "relaxations", "materials", "sources"):
            session.execute(text(f"DELETE FROM {table}"))


def _counts(count_rows) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {table: count_rows(table) for table in TABLES}


def test_small_batches_store_what_one_batch_stores(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "alex.json.bz2"
    content = msgspec.json.encode(_document(12))
    path.write_bytes(bz2.compress(content))

    whole = ingest_file(sessions, path, ReadOptions(), batch_frames=10**9)
    expected = _stored(sessions)
    _delete_all(sessions)
    assert set(_counts(count_rows).values()) == {0}
    batched = ingest_file(sessions, path, ReadOptions(), batch_frames=7)

    assert batched == whole and batched.status == INGESTED
    assert (batched.relaxations, batched.relaxations_present) == (13, 0)  # the copy once
    assert _stored(sessions) == expected
    assert expected["sources"][0][0] == hashlib.sha256(content).hexdigest()
    assert expected["sources"][0][2:5] == (12, 13, batched.frames)


def test_a_streamed_file_ingested_again_is_already_present(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "alex.json"
    plain.write_bytes(msgspec.json.encode(_document(4)))
    packed = tmp_path / "copy.json.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    assert ingest_file(sessions, plain, ReadOptions(), batch_frames=5).status == INGESTED
    before = _counts(count_rows)
    for again in (plain, packed):
        assert ingest_file(sessions, again, ReadOptions(), batch_frames=5).status == (
            ALREADY_PRESENT
        )
    assert _counts(count_rows) == before


def test_a_bad_record_in_a_later_batch_writes_nothing(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    document = _document(30)
    last = list(document)[-3]
    document[last][0]["steps"][1]["forces"][0] = [0.1, 0.2]
    path = tmp_path / "alex.json"
    path.write_bytes(msgspec.json.encode(document))
    with pytest.raises(InvalidInput) as error:
        ingest_file(sessions, path, ReadOptions(), batch_frames=5)
    message = str(error.value)
    assert message.startswith(f"{path}: mat_id {last}, trajectory 0, step 1, field 'forces'")
    assert "\n" not in message
    assert set(_counts(count_rows).values()) == {0}
    assert not [t for t in threading.enumerate() if t.name == "atlas2d-read-ahead"]


def test_a_formula_change_across_batches_is_refused(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    document = _document(6)
    keys = list(document)
    document[keys[-1] + "z"] = document.pop(keys[-1])  # keep it last in the file
    document[keys[0] + "-dup"] = document.pop(keys[-1] + "z")
    other = synthetic_trajectories(1, 3, 5, seed=99, key_prefix="x")
    relabelled = alexandria_document(other)["x-000000"]
    document[keys[0]].extend(relabelled)  # same key, another compound, far from the first
    path = tmp_path / "alex.json"
    path.write_bytes(msgspec.json.encode(document))
    with pytest.raises(InvalidInput, match=f"material '{keys[0]}' has formula"):
        ingest_file(sessions, path, ReadOptions(), batch_frames=1)
    assert set(_counts(count_rows).values()) == {0}


def test_a_compressed_file_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Neither the unpacked content nor the compressed file is held whole: the peak of
    a batched read is a fraction of either."""
    runs = list(alexandria_document(synthetic_trajectories(20, 12, 12, seed=4)).values())
    content = msgspec.json.encode({f"m{i:04d}": runs[i % 20] for i in range(600)})
    path = tmp_path / "alex.json.bz2"
    path.write_bytes(bz2.compress(content, compresslevel=1))
    with InputFile(path, ReadOptions()) as warm:  # imports and caches before measuring
        next(iter(warm.batches(50)))
    tracemalloc.start()
    try:
        with InputFile(path, ReadOptions()) as reading:
            frames = sum(t.n_frames for batch in reading.batches(50) for t in batch.trajectories)
            sha256 = reading.sha256()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == 600 * 12
    assert sha256 == hashlib.sha256(content).hexdigest()
    # 25 MB unpacked, 7 MB packed; held whole either would be the peak.
    assert len(content) > 3 * path.stat().st_size > 20 << 20
    assert peak < path.stat().st_size / 2, (peak, path.stat().st_size)
