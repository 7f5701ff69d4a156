"""A user's SQL statement: checks of the login it runs as, a READ ONLY transaction with a
statement timeout, and the statement itself, described before it runs and streamed
after. Never commits."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.db.session import driver_connection

# Membership in these lets a login that is no superuser read or write server files, run
# programs, signal other sessions, or write every table.
_POWERFUL_PREDEFINED_ROLES = (
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_signal_backend",
    "pg_write_all_data",
    "pg_checkpoint",
    "pg_create_subscription",
)

LOGIN_POWERS = text(
    """
    WITH login_roles AS (
        SELECT r.oid, r.rolname, r.rolsuper, r.rolcreaterole
        FROM pg_roles AS r
        WHERE pg_has_role(session_user, r.oid, 'MEMBER')
    ),
    writable AS (
        SELECT l.rolname AS role, c.relname AS relation
        FROM login_roles AS l
        CROSS JOIN pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND (c.relowner = l.oid
               OR has_table_privilege(l.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER'))
    )
    SELECT l.rolname AS role, 'is a superuser' AS power
    FROM login_roles AS l WHERE l.rolsuper
    UNION ALL
    SELECT l.rolname, 'can create roles' FROM login_roles AS l WHERE l.rolcreaterole
    UNION ALL
    SELECT l.rolname, 'is a member of ' || l.rolname
    FROM login_roles AS l WHERE l.rolname = ANY(:predefined)
    UNION ALL
    SELECT w.role,
           'can write ' || string_agg(w.relation, ', ' ORDER BY w.relation) FILTER (WHERE w.rank <= 3)
           || CASE WHEN count(*) > 3 THEN format(' and %s more', count(*) - 3) ELSE '' END
    FROM (SELECT *, row_number() OVER (PARTITION BY role ORDER BY relation) AS rank
          FROM writable) AS w
    GROUP BY w.role
    """
)


def login_powers(session: Session) -> list[tuple[str, str]]:
    """What the session's login could do beyond reading, as (role, power) pairs: empty
    for a login that can only read.

    Counted: superuser or CREATEROLE on the login or on any role it is a member of (it
    can ``SET ROLE`` to each, inheriting or not: ``set_config('role', …)`` inside one
    SELECT included), the predefined roles that reach the server's files, programs or
    other sessions, and ownership of, or a write privilege on, any table or view
    outside the system schemas.
    """
    rows = session.execute(LOGIN_POWERS, {"predefined": list(_POWERFUL_PREDEFINED_ROLES)})
    return [(row.role, row.power) for row in rows]


def release_advisory_locks(session: Session) -> None:
    """Release every session-level advisory lock the connection holds."""
    session.execute(text("SELECT pg_advisory_unlock_all()"))


def login_name(session: Session) -> str:
    """The role the session logged in as (``session_user``)."""
    return str(session.execute(text("SELECT session_user")).scalar_one())


def begin_read_only(session: Session, timeout_ms: int) -> None:
    """Make the session's new transaction READ ONLY, with a ``statement_timeout`` of
    ``timeout_ms`` milliseconds (at least 1: PostgreSQL reads 0 as no limit) that ends
    with the transaction."""
    session.execute(text("SET TRANSACTION READ ONLY"))
    session.execute(
        text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(max(1, timeout_ms))}
    )


class StatementError(Exception):
    """PostgreSQL (or the driver) refused or stopped the user's statement.

    Attributes:
        sqlstate: PostgreSQL's error code (``25006`` read-only transaction, ``42501``
            no privilege, ``57014`` cancelled, …); None for a client-side error.
        reason: the server's message, on one line.
        connection_lost: the connection broke (a terminated backend, a stopped server).
    """

    def __init__(self, sqlstate: str | None, reason: str, connection_lost: bool = False) -> None:
        super().__init__(reason)
        self.sqlstate = sqlstate
        self.reason = reason
        self.connection_lost = connection_lost


def _one_line(message: str) -> str:
    return "; ".join(" ".join(line.split()) for line in message.splitlines() if line.strip())


def _statement_error(err: Exception) -> StatementError:
    import psycopg

    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    sqlstate = getattr(err, "sqlstate", None)
    lost = isinstance(err, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith(("08", "57P"))
    )
    return StatementError(sqlstate, _one_line(primary or str(err)), connection_lost=lost)


def describe_statement(session: Session, statement: str) -> list[str]:
    """The names of the columns ``statement`` returns, learnt without running it: an
    empty list for a statement that returns no rows (SET, COPY, DO, an empty text…).

    The statement is parsed as the unnamed prepared statement of the extended query
    protocol, which holds exactly one statement: text with several (``SELECT 1;
    DELETE …``) is refused by PostgreSQL's own parser, whatever comments or quoting
    surround the semicolons.

    Raises:
        StatementError: PostgreSQL refused to parse it (syntax, several statements, an
            unknown table, …).
    """
    from psycopg import pq

    pgconn = driver_connection(session).pgconn
    # libpq takes C strings: text after a NUL would be silently dropped, so the caller
    # refuses it first.
    parsed = pgconn.prepare(b"", statement.encode())
    if parsed.status != pq.ExecStatus.COMMAND_OK:
        raise _result_error(parsed)
    described = pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        raise _result_error(described)
    if described.nparams:
        raise StatementError(
            None,
            f"it has {described.nparams} parameter(s) ($1 …), which the command line cannot bind",
        )
    return [(described.fname(i) or b"").decode() for i in range(described.nfields)]


def _result_error(result: Any) -> StatementError:
    from psycopg import pq

    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    message = result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or result.error_message
    return StatementError(
        sqlstate.decode() if sqlstate else None, _one_line(message.decode(errors="replace"))
    )


def stream_rows(
    session: Session, statement: str, chunk_rows: int = 1000
) -> Generator[tuple[Any, ...], None, None]:
    """Run ``statement`` and yield its rows as they arrive (nothing is held but the chunk
    being read). Closing the iterator early cancels the statement on the server, which
    leaves the transaction aborted: roll it back.

    Args:
        chunk_rows: rows libpq reads per chunk where it can (libpq 17+), else one.

    Raises:
        StatementError: PostgreSQL stopped the statement (read-only transaction,
            permission denied, statement timeout, …).
    """
    import psycopg
    from psycopg import capabilities

    size = chunk_rows if capabilities.has_stream_chunked() else 1
    with driver_connection(session).cursor() as cursor:
        try:
            # stream() uses the extended query protocol: one statement, never several.
            yield from cursor.stream(statement, size=size)
        except psycopg.Error as err:
            raise _statement_error(err) from err
