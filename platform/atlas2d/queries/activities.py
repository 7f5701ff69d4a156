"""The activity log in SQL: activities newest first with filters, one by id, and the rows
an activity has inserted so far (``activity_rows``, filled by a trigger on every table
that commands write). Functions take ``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from atlas2d.db.models import Activity, ActivityRows
from atlas2d.vocabulary import ActivityStatus


@dataclass(frozen=True)
class ActivityRecord:
    """One row of ``activities``: one run of a command that writes.

    Attributes:
        command: the command path without ``atlas2d``, e.g. ``trainset create``.
        arguments: every parameter it ran with, as JSON values (``"via": "demo"`` when
            ``atlas2d demo`` ran the step).
        os_user, host, pid: who ran it, where, in which process.
        git_commit, git_dirty: the atlas2d checkout (None when not run from one).
        started_at, finished_at: timezone-aware; ``finished_at`` is None while running
            (and for ever when the process was killed outright).
        status: ``running``, ``succeeded`` or ``failed`` (interrupted included).
        error: one line, for ``failed``.
        rows_written: {table: rows inserted}, stored when it ended; None before.
    """

    id: int
    command: str
    arguments: dict[str, Any]
    os_user: str
    host: str
    pid: int
    atlas2d_version: str
    git_commit: str | None
    git_dirty: bool | None
    started_at: datetime
    finished_at: datetime | None
    status: ActivityStatus
    error: str | None
    rows_written: dict[str, int] | None


@dataclass(frozen=True)
class ActivityFilter:
    """Which activities to list.

    Attributes:
        command: a command path (``trainset create``) or its group (``trainset``: every
            ``trainset …`` command); None for all.
        status: only activities with this status; None for all.
    """

    command: str | None = None
    status: ActivityStatus | None = None


_COLUMNS = (
    Activity.id,
    Activity.command,
    Activity.arguments,
    Activity.os_user,
    Activity.host,
    Activity.pid,
    Activity.atlas2d_version,
    Activity.git_commit,
    Activity.git_dirty,
    Activity.started_at,
    Activity.finished_at,
    Activity.status,
    Activity.error,
    Activity.rows_written,
)


def _filtered(query: Select[Any], filters: ActivityFilter) -> Select[Any]:
    if filters.command is not None:
        query = query.where(
            or_(
                Activity.command == filters.command,
                Activity.command.startswith(filters.command + " ", autoescape=True),
            )
        )
    if filters.status is not None:
        query = query.where(Activity.status == filters.status)
    return query


def list_activities(
    session: Session, filters: ActivityFilter, limit: int | None = None
) -> list[ActivityRecord]:
    """The activities ``filters`` selects, newest first (by id: the order they started),
    at most ``limit`` of them (all when None)."""
    query = _filtered(select(*_COLUMNS), filters).order_by(Activity.id.desc()).limit(limit)
    return [ActivityRecord(**row) for row in session.execute(query).mappings()]


def count_activities(session: Session, filters: ActivityFilter) -> int:
    """How many activities ``filters`` selects."""
    return session.execute(
        _filtered(select(func.count()).select_from(Activity), filters)
    ).scalar_one()


def activity_by_id(session: Session, activity_id: int) -> ActivityRecord | None:
    """The activity with this id, or None."""
    row = session.execute(select(*_COLUMNS).where(Activity.id == activity_id)).mappings().first()
    return None if row is None else ActivityRecord(**row)


def activities_by_ids(session: Session, ids: Collection[int]) -> dict[int, ActivityRecord]:
    """{id: activity} for those of ``ids`` that exist (the activities that made some
    rows, for an audit or a PROV document)."""
    if not ids:
        return {}
    rows = session.execute(select(*_COLUMNS).where(Activity.id.in_(list(ids)))).mappings()
    return {row["id"]: ActivityRecord(**row) for row in rows}


def rows_written(session: Session, activity_id: int) -> dict[str, int]:
    """{table: rows inserted} by one activity so far (committed ones, and this
    transaction's own), tables in name order."""
    rows = session.execute(
        select(ActivityRows.table_name, func.sum(ActivityRows.n_rows))
        .where(ActivityRows.activity_id == activity_id)
        .group_by(ActivityRows.table_name)
        .order_by(ActivityRows.table_name)
    )
    return {table: int(n) for table, n in rows}
