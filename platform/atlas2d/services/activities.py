"""The activity log: one row per run of a command that writes.

``recording`` opens the row (``running``) in its own committed transaction, tags this
process's connections with its id (``db.activity_tag``) so that every row the command
creates carries it and is counted per table, and closes it ``succeeded`` or ``failed``
with the error. A process killed outright leaves it ``running``; its host and pid then
tell that the process is gone.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db import activity_tag
from atlas2d.db.models import Activity
from atlas2d.errors import Atlas2dError
from atlas2d.queries.activities import rows_written

INTERRUPTED = "interrupted (Ctrl-C or a termination signal)"


@dataclass(frozen=True)
class CommandRun:
    """What ran: the command path without ``atlas2d`` and its parameters."""

    command: str
    arguments: Mapping[str, Any]


@contextmanager
def recording(sessions: sessionmaker[Session], run: CommandRun) -> Iterator[int]:
    """Log ``run`` as one activity around the block and yield its id.

    Nested use (a command calling another's service) records only the outer activity.
    The block's exception is re-raised after the activity is marked ``failed``.
    """
    if activity_tag.current() is not None:
        yield activity_tag.current()  # type: ignore[misc]
        return
    activity_id = start(sessions, run)
    activity_tag.set_current(activity_id)
    try:
        yield activity_id
    except BaseException as err:
        activity_tag.set_current(None)
        if getattr(err, "exit_code", None) == 0:  # click's Exit(0): a success
            finish(sessions, activity_id)
        else:
            finish(sessions, activity_id, error=describe_error(err))
        raise
    activity_tag.set_current(None)
    finish(sessions, activity_id)


def start(sessions: sessionmaker[Session], run: CommandRun) -> int:
    """Insert the ``running`` activity of ``run`` (committed at once) and return its id."""
    from atlas2d.provenance import git_commit, package_versions

    git = git_commit() or {}
    # The installed distribution's version, as sources record it (services may not
    # import the package root).
    version = package_versions(("atlas2d",))["atlas2d"] or "unknown (not installed)"
    with sessions.begin() as session:
        activity = Activity(
            command=run.command,
            arguments={name: json_value(value) for name, value in run.arguments.items()},
            os_user=_os_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            atlas2d_version=version,
            git_commit=git.get("commit"),
            git_dirty=git.get("dirty"),
            status="running",
        )
        session.add(activity)
        session.flush()
        return activity.id


def finish(sessions: sessionmaker[Session], activity_id: int, error: str | None = None) -> None:
    """Close an activity: ``succeeded``, or ``failed`` with ``error``; store its row
    counts per table. Best effort when failing: a lost server must not hide the error
    that ended the command."""
    try:
        with sessions.begin() as session:
            session.execute(
                update(Activity)
                .where(Activity.id == activity_id)
                .values(
                    status="failed" if error is not None else "succeeded",
                    error=error,
                    finished_at=func.now(),
                    rows_written=rows_written(session, activity_id),
                )
            )
    except Exception:
        if error is None:
            raise


def describe_error(err: BaseException) -> str:
    """One line for the activity's ``error``."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(err, SystemExit):
        return f"exited with code {err.code}"
    if isinstance(getattr(err, "exit_code", None), int):  # click's Exit: a signalled code
        return f"exited with code {err.exit_code}"  # type: ignore[attr-defined]
    message = " ".join(str(err).split())
    if isinstance(err, Atlas2dError):  # atlas2d's own: the message says it all
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def json_value(value: Any) -> Any:
    """A command parameter as a JSON value (paths and enums as strings)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (Path, datetime, date)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid())
