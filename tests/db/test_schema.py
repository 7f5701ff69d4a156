"""The migrated schema equals the ORM models, and its constraints hold."""

from __future__ import annotations

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.migrate import current_revision, head_revision
from atlas2d.db.models import Base
from atlas2d.io.records import ParsedFile
from atlas2d.services.ingest import ingest_parsed
from tests.support.synthetic import synthetic_trajectories


def test_migrated_database_equals_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert current_revision(connection) == head_revision()


def _ingest_one(sessions: sessionmaker[Session]) -> None:
    trajectories = synthetic_trajectories(1, 4, 3, seed=3, key_prefix="schema")
    ingest_parsed(sessions, ParsedFile("mem", "records", "", "test", trajectories=trajectories))


def test_a_frame_must_belong_to_a_relaxation(sessions: sessionmaker[Session]) -> None:
    _ingest_one(sessions)
    with pytest.raises(DBAPIError, match="refers to no relaxation"), sessions.begin() as session:
        session.execute(text("UPDATE frames SET relaxation_id = relaxation_id + 1000"))


def test_deleting_a_relaxation_deletes_its_frames(
    sessions: sessionmaker[Session], count_rows
) -> None:  # type: ignore[no-untyped-def]
    _ingest_one(sessions)
    assert count_rows("frames") == 4
    with sessions.begin() as session:
        session.execute(text("DELETE FROM sources"))  # cascades to relaxations, then frames
    assert count_rows("relaxations") == 0
    assert count_rows("frames") == 0


def test_array_length_checks(sessions: sessionmaker[Session]) -> None:
    _ingest_one(sessions)
    with pytest.raises(DBAPIError, match="ck_frames_positions_length"), sessions.begin() as session:
        session.execute(text("UPDATE frames SET positions = :p"), {"p": np.zeros((2, 3)).tobytes()})


def test_the_frames_step_index_covers_the_selection(engine: Engine) -> None:
    """Training-set selection reads these columns from the index alone."""
    with engine.connect() as connection:
        definition = connection.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_frames_relaxation_id_step'")
        ).scalar_one()
    assert definition.endswith(
        "(relaxation_id, step) INCLUDE (id, energy_change, n_sites, energy_per_atom,"
        " max_force, max_abs_stress, has_isolated_atom)"
    )
