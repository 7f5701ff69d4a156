"""Engines and session factories, made at the edge (a command, a test), never at import."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.config import Settings
from atlas2d.db.activity_tag import tag_connections
from atlas2d.db.embedded import embedded_reader_url, embedded_url
from atlas2d.errors import Atlas2dError, ConnectionLost, DatabaseUnavailable, PermissionDenied


def resolve_database_url(settings: Settings) -> str:
    """The configured database URL, starting the embedded server when none is set."""
    if settings.database_url:
        return settings.database_url
    return embedded_url(settings.pgdata_dir)


def resolve_reader_url(settings: Settings) -> str:
    """The URL user SQL (``atlas2d sql``) connects with: a login that can only read.

    ``ATLAS2D_READER_DATABASE_URL`` when set; else, on the embedded server, its
    ``atlas2d_sql`` login. An external server (``ATLAS2D_DATABASE_URL``) without a
    reader URL has none: the owner's login is never lent to user SQL, and ``SET ROLE``
    would not do, since the session could set its role back.

    Raises:
        NoReaderLogin: ``ATLAS2D_DATABASE_URL`` is set and ``ATLAS2D_READER_DATABASE_URL``
            is not; the message says how to make a reader login.
    """
    from atlas2d.errors import NoReaderLogin

    if settings.reader_database_url:
        return settings.reader_database_url
    if settings.database_url:
        raise NoReaderLogin(
            "ATLAS2D_DATABASE_URL is set but ATLAS2D_READER_DATABASE_URL is not: `atlas2d "
            "sql` runs only as a login that can just read. Have the database owner run "
            "`CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE atlas2d_reader;` and set "
            "ATLAS2D_READER_DATABASE_URL=postgresql+psycopg://alice:…@host/database."
        )
    return embedded_reader_url(settings.pgdata_dir)


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine on psycopg 3 (``postgresql://`` URLs are switched to it)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, pool_pre_ping=True)
    tag_connections(engine)
    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """Session factory; services use ``with sessions.begin() as session:``."""
    return sessionmaker(engine, expire_on_commit=False)


def redacted_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def driver_connection(session: Session) -> Any:
    """The psycopg connection under the session, inside the session's transaction (for COPY)."""
    return session.connection().connection.driver_connection


def check_reachable(engine: Engine, url: str) -> None:
    """Open one connection now, so that an unreachable server is one clear error.

    Raises:
        DatabaseUnavailable: the server refused or did not answer; the message names
            the URL (password hidden) and what to check.
    """
    try:
        with engine.connect():
            pass
    except DBAPIError as err:
        raise DatabaseUnavailable(
            f"Cannot connect to the database {redacted_url(url)} ({_reason(err)}). Check that "
            "PostgreSQL runs at that host and port and accepts that user, password and "
            "database (ATLAS2D_DATABASE_URL; unset it to use the embedded server)."
        ) from err


# SQLSTATEs of a connection the server ended: class 08 (connection exception) and
# admin/crash shutdown or "cannot connect now". 57014 (statement timeout) is not one.
_CONNECTION_ENDED = ("08", "57P01", "57P02", "57P03")


def explain_database_error(err: BaseException, role: str | None = None) -> Atlas2dError | None:
    """The one-line error a user can act on for a driver error, or None if there is none.

    Recognises a connection lost in the middle of a command (server stopped or killed,
    backend terminated, network gone) and a missing privilege (``InsufficientPrivilege``).
    Anything else is left to the caller: it is a bug or is handled where it happens.

    Args:
        err: the exception that ended the command; its ``__cause__``/``__context__``
            chain is searched too (a lost connection also fails the rollback after it).
        role: the database role in use, named in the privilege message when known.
    """
    import psycopg

    lost: list[BaseException] = []
    for error in _chain(err):
        driver = error.orig if isinstance(error, DBAPIError) else error
        if isinstance(driver, psycopg.errors.InsufficientPrivilege):
            statement = error.statement if isinstance(error, DBAPIError) else None
            return _permission_denied(driver, statement, role)
        if isinstance(driver, psycopg.OperationalError) and (
            driver.sqlstate is None or driver.sqlstate.startswith(_CONNECTION_ENDED)
        ):
            lost.append(driver)
        elif isinstance(error, DBAPIError) and error.connection_invalidated:
            lost.append(driver or error)
    if not lost:
        return None
    # The server's own reason (it has a SQLSTATE) says more than the client's "lost".
    reason = next((e for e in lost if getattr(e, "sqlstate", None)), lost[0])
    return ConnectionLost(
        f"The database connection was lost during the command ({_reason(reason)}); the "
        "server rolled back the open transaction, so nothing from the file or batch in "
        "progress was written. Check that the database runs (`atlas2d db status`) and run "
        "the command again: what is already stored is skipped."
    )


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception it was raised from or during, each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        pending += [error.__cause__, error.__context__]


def _reason(err: BaseException) -> str:
    """The driver's message on one line (no CONTEXT, no SQL, no "Background on" link)."""
    driver = err.orig if isinstance(err, DBAPIError) else err
    diag = getattr(driver, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(driver) or type(driver).__name__
    return "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")


def _statement_privilege(statement: str | None) -> str | None:
    """The table privilege a statement needs, read from its leading keyword."""
    words = (statement or "").upper().split()
    if not words:
        return None
    if words[0] == "COPY":  # COPY t FROM … writes; COPY t TO … and COPY (query) TO … read
        reads = len(words) < 2 or words[1].startswith("(") or "FROM" not in words
        return "SELECT" if reads else "INSERT"
    if words[0] == "WITH":  # a data-modifying CTE needs the privilege of its verb
        return next((w for w in words if w in _PRIVILEGES[1:]), "SELECT")
    return words[0] if words[0] in _PRIVILEGES else None


def _permission_denied(
    driver: Exception, statement: str | None, role: str | None
) -> PermissionDenied:
    reason = _reason(driver)
    who = f"The database role {role}" if role else "The database role in use"
    privilege = _statement_privilege(statement)
    # PostgreSQL says "permission denied for table sources" (or view, sequence, schema …).
    target = re.fullmatch(r"permission denied for (table|view|materialized view) (\S+)", reason)
    if privilege and target:
        grant = f"GRANT {privilege} ON {target.group(2)} TO {role or '<role>'}"
        return PermissionDenied(
            f"{who} lacks the {privilege} privilege on {target.group(1)} {target.group(2)} "
            f"({reason}): connect as the role that owns the atlas2d tables "
            f"(ATLAS2D_DATABASE_URL), or have the owner run `{grant}`."
        )
    return PermissionDenied(
        f"{who} lacks a privilege this command needs ({reason}): connect as the role that "
        "owns the atlas2d tables (ATLAS2D_DATABASE_URL), or have the owner grant it."
    )
