"""Run one user SQL statement in a READ ONLY transaction."""

from __future__ import annotations

import pandas as pd
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput
from atlas2d.queries.user_sql import run_read_only


def run_readonly(sessions: sessionmaker[Session], statement: str) -> pd.DataFrame:
    """Execute ``statement`` in a READ ONLY transaction and return its rows.

    Raises:
        InvalidInput: the statement fails (syntax, a write attempted, …); the message
            is PostgreSQL's own.
    """
    try:
        with sessions.begin() as session:
            return run_read_only(session, statement)
    except DBAPIError as err:
        message = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise InvalidInput(f"The SQL statement failed: {message}") from err
