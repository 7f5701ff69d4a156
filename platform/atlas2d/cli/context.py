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
    """
    from atlas2d.db.migrate import ensure_schema_current
    from atlas2d.db.session import make_engine, make_sessions, resolve_database_url

    url = resolve_database_url(get_settings())
    engine = make_engine(url)
    if check_schema:
        ensure_schema_current(engine)
    return Database(url, engine, make_sessions(engine))
