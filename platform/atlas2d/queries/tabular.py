"""A query's rows as a DataFrame, the shape listings and audits print."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session


def query_frame(session: Session, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """The rows of ``sql`` (bound ``params``) with its column names, empty when none."""
    result = session.execute(text(sql), params or {})
    return pd.DataFrame(result.all(), columns=list(result.keys()))
