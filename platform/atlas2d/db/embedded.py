"""The embedded PostgreSQL 16 (``pgserver``), used when no database URL is set."""

from __future__ import annotations

import warnings
from pathlib import Path

from atlas2d.errors import DatabaseUnavailable

EMBEDDED_DATABASE = "atlas2d"


def _get_server(pgdata: Path):  # type: ignore[no-untyped-def]
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

    The database is created when it does not exist yet.
    """
    server = _get_server(pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database).replace("postgresql://", "postgresql+psycopg://", 1)


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server under ``pgdata`` if one runs; return whether it did."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _get_server(pgdata)
    server.cleanup_mode = "stop"
    server.cleanup()
    return True
