"""The planner's statistics, refreshed by the command that changed a table rather than
left to autovacuum."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

GROWTH_TO_ANALYZE = 0.1
"""Analyse when the rows just added exceed this fraction of the rows the planner
believes the table holds (autovacuum's own default analyse scale factor)."""

ROWS_ALWAYS_ANALYZED = 1000
"""… or when more rows than this were added to a table believed (nearly) empty."""

_TABLES = frozenset({"frames", "relaxations", "materials", "energy_entries"})


def refresh_if_grown(session: Session, table: str, rows_added: int) -> bool:
    """``ANALYZE table`` when ``rows_added`` is large next to what ``pg_class`` says it
    holds; True if it did.

    Why: a table analysed when it held few live rows (say, after a large insert was
    rolled back) keeps a density of ~0 rows per page, and the planner then takes it for
    empty however much it grows: a join against it turns into nested loops over every
    row (a 200,000-frame verify ran past 2 minutes instead of 2 s). Autovacuum would
    fix that only some time later.
    """
    if table not in _TABLES:
        raise ValueError(f"no statistics refresh for table {table!r}")
    believed = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": table},
    ).scalar_one()
    if rows_added <= max(ROWS_ALWAYS_ANALYZED, GROWTH_TO_ANALYZE * max(believed, 0.0)):
        return False
    session.execute(text(f"ANALYZE {table}"))  # a name from _TABLES, never user text
    return True
