"""A split's frames read by binary COPY (``queries.training_sets.split_frames``) equal
what the row-by-row SQLAlchemy read gave, field for field and bit for bit, and the MACE
export is byte-identical, on frames with the edge cases stored data can hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput
from atlas2d.io.exporters import write_mace_extxyz
from atlas2d.io.records import ParsedFile
from atlas2d.queries import training_sets
from atlas2d.queries.training_sets import SelectionParameters, TrainingFrame
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.trainset_export import export_training_set
from atlas2d.services.trainsets import create_training_set
from atlas2d.vocabulary import SPLITS
from tests.support.row_reader import reference_export_frames, reference_frames
from tests.support.synthetic import synthetic_trajectories

HUGE = np.finfo(np.float64).max
TINY = 5e-324  # the smallest subnormal


def _le_bytes(values: Any) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _edit(session: Session, sql: str, **params: Any) -> None:
    session.execute(text(sql), params)


@pytest.fixture
def edge_set(sessions: sessionmaker[Session]) -> int:
    """A 3-split set of 12 relaxations whose stored frames were then given edge cases:
    one relaxation of 1 atom, frames without stress, −0.0, the largest and the smallest
    doubles, a material without dimensionality and one in 3D, a non-periodic axis and a
    non-ASCII material key."""
    trajectories = synthetic_trajectories(12, (3, 6), (2, 7), seed=5, key_prefix="edge")
    ingest_parsed(sessions, ParsedFile("edge", "records", "", "test", trajectories=trajectories))
    create_training_set(
        sessions, "edge", SelectionParameters(rule="all", split=(50.0, 25.0, 25.0), seed=3)
    )
    with sessions.begin() as session:
        set_id = session.execute(text("SELECT id FROM training_sets WHERE name = 'edge'")).one()[0]
        relaxations = session.execute(text("SELECT id FROM relaxations ORDER BY id")).scalars()
        one_atom, no_stress, extremes, bulk, loose, *_ = relaxations.all()
        # One atom: the relaxation's species and every frame's arrays cut to the first.
        _edit(
            session,
            "UPDATE relaxations SET n_sites = 1, species = species[1:1] WHERE id = :id",
            id=one_atom,
        )
        _edit(
            session,
            "UPDATE frames SET n_sites = 1, positions = substring(positions for 24),"
            " forces = substring(forces for 24) WHERE relaxation_id = :id",
            id=one_atom,
        )
        _edit(session, "UPDATE frames SET stress = NULL WHERE relaxation_id = :id", id=no_stress)
        # Every frame of another relaxation: -0.0, the largest and smallest doubles.
        n_sites = session.execute(
            text("SELECT n_sites FROM relaxations WHERE id = :id"), {"id": extremes}
        ).scalar_one()
        edge_values = np.array([-0.0, HUGE, -HUGE, TINY, -TINY, 0.0, 1e300, -1e-300, 1.5])
        vectors = np.resize(edge_values, (n_sites, 3))
        _edit(
            session,
            "UPDATE frames SET cell = :cell, stress = :stress, positions = :positions,"
            " forces = :forces, energy = :energy WHERE relaxation_id = :id",
            cell=edge_values.reshape(3, 3).tolist(),
            stress=edge_values[::-1].reshape(3, 3).tolist(),
            positions=_le_bytes(vectors),
            forces=_le_bytes(vectors[::-1]),
            energy=-0.0,  # a literal -0.0 is numeric, whose zero has no sign
            id=extremes,
        )
        _edit(
            session,
            "UPDATE materials SET dimensionality = 3"
            " WHERE id = (SELECT material_id FROM relaxations WHERE id = :id)",
            id=bulk,
        )
        _edit(
            session,
            "UPDATE materials SET dimensionality = NULL, key = 'MoS₂ «layer» \"q\" 1'"
            " WHERE id = (SELECT material_id FROM relaxations WHERE id = :id)",
            id=loose,
        )
        _edit(session, "UPDATE relaxations SET pbc = '{t,t,f}' WHERE id = :id", id=loose)
    return int(set_id)


def _same(new: Any, old: Any) -> bool:
    """Equal values of the same type; arrays also of one dtype and shape, bit for bit."""
    if isinstance(old, np.ndarray):
        return (
            isinstance(new, np.ndarray)
            and new.dtype == old.dtype
            and new.shape == old.shape
            and new.tobytes() == old.tobytes()
        )
    if isinstance(old, tuple):
        return len(new) == len(old) and all(_same(a, b) for a, b in zip(new, old, strict=True))
    if isinstance(old, float):
        return type(new) is float and np.float64(new).tobytes() == np.float64(old).tobytes()
    return type(new) is type(old) and new == old


def test_split_frames_equal_the_row_reader_bit_for_bit(
    sessions: sessionmaker[Session], edge_set: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 4 rows: frames cross batch boundaries, and the last batch is short.
    monkeypatch.setattr(training_sets, "SPLIT_FRAMES_BATCH", 4)
    seen = {"frames": 0, "one_atom": 0, "no_stress": 0, "negative_zero": 0, "open_axis": 0}
    with sessions.begin() as session:
        for split in SPLITS:
            new = list(training_sets.split_frames(session, edge_set, split))
            old = list(reference_frames(session, edge_set, split))
            assert len(new) == len(old) > 0
            for a, b in zip(new, old, strict=True):
                for name in TrainingFrame.__dataclass_fields__:
                    assert _same(getattr(a, name), getattr(b, name)), (b.frame_id, name)
            seen["frames"] += len(new)
            seen["one_atom"] += sum(len(f.species) == 1 for f in new)
            seen["no_stress"] += sum(f.stress is None for f in new)
            seen["negative_zero"] += sum(bool(np.signbit(f.energy)) for f in new)
            seen["open_axis"] += sum(f.pbc == (True, True, False) for f in new)
        dims = session.execute(text("SELECT count(*) FROM materials WHERE dimensionality IS NULL"))
        assert dims.scalar_one() == 1
    # Every edge case was read (the fixture's edits reached frames of the set).
    assert all(count > 0 for count in seen.values()), seen


def test_mace_export_is_byte_identical_to_the_row_reader(
    sessions: sessionmaker[Session],
    edge_set: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(training_sets, "SPLIT_FRAMES_BATCH", 5)
    new = export_training_set(sessions, "edge", "mace", tmp_path / "new")
    # The baseline: rows read one by one, written frame by frame by the per-frame writer.
    with sessions.begin() as session:
        for split, (path, count) in new.items():
            old = tmp_path / f"old_{split}.xyz"
            frames = reference_export_frames(session, edge_set, "edge", split)
            assert write_mace_extxyz(frames, old) == count
            assert path.read_bytes() == old.read_bytes(), split
    assert b"-0.0" in b"".join(path.read_bytes() for path, _ in new.values())


def test_a_malformed_stored_frame_is_one_clear_error(
    sessions: sessionmaker[Session], edge_set: int
) -> None:
    with sessions.begin() as session:
        frame_id = session.execute(
            text("SELECT min(frame_id) FROM training_set_frames WHERE split = 'train'")
        ).scalar_one()
        # A 1-D cell passes the table's check (9 elements) but is no 3×3 matrix.
        _edit(
            session,
            "UPDATE frames SET cell = ARRAY[1, 0, 0, 0, 1, 0, 0, 0, 1]::float8[] WHERE id = :id",
            id=frame_id,
        )
    refused = pytest.raises(InvalidInput, match=r"cell holds an array that is not 3×3.*verify")
    with refused, sessions.begin() as session:
        list(training_sets.split_frames(session, edge_set, "train"))
