"""Which activity this process works for, told to every connection it uses.

Rows that commands create carry ``activity_id`` through a column default that reads the
connection's ``atlas2d.activity_id`` setting; the row counts per table come from a
trigger that reads it too. So no service passes an activity around: the command sets
it once here (``services.activities.recording``) and every connection checked out of
an engine afterwards, in this process, carries it. A Dask worker is told the id with
its task (``services.relax_dask``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

SETTING = "atlas2d.activity_id"

_current: int | None = None


def current() -> int | None:
    """The activity this process works for, or None."""
    return _current


def set_current(activity_id: int | None) -> None:
    """Work for ``activity_id`` from the next connection checkout on (None: for none)."""
    global _current
    _current = activity_id


def tag_connections(engine: Engine) -> None:
    """Set ``atlas2d.activity_id`` on each connection ``engine`` hands out, when it
    differs from what that connection was last told (one round trip then, none else)."""
    event.listen(engine, "checkout", _tag)


def _tag(dbapi_connection: Any, connection_record: Any, _proxy: Any) -> None:
    if connection_record.info.get(SETTING, None) == _current:
        return
    with dbapi_connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(%s, %s, false)",
            (SETTING, "" if _current is None else str(_current)),
        )
    # psycopg opened a transaction for the SELECT; the pool expects none open.
    dbapi_connection.commit()
    connection_record.info[SETTING] = _current
