"""The database a command works on, opened at the edge (never at import)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.config import get_settings


@dataclass
class Database:
    """An engine, its session factory and the URL it came from."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]


def connect(check_schema: bool = True) -> Database:
    """Connect to the configured database (starting the embedded one if needed).

    Args:
        check_schema: refuse a schema behind the code (``atlas2d db upgrade``); a new
            empty database is migrated at once.

    Raises:
        DatabaseUnavailable: the server cannot be reached (one line naming the URL).
    """
    from atlas2d.db.migrate import ensure_schema_current
    from atlas2d.db.session import (
        check_reachable,
        make_engine,
        make_sessions,
        resolve_database_url,
    )

    url = resolve_database_url(get_settings())
    engine = make_engine(url)
    check_reachable(engine, url)
    if check_schema:
        ensure_schema_current(engine)
    return Database(url, engine, make_sessions(engine))


def connect_reader() -> Database:
    """Connect as a login that can only read, for user SQL (``atlas2d sql``).

    The login is ``ATLAS2D_READER_DATABASE_URL``'s, or on the embedded server its
    ``atlas2d_sql`` (the database is first made ready as :func:`connect` does: started,
    a new one migrated, the login made). It is checked before it is used: a login that
    could write or administer the database is refused.

    Raises:
        NoReaderLogin: an external server without ``ATLAS2D_READER_DATABASE_URL``, or a
            login that can do more than read.
        DatabaseUnavailable: the reader login cannot connect.
    """
    from atlas2d.db.session import make_engine, make_sessions, resolve_reader_url
    from atlas2d.services.sql import check_reader_login

    settings = get_settings()
    embedded = not settings.reader_database_url and not settings.database_url
    if embedded:
        connect()
    url = resolve_reader_url(settings)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    source = "the embedded server" if embedded else "ATLAS2D_READER_DATABASE_URL"
    check_reader_login(sessions, source)
    return Database(url, engine, sessions)
