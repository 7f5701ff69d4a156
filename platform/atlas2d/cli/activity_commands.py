"""``atlas2d activity list|show``: the activity log, one row per run of a command that
writes (who ran it, where, with which code, when, how it ended, the rows it wrote)."""

from __future__ import annotations

import json
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

from atlas2d.cli.output import (
    OutputFormat,
    console,
    print_json,
    print_listing,
)
from atlas2d.vocabulary import ActivityStatus, counted

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

    from atlas2d.services.activity_log import ActivityListing, ActivityView

app = typer.Typer(
    help="The activity log: every run of a command that writes, with who ran it, where, "
    "the atlas2d version and commit, when, how it ended and the rows it wrote per table.",
    no_args_is_help=True,
)

DEFAULT_LIMIT = 50


class ShowFormat(str, Enum):
    table = "table"
    json = "json"


@app.command("list")
def list_command(
    command: str | None = typer.Option(
        None,
        "--command",
        help="Only this command (e.g. 'trainset create') or group (e.g. 'trainset').",
    ),
    status: ActivityStatus | None = typer.Option(None, "--status", help="Only this status."),
    limit: int = typer.Option(DEFAULT_LIMIT, min=1, help="At most this many, newest first."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """List activities newest first: command, status, user, host, start, duration, rows
    written per table, error. A running activity whose process on this host has ended
    shows "process gone" (it was killed outright)."""
    from atlas2d.cli.context import connect
    from atlas2d.queries.activities import ActivityFilter
    from atlas2d.services.activity_log import list_activities

    listing = list_activities(connect().sessions, ActivityFilter(command, status), limit)
    print_listing(
        _frame(listing, format),
        format,
        listing.total,
        counted(listing.total, "activity", "activities"),
        " (newest first; --limit to see more)",
    )


@app.command()
def show(
    activity_id: int = typer.Argument(..., metavar="ID", help="The activity's id."),
    format: ShowFormat = typer.Option(ShowFormat.table, "--format"),
) -> None:
    """Show one activity: command and every argument, who ran it where (pid), atlas2d
    version and git commit, start, end, status, error, and the rows written per table
    (counted so far while it runs)."""
    from atlas2d.cli.context import connect
    from atlas2d.services.activity_log import show_activity

    view = show_activity(connect().sessions, activity_id)
    if format is ShowFormat.json:
        print_json(_document(view))
        return
    record = view.record
    console.print(f"[bold]activity {record.id}[/bold]: ", end="")
    _say(f"{record.command}  {view.status}")
    _say(f"by {record.os_user} on {record.host} (pid {record.pid})")
    commit = "not a git checkout"
    if record.git_commit is not None:
        commit = f"git {record.git_commit}{' (+dirty)' if record.git_dirty else ''}"
    _say(f"atlas2d {record.atlas2d_version}, {commit}")
    started = _local(record.started_at, "%Y-%m-%d %H:%M:%S %z")
    if record.finished_at is None:
        _say(f"started {started}, not finished")
    else:
        finished = _local(record.finished_at, "%Y-%m-%d %H:%M:%S %z")
        _say(f"started {started}, finished {finished} ({view.duration_s:.1f} s)")
    if record.error:
        console.print("[red]error:[/red] ", end="")
        _say(record.error)
    _say("arguments:" if record.arguments else "arguments: none")
    for name, value in sorted(record.arguments.items()):  # JSONB keeps no order
        _say(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    written = "rows written so far" if record.status == "running" else "rows written"
    _say(f"{written}:" if view.rows_written else f"{written}: none")
    for table, n in view.rows_written.items():
        _say(f"  {table} {n:,}")


def _say(line: str) -> None:
    """Print user text as it is (no Rich markup, no highlighting)."""
    console.print(line, highlight=False, markup=False, soft_wrap=True)


def _local(moment: datetime, pattern: str) -> str:
    return moment.astimezone().strftime(pattern)


def _iso(moment: datetime | None) -> str | None:
    """Local time, full precision, with its UTC offset (None stays None)."""
    return None if moment is None else moment.astimezone().isoformat()


def _compact(rows_written: dict[str, int]) -> str:
    """``materials 390, frames 14,479`` (``none`` when nothing was written)."""
    return ", ".join(f"{table} {n:,}" for table, n in rows_written.items()) or "none"


TABLE_COLUMNS = (
    *("id", "command", "status", "user", "host", "started"),
    *("duration_s", "rows_written", "error"),
)
DATA_COLUMNS = (
    *("id", "command", "status", "user", "host", "pid", "started_at", "finished_at"),
    *("duration_s", "rows_written", "error"),
)


def _frame(listing: ActivityListing, fmt: OutputFormat) -> pd.DataFrame:
    """One row per activity. In a table: the local start to the minute, the duration to
    0.1 s, the rows written in one phrase. In CSV and JSON: full ISO times with their UTC
    offset, full durations, the rows written as a JSON object (as text in CSV)."""
    import pandas as pd

    for_people = fmt is OutputFormat.table
    rows: list[dict[str, Any]] = []
    for view in listing.activities:
        record = view.record
        duration = view.duration_s
        row: dict[str, Any] = {
            "id": record.id,
            "command": record.command,
            "status": view.status,
            "user": record.os_user,
            "host": record.host,
            "pid": record.pid,
            "started": _local(record.started_at, "%Y-%m-%d %H:%M"),
            "started_at": _iso(record.started_at),
            "finished_at": _iso(record.finished_at),
            "duration_s": duration,
            "rows_written": view.rows_written,
            "error": record.error,
        }
        if for_people:
            row["duration_s"] = None if duration is None else f"{duration:.1f}"
            row["rows_written"] = _compact(view.rows_written)
        elif fmt is OutputFormat.csv:
            row["rows_written"] = json.dumps(view.rows_written)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS if for_people else DATA_COLUMNS))


def _document(view: ActivityView) -> dict[str, Any]:
    """Everything about one activity as JSON values."""
    record = view.record
    return {
        "id": record.id,
        "command": record.command,
        "status": record.status,
        "process_gone": view.process_gone,
        "arguments": dict(sorted(record.arguments.items())),
        "user": record.os_user,
        "host": record.host,
        "pid": record.pid,
        "atlas2d_version": record.atlas2d_version,
        "git_commit": record.git_commit,
        "git_dirty": record.git_dirty,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration_s": view.duration_s,
        "error": record.error,
        "rows_written": view.rows_written,
    }
