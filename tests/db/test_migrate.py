"""The schema check every command runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, inspect, text

from atlas2d.db.migrate import current_revision, ensure_schema_current, head_revision
from atlas2d.db.session import make_engine, redacted_url
from atlas2d.errors import SchemaOutOfDate


@pytest.fixture
def empty_database(database_url: str) -> Iterator[Engine]:
    admin = make_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"atlas2d_empty_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(
        make_engine(database_url).url.set(database=name).render_as_string(hide_password=False)
    )
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_new_empty_database_is_migrated(empty_database: Engine) -> None:
    ensure_schema_current(empty_database)
    with empty_database.connect() as connection:
        assert current_revision(connection) == head_revision()
        assert {"materials", "frames"} <= set(inspect(connection).get_table_names())


def test_a_database_behind_the_code_is_refused(empty_database: Engine) -> None:
    with empty_database.begin() as connection:
        connection.execute(
            text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        )
        connection.execute(text("INSERT INTO alembic_version VALUES ('0000older000')"))
    with pytest.raises(SchemaOutOfDate, match=r"revision 0000older000 .* run `atlas2d db upgrade`"):
        ensure_schema_current(empty_database)


def test_password_is_hidden() -> None:
    assert redacted_url("postgresql+psycopg://me:secret@db.example/atlas") == (
        "postgresql+psycopg://me:***@db.example/atlas"
    )
