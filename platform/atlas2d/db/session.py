"""Engines and session factories, made at the edge (a command, a test), never at import."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.config import Settings
from atlas2d.db.embedded import embedded_url


def resolve_database_url(settings: Settings) -> str:
    """The configured database URL, starting the embedded server when none is set."""
    if settings.database_url:
        return settings.database_url
    return embedded_url(settings.pgdata_dir)


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine on psycopg 3 (``postgresql://`` URLs are switched to it)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Session factory; services use ``with sessions.begin() as session:``."""
    return sessionmaker(engine, expire_on_commit=False)


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def driver_connection(session: Session) -> Any:
    """The psycopg connection under the session, inside the session's transaction (for COPY)."""
    return session.connection().connection.driver_connection
