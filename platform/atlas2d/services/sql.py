"""User SQL (``atlas2d sql``): one statement that returns rows, run as a login that can
only read, in a READ ONLY transaction with a statement timeout, its rows streamed up to
a limit.

Three locks, each enough against writes on its own: the login (no superuser powers, no
write privilege, checked before use), the READ ONLY transaction, and one statement
only (the extended query protocol), so that text like ``COMMIT; DELETE …`` never gets to
end the read-only transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import DatabaseUnavailable, InvalidInput, NoReaderLogin
from atlas2d.queries.user_sql import (
    StatementError,
    begin_read_only,
    describe_statement,
    login_name,
    login_powers,
    release_advisory_locks,
    stream_rows,
)

EXAMPLE = '`atlas2d sql "SELECT count(*) FROM materials"`'


class RowSink(Protocol):
    """Where the rows go, as they arrive: ``start`` once (before any row, also when there
    are none), then ``add`` per row."""

    def start(self, columns: list[str]) -> None: ...

    def add(self, row: tuple[Any, ...]) -> None: ...


@dataclass(frozen=True)
class SqlRun:
    """What one statement gave.

    Attributes:
        n_rows: rows handed to the sink.
        truncated: the statement had more rows than the limit; the rest were not read.
    """

    n_rows: int
    truncated: bool


def check_reader_login(sessions: sessionmaker[Session], source: str) -> None:
    """Refuse a login that could do more than read, before any user SQL runs on it.

    A superuser (or a member of a role that could write) can undo ``SET ROLE`` or a
    READ ONLY transaction from inside one statement, so user SQL needs a login that
    holds no more than ``atlas2d_reader``'s rights.

    Args:
        sessions: sessions on the login to check.
        source: where the login comes from, named in the messages
            (e.g. ``ATLAS2D_READER_DATABASE_URL``).

    Raises:
        NoReaderLogin: the login is a superuser, can create roles, holds a predefined
            role that reaches server files, programs or other sessions, or can write
            a table.
        DatabaseUnavailable: the login cannot connect.
    """
    try:
        with sessions() as session:
            login = login_name(session)
            powers = login_powers(session)
    except DBAPIError as err:
        lines = str(err.orig or err).splitlines()
        reason = "; ".join(" ".join(line.split()) for line in lines if line.strip())
        raise DatabaseUnavailable(
            f"Cannot connect with the reader login of {source}: {reason}. Check that URL's "
            "user, password, host and database."
        ) from err
    if not powers:
        return
    # A superuser is a member of every role and can write everything: say just that.
    powers = [p for p in powers if p[1] == "is a superuser"][:1] or powers
    described = "; ".join(
        power if role == login or power.endswith(role) else f"{power} (as role {role})"
        for role, power in powers
    )
    raise NoReaderLogin(
        f"The login {login} of {source} {described}: `atlas2d sql` runs only as a login "
        "that can just read, so nothing was run. Use a login that is only a member of "
        "atlas2d_reader (`CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE atlas2d_reader;`) "
        "and set ATLAS2D_READER_DATABASE_URL to it."
    )


def run_user_sql(
    sessions: sessionmaker[Session],
    statement: str,
    *,
    limit: int,
    timeout_s: float,
    sink: RowSink,
) -> SqlRun:
    """Run ``statement`` READ ONLY and hand its first ``limit`` rows to ``sink`` as they
    arrive; the rows past the limit are never read.

    The statement must be one statement that returns rows (SELECT, WITH, VALUES, TABLE,
    SHOW, EXPLAIN): several statements are refused by PostgreSQL's parser, and one that
    returns none (SET ROLE, COPY, DO, LOCK, CREATE, COMMIT, …) is refused before it
    runs. The transaction is always rolled back.

    Args:
        sessions: sessions on a login that can only read (:func:`check_reader_login`).
        limit: most rows handed to ``sink``, at least 1.
        timeout_s: seconds the statement may run, streaming its rows included
            (PostgreSQL's ``statement_timeout``).

    Raises:
        InvalidInput: one line saying why the statement was refused or stopped.
    """
    if "\x00" in statement:
        raise InvalidInput(
            "The SQL statement contains a NUL character, which PostgreSQL text cannot "
            "hold: remove it. Nothing was run."
        )
    try:
        statement.encode()
    except UnicodeEncodeError as err:
        raise InvalidInput(
            f"The SQL statement is not valid UTF-8 (at character {err.start + 1}): fix its "
            "encoding. Nothing was run."
        ) from err
    if not statement.strip():
        raise InvalidInput(f"The SQL statement is empty: give one query, e.g. {EXAMPLE}.")
    session = sessions()
    try:
        begin_read_only(session, round(timeout_s * 1000))
        columns = describe_statement(session, statement)
        if not columns:
            raise InvalidInput(
                "The SQL statement returns no rows, so it was not run: `atlas2d sql` runs "
                "one query that returns rows (SELECT, WITH, VALUES, TABLE, SHOW or "
                f"EXPLAIN), e.g. {EXAMPLE}."
            )
        return _stream(session, statement, columns, limit, sink)
    except StatementError as err:
        raise InvalidInput(_explain(err, timeout_s)) from err
    finally:
        _discard(session)


def _stream(
    session: Session, statement: str, columns: list[str], limit: int, sink: RowSink
) -> SqlRun:
    rows = stream_rows(session, statement)
    shown = 0
    try:
        for row in rows:
            if shown == limit:
                return SqlRun(shown, truncated=True)
            if shown == 0:
                sink.start(columns)
            sink.add(row)
            shown += 1
    finally:
        rows.close()  # past the limit: cancels the statement on the server
    if shown == 0:
        sink.start(columns)
    return SqlRun(shown, truncated=False)


def _discard(session: Session) -> None:
    """Roll the statement's transaction back (it only read) and close the session."""
    try:
        session.rollback()
        _release_session_locks(session)
    except DBAPIError:
        pass  # the connection is gone (a terminated backend): nothing is left to undo
    finally:
        session.close()


def _explain(err: StatementError, timeout_s: float) -> str:
    """One line for a statement PostgreSQL refused or stopped, by its SQLSTATE."""
    state = err.sqlstate or ""
    if state.startswith("25"):  # read_only_sql_transaction, active_sql_transaction, …
        return (
            f"The SQL statement tried to write or to leave its READ ONLY transaction "
            f"({err.reason}): `atlas2d sql` only reads. Nothing was changed."
        )
    if state == "42501":  # insufficient_privilege
        return (
            f"The SQL statement needs a privilege the read-only login of `atlas2d sql` "
            f"lacks ({err.reason}): it can read the atlas2d tables and views, nothing "
            "more. Nothing was changed."
        )
    if state == "57014":  # query_canceled: statement_timeout, or a cancel from outside
        return (
            f"The SQL statement was stopped ({err.reason}) after at most {timeout_s:g} s: "
            "narrow it down, or allow it longer with --timeout or ATLAS2D_SQL_TIMEOUT_S."
        )
    if state == "42601" and "multiple commands" in err.reason:  # several statements
        return (
            f"The SQL statement was refused ({err.reason}): `atlas2d sql` runs exactly "
            f"one statement, e.g. {EXAMPLE}. Nothing was run."
        )
    if err.connection_lost:
        return (
            f"The SQL statement's connection ended ({err.reason}); it ran READ ONLY, so "
            "nothing was changed."
        )
    return f"The SQL statement failed ({err.reason}). Nothing was changed."


def _release_session_locks(session: Session) -> None:
    """Drop advisory locks the statement may have taken (``pg_advisory_lock`` survives a
    rollback): atlas2d's writers serialise on advisory locks, and a pooled connection
    would otherwise keep one."""
    try:
        release_advisory_locks(session)
        session.rollback()
    except DBAPIError:
        pass  # the connection is gone, and its locks with it
