"""Test fixtures: a real PostgreSQL (embedded pgserver, or ATLAS2D_TEST_DATABASE_URL),
a throwaway database migrated with Alembic, and a savepoint rollback per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.migrate import upgrade
from atlas2d.db.session import make_engine
from tests.support.alloys import AlloyDatabase

VASP_DATA = Path(__file__).resolve().parent / "data" / "vasp"
"""Real VASP outputs (custodian's test files, MIT licence; see tests/data/README.md)."""


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
def database_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on a server where test databases can be created (AUTOCOMMIT)."""
    server_url, server = _server_url(tmp_path_factory)
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]


def _migrated_database(admin: Engine, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _drop_database(admin: Engine, url: str) -> None:
    name = make_engine(url).url.database
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(database_server: Engine) -> Iterator[str]:
    """A fresh, migrated database for this test run; dropped at the end."""
    url = _migrated_database(database_server, "atlas2d_test")
    yield url
    _drop_database(database_server, url)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@contextmanager
def rolled_back_sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose every transaction is a savepoint inside one outer
    transaction, rolled back when the block ends."""
    connection = engine.connect()
    outer = connection.begin()
    try:
        yield sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
    finally:
        outer.rollback()
        connection.close()


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions rolled back after the test: tests never see each other's rows."""
    with rolled_back_sessions(engine) as factory:
        yield factory


@pytest.fixture
def count_rows(sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    """``count_rows("frames")`` → number of rows visible in this test."""

    def count(table: str) -> int:
        with sessions.begin() as session:
            return session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()

    return count


@pytest.fixture
def cli(  # type: ignore[no-untyped-def]
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
):
    """Run ``atlas2d`` commands in-process against the test transaction.

    Returns a function ``cli(*args) -> (exit_code, stdout, stderr)``.
    """
    from typer.testing import CliRunner

    from atlas2d.cli import context
    from atlas2d.cli.main import typer_app

    def connect(check_schema: bool = True) -> context.Database:
        return context.Database(database_url, sessions.kw["bind"].engine, sessions)

    monkeypatch.setattr(context, "connect", connect)
    # Other libraries' output (atlas2d.mlff.chatter) in the test's folder, not the user's.
    monkeypatch.setenv("ATLAS2D_LOG_FILE", str(tmp_path / "atlas2d.log"))
    # `atlas2d sql` reads the test transaction too (as its owner: the reader login and
    # its check are tested end to end in tests/cli/test_sql.py).
    monkeypatch.setattr(context, "connect_reader", connect)
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


# --- trained models (shared by the registry, contract and CLI tests) ---------------------

TINY_M3GNET = {
    "cutoff": 4.0,
    "threebody_cutoff": 3.5,
    "units": 8,
    "nblocks": 1,
    "max_n": 2,
    "max_l": 2,
}
TINY_MACE = {
    "r_max": 4.0,
    "max_l": 0,
    "channels": 8,
    "num_interactions": 2,
    "correlation": 2,
    "max_ell": 2,
}


def tiny_options(architecture: str, **overrides: object):  # type: ignore[no-untyped-def]
    """Training options for a tiny model that trains in seconds on the CPU."""
    from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions

    settings = {
        "architecture": architecture,
        "epochs": 2,
        "batch_size": 4,
        "seed": 7,
        "m3gnet": M3GNetSize(**TINY_M3GNET),  # type: ignore[arg-type]
        "mace": MACESize(**TINY_MACE),  # type: ignore[arg-type]
    }
    return TrainOptions(**{**settings, **overrides})  # type: ignore[arg-type]


class TrainedRegistry:
    """A committed database holding a training set ``layers`` and two ready models,
    ``tiny-m3gnet:1`` and ``tiny-mace:1``, with their artifacts."""

    def __init__(self, url: str, artifacts_dir: Path) -> None:
        from atlas2d.db.session import make_sessions

        self.url = url
        self.engine = make_engine(url)
        self.sessions = make_sessions(self.engine)
        self.artifacts_dir = artifacts_dir


@pytest.fixture(scope="session")
def trained_registry(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrainedRegistry]:
    """Ingest synthetic layers, make a training set and train both architectures once
    per test run, in a database of their own (the runs commit)."""
    import json

    from atlas2d.io.readers import ReadOptions
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.ingest import ingest_file
    from atlas2d.services.training import TrainRequest, train_model
    from atlas2d.services.trainsets import create_training_set
    from tests.support.synthetic import alexandria_document, synthetic_trajectories

    url = _migrated_database(database_server, "atlas2d_models")
    root = tmp_path_factory.mktemp("registry")
    registry = TrainedRegistry(url, root / "artifacts")
    path = root / "layers.json"
    path.write_text(json.dumps(alexandria_document(synthetic_trajectories(16, 6, 6, seed=21))))
    ingest_file(registry.sessions, path, ReadOptions())
    create_training_set(
        registry.sessions, "layers", SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1)
    )
    for architecture in ("m3gnet", "mace"):
        request = TrainRequest(f"tiny-{architecture}", "layers", tiny_options(architecture))
        train_model(registry.sessions, request, registry.artifacts_dir)
    yield registry
    registry.engine.dispose()
    _drop_database(database_server, url)


@pytest.fixture(scope="session")
def alloy_database(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AlloyDatabase]:
    """The demo's alloy layers (Mo-W-S, Mo-Nb-S, S-Ta-Ti and their end members) in a
    database of their own, ingested once per test run (the alloy commands commit)."""
    from tests.support.alloys import make_alloy_database

    url = _migrated_database(database_server, "atlas2d_alloys")
    database = make_alloy_database(url, tmp_path_factory.mktemp("alloys"))
    yield database
    database.engine.dispose()
    _drop_database(database_server, url)
