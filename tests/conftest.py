"""Test fixtures: a real PostgreSQL (embedded pgserver, or ATLAS2D_TEST_DATABASE_URL),
a throwaway database migrated with Alembic, and a savepoint rollback per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.migrate import upgrade
from atlas2d.db.session import make_engine

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VASP_DATA = SHARED_DATA / "vasp"


def _server_url(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object | None]:
    """URL of a server on which test databases can be created, and the embedded server."""
    external = os.environ.get("ATLAS2D_TEST_DATABASE_URL")
    if external:
        return external, None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = tmp_path_factory.mktemp("pg", numbered=True) / "pgdata"
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    return server.get_uri("postgres"), server


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for this test run; dropped at the end."""
    server_url, server = _server_url(tmp_path_factory)
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"atlas2d_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_engine(server_url).url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose every transaction is a savepoint inside one outer
    transaction that is rolled back after the test: tests never see each other's rows."""
    connection = engine.connect()
    outer = connection.begin()
    yield sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    outer.rollback()
    connection.close()


@pytest.fixture
def count_rows(sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    """``count_rows("frames")`` → number of rows visible in this test."""

    def count(table: str) -> int:
        with sessions.begin() as session:
            return session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()

    return count


@pytest.fixture
def cli(sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, database_url: str):  # type: ignore[no-untyped-def]
    """Run ``atlas2d`` commands in-process against the test transaction.

    Returns a function ``cli(*args) -> (exit_code, stdout, stderr)``.
    """
    from typer.testing import CliRunner

    from atlas2d.cli import context
    from atlas2d.cli.main import typer_app

    def connect(check_schema: bool = True) -> context.Database:
        return context.Database(database_url, sessions.kw["bind"].engine, sessions)

    monkeypatch.setattr(context, "connect", connect)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(typer_app, list(args), catch_exceptions=True)
        if result.exception and not isinstance(result.exception, SystemExit):
            from atlas2d.errors import Atlas2dError

            if isinstance(result.exception, Atlas2dError):
                return 1, result.stdout, str(result.exception)
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run
