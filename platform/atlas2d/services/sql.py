"""Run one user SQL statement in a READ ONLY transaction."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput


def run_readonly(sessions: sessionmaker[Session], statement: str) -> pd.DataFrame:
    """Execute ``statement`` in a READ ONLY transaction and return its rows.

    Raises:
        InvalidInput: the statement fails (syntax, a write attempted, …); the message
            is PostgreSQL's own.
    """
    try:
        with sessions.begin() as session:
            session.execute(text("SET TRANSACTION READ ONLY"))
            result = session.execute(text(statement))
            if not result.returns_rows:
                return pd.DataFrame()
            return pd.DataFrame(result.all(), columns=list(result.keys()))
    except DBAPIError as err:
        message = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise InvalidInput(f"The SQL statement failed: {message}") from err
