"""Reading the activity log (``atlas2d activity list|show``): each activity with the rows
it wrote, counted live from ``activity_rows`` while it runs, and whether a ``running``
activity's process is gone (killed outright, it never closed its activity)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import NotFound
from atlas2d.provenance import process_gone
from atlas2d.queries import activities as queries
from atlas2d.queries.activities import ActivityFilter, ActivityRecord

PROCESS_GONE = "running (process gone: killed?)"
"""The status shown for a ``running`` activity whose process on this host has ended."""

TABLE_ORDER = (
    "sources",
    "materials",
    "relaxations",
    "frames",
    "energy_entries",
    "training_sets",
    "training_set_relaxations",
    "model_versions",
    "frame_predictions",
    "evaluations",
    "hull_runs",
    "stability",
    "formation_energies",
    "candidate_pools",
    "pool_candidates",
    "al_campaigns",
    "al_iterations",
    "al_candidates",
)
"""The order rows written are told in: the pipeline's (data, training sets, models,
results, generation, campaigns); other tables follow by name."""


@dataclass(frozen=True)
class ActivityView:
    """An activity as the log shows it.

    Attributes:
        record: the stored row.
        rows_written: {table: rows inserted} in :data:`TABLE_ORDER`; for a running
            activity the count so far (committed rows only, seen from outside).
        process_gone: ``running`` but its process on this host has ended.
    """

    record: ActivityRecord
    rows_written: dict[str, int]
    process_gone: bool

    @property
    def status(self) -> str:
        """The status, or :data:`PROCESS_GONE` for a run that was killed outright."""
        return PROCESS_GONE if self.process_gone else self.record.status

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (None while running)."""
        if self.record.finished_at is None:
            return None
        return (self.record.finished_at - self.record.started_at).total_seconds()


@dataclass(frozen=True)
class ActivityListing:
    """Activities newest first, and how many the filters select in all."""

    activities: list[ActivityView]
    total: int


def list_activities(
    sessions: sessionmaker[Session], filters: ActivityFilter, limit: int | None = None
) -> ActivityListing:
    """The newest ``limit`` activities that ``filters`` selects (all when None)."""
    with sessions.begin() as session:
        records = queries.list_activities(session, filters, limit)
        total = (
            len(records)
            if limit is None or len(records) < limit
            else queries.count_activities(session, filters)
        )
        return ActivityListing([_view(session, r) for r in records], total)


def show_activity(sessions: sessionmaker[Session], activity_id: int) -> ActivityView:
    """One activity.

    Raises:
        NotFound: no activity has this id.
    """
    with sessions.begin() as session:
        record = queries.activity_by_id(session, activity_id)
        if record is None:
            raise NotFound(
                f"No activity {activity_id}; `atlas2d activity list` shows the recorded ones."
            )
        return _view(session, record)


def _view(session: Session, record: ActivityRecord) -> ActivityView:
    running = record.status == "running"
    counts = (
        queries.rows_written(session, record.id) if running else dict(record.rows_written or {})
    )
    gone = running and process_gone({"host": record.host, "pid": record.pid})
    return ActivityView(record, in_table_order(counts), gone)


def in_table_order(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` ordered as :data:`TABLE_ORDER` (other tables after, by name)."""
    rank = {table: i for i, table in enumerate(TABLE_ORDER)}
    return dict(sorted(counts.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))
