"""A user's SQL statement, run as given in a READ ONLY transaction. Never commits."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session


def run_read_only(session: Session, statement: str) -> pd.DataFrame:
    """Mark the session's transaction READ ONLY, execute ``statement`` and return its rows
    (an empty frame for a statement that returns none).

    Raises:
        sqlalchemy.exc.DBAPIError: PostgreSQL refused the statement.
    """
    session.execute(text("SET TRANSACTION READ ONLY"))
    result = session.execute(text(statement))
    if not result.returns_rows:  # type: ignore[attr-defined]  # CursorResult, not in the stub
        return pd.DataFrame()
    return pd.DataFrame(result.all(), columns=list(result.keys()))
