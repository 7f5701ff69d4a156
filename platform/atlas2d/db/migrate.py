"""Alembic glue: upgrade, current revision, and the schema check every command runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect

from atlas2d.errors import SchemaOutOfDate

if TYPE_CHECKING:  # alembic loads inside the functions, so that `--help` stays instant
    from alembic.config import Config

# migrations/ and alembic.ini sit at the top of the repository (editable install).
PROJECT_ROOT = Path(__file__).resolve().parents[3]
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at ``migrations/``, optionally bound to a connection."""
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; return (revision before, revision after)."""
    from alembic import command

    with engine.begin() as connection:
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), revision)
        after = current_revision(connection)
    assert after is not None
    return before, after


def ensure_schema_current(engine: Engine) -> None:
    """Refuse to run on a schema behind the code; initialise a brand-new empty database.

    A database without any table has nothing to lose, so it is migrated at once (a new
    user's first command just works). A database at an older revision is left alone
    and the user is told to run ``atlas2d db upgrade``.

    Raises:
        SchemaOutOfDate: the database is at another revision than the code's head.
    """
    head = head_revision()
    with engine.connect() as connection:
        current = current_revision(connection)
        empty = current is None and not inspect(connection).get_table_names()
    if current == head:
        return
    if empty:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"The database schema is at revision {current or 'none'} but this atlas2d needs "
        f"{head}: run `atlas2d db upgrade`."
    )
