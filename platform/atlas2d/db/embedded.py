"""The embedded PostgreSQL 16 (``pgserver``), used when no database URL is set."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas2d.errors import DatabaseUnavailable

EMBEDDED_DATABASE = "atlas2d"

EMBEDDED_READER_LOGIN = "atlas2d_sql"
"""The login user SQL (``atlas2d sql``) runs as on the embedded server: a member of
``atlas2d_reader`` (SELECT on the atlas2d tables, granted by the migrations) and nothing
more: no superuser, no CREATEDB, no CREATEROLE."""

# Roles belong to the server, not to one database, so the login is made once per server,
# together with the reader role it joins if no migration has made that yet (the
# migration grants it SELECT in each database). No password: the embedded server listens
# on a unix socket only, with `trust` authentication, so whoever can reach the socket
# (its folder's permissions decide) may connect, as this login or as the owner `postgres`
# alike: the reader login opens no door that was closed.
CREATE_READER_LOGIN = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atlas2d_reader') THEN
        CREATE ROLE atlas2d_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{EMBEDDED_READER_LOGIN}') THEN
        CREATE ROLE {EMBEDDED_READER_LOGIN} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOREPLICATION NOBYPASSRLS IN ROLE atlas2d_reader;
    END IF;
END $$;
"""


def _get_server(pgdata: Path) -> Any:  # a pgserver.PostgresServer (the package has no type hints)
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on import; not the user's concern.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None keeps the server running after this process exits, so the
        # next command connects at once instead of starting PostgreSQL again.
        return pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as err:
        raise DatabaseUnavailable(
            f"Could not start the embedded PostgreSQL in {pgdata}: {err}. "
            "Check that the folder is writable, or set ATLAS2D_DATABASE_URL to use "
            "an external PostgreSQL."
        ) from err


def embedded_url(pgdata: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded server under ``pgdata``; return a URL to ``database``.

    The database is created when it does not exist yet, and the reader login
    (:data:`EMBEDDED_READER_LOGIN`) when the server has none, so every command, ``atlas2d
    db upgrade`` included, leaves the server ready for ``atlas2d sql``.
    """
    server = _get_server(pgdata)
    # One psql run for both: each costs a process start.
    exists = server.psql(
        CREATE_READER_LOGIN + f"SELECT 1 FROM pg_database WHERE datname = '{database}';"
    )
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database).replace("postgresql://", "postgresql+psycopg://", 1)


def embedded_reader_url(pgdata: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Like :func:`embedded_url`, but logged in as :data:`EMBEDDED_READER_LOGIN`."""
    from sqlalchemy.engine import make_url

    owner = make_url(embedded_url(pgdata, database))
    return owner.set(username=EMBEDDED_READER_LOGIN).render_as_string(hide_password=False)


@dataclass(frozen=True)
class StopReport:
    """What ``stop_embedded`` did.

    Attributes:
        stopped_pid: process id of the postmaster that was stopped; None when no server
            was running.
        stale_handles: handles left by processes that died without releasing them
            (``kill -9``); removed from ``pgdata/.handle_pids.json``.
        live_handles: other processes that held a handle and are still alive; any
            connection they had was closed and its open transaction rolled back.
    """

    stopped_pid: int | None
    stale_handles: int
    live_handles: int


def stop_embedded(pgdata: Path, timeout_s: int = 60) -> StopReport:
    """Stop the embedded server under ``pgdata`` for real, whoever started it.

    pgserver stops a server only when its last handle is released, and a process
    killed with ``kill -9`` never releases its handle, so asking pgserver would report
    success while the server keeps running. Instead the postmaster named in
    ``postmaster.pid`` is stopped with ``pg_ctl stop -m fast`` (open transactions are
    rolled back, nothing half-written stays) and the handles of dead processes are
    dropped. A server that is not running is never started.

    Raises:
        DatabaseUnavailable: ``pg_ctl`` failed or the postmaster outlived ``timeout_s``.
    """
    import json
    import os
    import subprocess

    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning on import
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.postgres_server import PostgresServer

    # pgserver's own inter-process lock: no other atlas2d process starts the server
    # (or registers a handle) while it is being stopped.
    with PostgresServer._lock:
        handles_file = pgdata / ".handle_pids.json"
        handles = json.loads(handles_file.read_text()) if handles_file.exists() else []
        # This process's own handle goes too (and pgserver's cached server object, so a
        # later call here starts a new server instead of reusing the stopped one).
        others = [pid for pid in handles if pid != os.getpid()]
        PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
        alive = [pid for pid in others if psutil.pid_exists(pid)]
        if alive != handles:
            handles_file.write_text(json.dumps(alive))
        stale = len(others) - len(alive)
        postmaster = _running_postmaster(pgdata)
        if postmaster is None:
            return StopReport(None, stale, 0)
        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-D", str(pgdata)]
        command += ["-m", "fast", "-w", "-t", str(timeout_s)]
        # pg_ctl refuses to run as root; pgserver runs the server as the data folder's
        # owner (the user `pgserver` when started by root), so run pg_ctl as that user.
        owner = pgdata.stat().st_uid
        user = owner if os.geteuid() == 0 and owner != 0 else None
        done = subprocess.run(command, capture_output=True, text=True, user=user, check=False)
        if done.returncode != 0 or _running_postmaster(pgdata) is not None:
            reason = " ".join((done.stderr or done.stdout).split()) or "no message"
            raise DatabaseUnavailable(
                f"Could not stop the embedded PostgreSQL in {pgdata} (postmaster pid "
                f"{postmaster}): pg_ctl said: {reason}. Stop it with `kill -INT {postmaster}`."
            )
        return StopReport(postmaster, stale, len(alive))


def _running_postmaster(pgdata: Path) -> int | None:
    """The pid of the PostgreSQL postmaster serving ``pgdata``, or None if none runs.

    A ``postmaster.pid`` left by a crash may name a pid now used by another program,
    or a postmaster that died and waits to be reaped: only a live process named
    ``postgres`` counts.
    """
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
        running = process.name() == "postgres" and process.status() != psutil.STATUS_ZOMBIE
        return pid if running else None
    except (FileNotFoundError, IndexError, ValueError, psutil.Error):
        return None
