"""Each request's database session: one READ ONLY transaction with a statement timeout,
on a login that can only read, rolled back when the response is made."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.queries.user_sql import begin_read_only


@dataclass(frozen=True)
class ReadOnlyDatabase:
    """What the app reads through.

    Attributes:
        sessions: session factory on a reader login (``connect_reader``).
        statement_timeout_ms: longest statement a request may run, ms.
        login: the login's name, for the start-up line.
    """

    sessions: sessionmaker[Session]
    statement_timeout_ms: int
    login: str = ""


def read_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a session inside a READ ONLY transaction whose statements
    stop after the app's statement timeout; nothing is ever committed."""
    database: ReadOnlyDatabase = request.app.state.database
    # The transaction begins with its first statement and is rolled back when the
    # session closes.
    with database.sessions() as session:
        begin_read_only(session, database.statement_timeout_ms)
        yield session
