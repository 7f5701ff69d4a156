"""``atlas2d sql``: one statement, READ ONLY, as a login that can only read, with a
statement timeout and a row limit.

The probes run the installed ``atlas2d`` entry point in a subprocess, as an attacker
would, against a committed database of the test server; the in-process tests (the ``cli``
fixture, inside the test transaction) cover formats and options.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from atlas2d.db.embedded import CREATE_READER_LOGIN
from atlas2d.db.embedded import EMBEDDED_READER_LOGIN as READER_LOGIN
from tests.conftest import VASP_DATA, _drop_database, _migrated_database
from tests.support.entry_point import atlas2d_script

FE2O2 = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"
COUNTED = ("materials", "frames", "model_versions")


@dataclass
class SqlDatabase:
    """A committed database with materials, frames and a model version, and the URLs of
    its owner (superuser on the embedded test server) and of the reader login."""

    owner_url: str
    reader_url: str
    engine: Engine
    home: Path

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            counts = {
                t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in COUNTED
            }
            counts["sha256"] = connection.execute(
                text(
                    "SELECT count(*) FROM model_versions WHERE artifact_sha256 = 'a' || repeat('0', 63)"
                )
            ).scalar_one()
        return counts

    def atlas2d(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``atlas2d *args`` with this database configured (``env`` overrides)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
        base |= {
            "ATLAS2D_HOME": str(self.home),  # never the user's own embedded server
            "ATLAS2D_DATABASE_URL": self.owner_url,
            "ATLAS2D_READER_DATABASE_URL": self.reader_url,
            "COLUMNS": "200",
        }
        merged = {k: v for k, v in (base | env).items() if v}
        return subprocess.run(
            [atlas2d_script(), *args], env=merged, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="module")
def sql_database(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlDatabase]:
    from atlas2d.db.session import make_engine, make_sessions
    from atlas2d.io.readers import ReadOptions
    from atlas2d.queries.model_versions import finish_version, insert_training_version
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.ingest import ingest_file
    from atlas2d.services.trainsets import create_training_set

    url = _migrated_database(database_server, "atlas2d_sql")
    engine = make_engine(url)
    sessions = make_sessions(engine)
    ingest_file(sessions, FE2O2, ReadOptions())
    create_training_set(sessions, "all", SelectionParameters(ecut=1e6, seed=1))
    with sessions.begin() as session:
        training_set_id = session.execute(text("SELECT id FROM training_sets")).scalar_one()
        version_id, _ = insert_training_version(session, "m", "mace", training_set_id, None, {}, {})
        finish_version(
            session,
            version_id,
            status="ready",
            artifact_path="m/1.pt",
            artifact_sha256="a" + "0" * 63,
        )
    # The reader login, as the embedded server has it; a password for servers that ask.
    password = secrets.token_hex(16)
    with database_server.connect() as connection:
        connection.execute(text(CREATE_READER_LOGIN))
        connection.execute(text(f"ALTER ROLE {READER_LOGIN} PASSWORD '{password}'"))
    reader_url = (
        make_url(url)
        .set(username=READER_LOGIN, password=password)
        .render_as_string(hide_password=False)
    )
    database = SqlDatabase(url, reader_url, engine, tmp_path_factory.mktemp("sql_home"))
    assert all(database.counts().values())  # every probe has rows to destroy
    yield database
    engine.dispose()
    _drop_database(database_server, url)


PROGRAM_TARGET = Path("/tmp") / f"atlas2d-sql-probe-{uuid.uuid4().hex}"
FILE_TARGET = Path("/tmp") / f"atlas2d-sql-probe-{uuid.uuid4().hex}"

PROBES = [
    "SET TRANSACTION READ WRITE; DELETE FROM frames",
    "COMMIT; DELETE FROM frames",
    "SELECT 1 /* ; */ ; DELETE FROM frames",
    "SELECT $$;$$; DELETE FROM frames",
    "SELECT 1;\n-- a comment\nDELETE FROM frames",
    f"COPY (SELECT 1) TO PROGRAM 'id > {PROGRAM_TARGET}'",
    f"COPY materials TO '{FILE_TARGET}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
    "LOCK TABLE frames IN ACCESS EXCLUSIVE MODE",
    "SELECT pg_reload_conf()",
    "UPDATE model_versions SET artifact_sha256 = 'x'",
    "UPDATE model_versions SET artifact_sha256 = 'x' RETURNING id",
    "DELETE FROM frames",
    "WITH gone AS (DELETE FROM frames RETURNING id) SELECT count(*) FROM gone",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config('transaction_read_only', 'off', true)",
    "RESET ROLE",
    "SET ROLE postgres",
    "CREATE TABLE x (i int)",
    "DO $$ BEGIN DELETE FROM frames; END $$",
]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.split("\n")[0][:40])
def test_every_probe_is_refused_in_one_line_and_changes_nothing(
    sql_database: SqlDatabase, probe: str
) -> None:
    before = sql_database.counts()
    done = sql_database.atlas2d("sql", probe)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and done.stderr.strip().count("\n") == 0, done.stderr
    assert sql_database.counts() == before
    assert not PROGRAM_TARGET.exists() and not FILE_TARGET.exists()


def test_a_count_and_the_stable_compounds_view_still_work(sql_database: SqlDatabase) -> None:
    done = sql_database.atlas2d(
        "sql", "SELECT count(*) AS n, current_user AS who FROM materials", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 1, "who": READER_LOGIN}]
    done = sql_database.atlas2d("sql", "SELECT * FROM stable_compounds", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("material_key,formula")


def test_a_statement_past_the_timeout_is_stopped(sql_database: SqlDatabase) -> None:
    done = sql_database.atlas2d("sql", "SELECT pg_sleep(5)", ATLAS2D_SQL_TIMEOUT_S="0.2")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "statement timeout" in done.stderr and "ATLAS2D_SQL_TIMEOUT_S" in done.stderr


def test_rows_past_the_limit_are_cut_with_a_message(sql_database: SqlDatabase) -> None:
    done = sql_database.atlas2d(
        "sql", "SELECT g FROM generate_series(1, 10005) AS g", "--format", "csv"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["g", *(str(g) for g in range(1, 10_001))]
    assert done.stderr.strip() == "showing the first 10,000 rows; use --limit to see more"


def test_rows_are_streamed_not_fetched_whole(sql_database: SqlDatabase) -> None:
    """Row 5001 divides by zero: a command that reads every row before printing any
    meets it; one that streams stops after the 10 rows asked for. (``g / (g - g)``, not
    ``1 / 0``, which PostgreSQL would fold while planning.)"""
    statement = (
        "SELECT CASE WHEN g <= 5000 THEN g ELSE g / (g - g) END AS g "
        "FROM generate_series(1, 50000) AS g"
    )
    done = sql_database.atlas2d("sql", statement, "--limit", "10", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["g", *(str(g) for g in range(1, 11))]
    assert "showing the first 10 rows" in done.stderr
    everything = sql_database.atlas2d("sql", statement, "--limit", "50000", "--format", "csv")
    assert everything.returncode == 1 and "division by zero" in everything.stderr


def test_an_external_server_without_a_reader_login_is_refused(sql_database: SqlDatabase) -> None:
    done = sql_database.atlas2d("sql", "SELECT 1", ATLAS2D_READER_DATABASE_URL="")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "ATLAS2D_READER_DATABASE_URL" in done.stderr
    assert "IN ROLE atlas2d_reader" in done.stderr


def test_the_owners_login_is_refused_as_reader(sql_database: SqlDatabase) -> None:
    done = sql_database.atlas2d(
        "sql", "SELECT 1", ATLAS2D_READER_DATABASE_URL=sql_database.owner_url
    )
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    with sql_database.engine.connect() as connection:
        superuser = connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()
    # A superuser owner (the embedded server, compose) is named as one; an owner that is
    # not (CI's external server) can still write the tables.
    assert ("superuser" if superuser else "can write") in done.stderr


def test_a_reader_login_that_can_write_is_refused(
    sql_database: SqlDatabase, database_server: Engine
) -> None:
    login = f"atlas2d_writer_{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(16)
    with database_server.connect() as connection:
        connection.execute(
            text(f"CREATE ROLE {login} LOGIN PASSWORD '{password}' IN ROLE atlas2d_reader")
        )
    with sql_database.engine.begin() as connection:
        connection.execute(text(f"GRANT DELETE ON frames TO {login}"))
    url = make_url(sql_database.owner_url).set(username=login, password=password)
    try:
        done = sql_database.atlas2d(
            "sql", "SELECT 1", ATLAS2D_READER_DATABASE_URL=url.render_as_string(hide_password=False)
        )
    finally:
        with sql_database.engine.begin() as connection:
            connection.execute(text(f"REVOKE ALL ON frames FROM {login}"))
        with database_server.connect() as connection:
            connection.execute(text(f"DROP ROLE {login}"))
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "frames" in done.stderr and password not in done.stderr


WRITING_PROBES = [
    "COMMIT; DELETE FROM frames",
    f"COPY (SELECT 1) TO PROGRAM 'id > {PROGRAM_TARGET}'",
    f"COPY materials TO '{FILE_TARGET}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "LOCK TABLE frames IN ACCESS EXCLUSIVE MODE",
    "SELECT pg_reload_conf()",
    "UPDATE model_versions SET artifact_sha256 = 'x'",
    "DELETE FROM frames",
    "SELECT set_config('role', 'postgres', false)",
    "SET ROLE postgres",
    "CREATE TABLE x (i int)",
    "DO $$ BEGIN DELETE FROM frames; END $$",
]


@pytest.mark.parametrize("probe", WRITING_PROBES, ids=lambda p: p[:40])
def test_the_reader_login_alone_can_do_none_of_it(sql_database: SqlDatabase, probe: str) -> None:
    """The login is a lock of its own: in a read-write transaction, several statements
    allowed (the simple query protocol), it is still refused every probe."""
    import psycopg

    before = sql_database.counts()
    url = make_url(sql_database.reader_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(probe.encode())  # bytes: no parameter parsing
        connection.rollback()
    assert sql_database.counts() == before
    assert not PROGRAM_TARGET.exists() and not FILE_TARGET.exists()


# --- in-process, inside the test transaction ----------------------------------------


def test_formats_keep_every_value(cli) -> None:  # type: ignore[no-untyped-def]
    statement = (
        "SELECT 1 AS a, 'x' AS b, 2.5::numeric AS c, 28::numeric AS d, "
        "'\\x0102'::bytea AS e, NULL AS f, 0.1::float8 AS g"
    )
    code, out, _ = cli("sql", statement, "--format", "json")
    assert code == 0
    assert json.loads(out) == [
        {"a": 1, "b": "x", "c": 2.5, "d": 28, "e": "\\x0102", "f": None, "g": 0.1}
    ]
    code, out, _ = cli("sql", statement, "--format", "csv")
    assert code == 0 and out.splitlines() == ["a,b,c,d,e,f,g", "1,x,2.5,28,b'\\x01\\x02',,0.1"]
    code, out, _ = cli("sql", "SELECT g FROM generate_series(1, 0) AS g", "--format", "json")
    assert code == 0 and out == "[]\n"
    code, out, _ = cli("sql", "SELECT g FROM generate_series(1, 0) AS g", "--format", "csv")
    assert code == 0 and out == "g\n"
    code, out, _ = cli("sql", "SELECT 'MoS2' AS formula, 2 AS n")
    assert code == 0 and "formula" in out and "MoS2" in out


def test_limit_and_timeout_options(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("sql", "SELECT g FROM generate_series(1, 5) AS g", "--limit", "3")
    assert code == 0 and "3" in out and "4" not in out.replace("┃", "")
    assert err.strip() == "showing the first 3 rows; use --limit to see more"
    code, _, err = cli("sql", "SELECT g FROM generate_series(1, 3) AS g", "--limit", "3")
    assert code == 0 and err == ""
    code, _, err = cli("sql", "SELECT 1", "--limit", "0")
    assert code == 2
    code, _, err = cli("sql", "SELECT pg_sleep(5)", "--timeout", "0.1")
    assert code == 1 and "statement timeout" in err and "--timeout" in err


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("", "is empty"),
        ("  -- only a comment", "returns no rows"),
        ("SET ROLE postgres", "returns no rows"),
        ("SELECT 1\x00; DELETE FROM frames", "NUL character"),
        ("SELECT '\udcff'", "not valid UTF-8"),
        ("SELEC 1", 'syntax error at or near "SELEC"'),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT $1", "1 parameter(s)"),
    ],
)
def test_refused_statements_say_why_in_one_line(cli, statement: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("sql", statement)
    assert code == 1 and expected in err and "\n" not in err.strip() and out == ""


def test_a_timeout_beyond_what_postgresql_takes_is_a_usage_line(sql_database: SqlDatabase) -> None:
    too_long = sql_database.atlas2d("sql", "SELECT 1", "--timeout", "3000000")
    assert too_long.returncode == 2 and "Traceback" not in too_long.stderr
    bad_setting = sql_database.atlas2d("sql", "SELECT 1", ATLAS2D_SQL_TIMEOUT_S="abc")
    assert bad_setting.returncode == 1
    assert bad_setting.stderr.strip().splitlines() == [
        "error: ATLAS2D_SQL_TIMEOUT_S='abc': Input should be a valid number, unable to parse "
        "string as a number. Fix or unset the variable."
    ]


def test_advisory_locks_taken_by_a_statement_are_released(sql_database: SqlDatabase) -> None:
    """atlas2d's writers serialise on advisory locks; a session-level one survives the
    rollback, so a pooled reader connection would otherwise keep blocking them."""
    from atlas2d.db.session import make_engine, make_sessions
    from atlas2d.services.sql import run_user_sql

    class Rows:
        def start(self, columns: list[str]) -> None: ...

        def add(self, row: tuple) -> None: ...  # type: ignore[type-arg]

    reader = make_engine(sql_database.reader_url)
    try:
        run_user_sql(
            make_sessions(reader),
            "SELECT pg_advisory_lock(424242)",
            limit=1,
            timeout_s=5,
            sink=Rows(),
        )
        with sql_database.engine.connect() as connection:
            held = connection.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242")
            ).scalar_one()
        assert reader.pool.checkedin() == 1  # the connection went back to the pool, open
        assert held == 0
    finally:
        reader.dispose()


@pytest.mark.slow
def test_the_embedded_server_has_a_reader_login(tmp_path: Path) -> None:
    """A new user's embedded server: the login is made with the database, and
    ``atlas2d sql`` runs as it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
    env["ATLAS2D_HOME"] = str(tmp_path / "a2d")

    def atlas2d(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [atlas2d_script(), *args], env=env, capture_output=True, text=True, timeout=300
        )

    try:
        done = atlas2d(
            "sql", "SELECT current_user AS who, count(*) AS n FROM materials", "--format", "json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [{"who": READER_LOGIN, "n": 0}]
        done = atlas2d("sql", "SELECT pg_read_file('/etc/passwd')")
        assert done.returncode == 1 and "permission denied" in done.stderr
        assert done.stderr.strip().count("\n") == 0
    finally:
        atlas2d("db", "stop")
