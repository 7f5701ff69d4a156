"""The database a command works on, opened at the edge (never at import)."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.config import get_settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Database:
    """An engine, its session factory and the URL it came from."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]


def connect(check_schema: bool = True) -> Database:
    """Connect to the configured database (starting the embedded one if needed).

    Args:
        check_schema: refuse a schema behind the code (``atlas2d db upgrade``); a new
            empty database is migrated at once.

    Raises:
        DatabaseUnavailable: the server cannot be reached (one line naming the URL).
    """
    from atlas2d.db.migrate import ensure_schema_current
    from atlas2d.db.session import (
        check_reachable,
        make_engine,
        make_sessions,
        resolve_database_url,
    )

    url = resolve_database_url(get_settings())
    engine = make_engine(url)
    check_reachable(engine, url)
    if check_schema:
        ensure_schema_current(engine)
    database = Database(url, engine, make_sessions(engine))
    _open_activity(database)
    return database


def connect_reader() -> Database:
    """Connect as a login that can only read, for user SQL (``atlas2d sql``).

    The login is ``ATLAS2D_READER_DATABASE_URL``'s, or on the embedded server its
    ``atlas2d_sql`` (the database is first made ready as :func:`connect` does: started,
    a new one migrated, the login made). It is checked before it is used: a login that
    could write or administer the database is refused.

    Raises:
        NoReaderLogin: an external server without ``ATLAS2D_READER_DATABASE_URL``, or a
            login that can do more than read.
        DatabaseUnavailable: the reader login cannot connect.
    """
    from atlas2d.db.session import make_engine, make_sessions, resolve_reader_url
    from atlas2d.services.sql import check_reader_login

    settings = get_settings()
    embedded = not settings.reader_database_url and not settings.database_url
    if embedded:
        connect()
    url = resolve_reader_url(settings)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    source = "the embedded server" if embedded else "ATLAS2D_READER_DATABASE_URL"
    check_reader_login(sessions, source)
    return Database(url, engine, sessions)


class _Activity:
    """The activity of the running command: what to record (set by ``@writes``) and,
    once the command connects, the open recording."""

    run: tuple[str, dict[str, Any]] | None = None
    """The command path without ``atlas2d``, and its parameters."""
    stack: ExitStack | None = None


def writes(command_path: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a command that writes: each run is logged as one activity (``activities``)
    named ``command_path`` (without ``atlas2d``) with the parameters it was called with,
    opened when the command first connects and closed ``succeeded`` or ``failed``.
    A termination signal (SIGTERM) counts as an interruption, as Ctrl-C does."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def recorded(*args: P.args, **kwargs: P.kwargs) -> R:
            # Typer passes every parameter by keyword, defaults included.
            _Activity.run = (command_path, dict(kwargs))
            _Activity.stack = ExitStack()
            try:
                with sigterm_interrupts(), _Activity.stack:
                    return command(*args, **kwargs)
            finally:
                _Activity.run = _Activity.stack = None

        return recorded

    return decorate


def _open_activity(database: Database) -> None:
    """Start recording the marked command's activity on ``database`` (first connect)."""
    if _Activity.run is None or _Activity.stack is None:
        return
    from atlas2d.services.activities import CommandRun, recording

    (command, arguments), _Activity.run = _Activity.run, None
    _Activity.stack.enter_context(recording(database.sessions, CommandRun(command, arguments)))


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so that an
    activity open then is closed ``failed`` (interrupted) instead of left ``running``.
    Off the main thread (signals cannot be set there) the block runs unchanged."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, cannot be restored
            signal.signal(signal.SIGTERM, previous)
