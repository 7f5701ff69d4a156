"""The rows an activity made, counted from the tables themselves (not from the trigger's
``activity_rows``), to check the ``rows_written`` an activity records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

TAGGED = (
    "sources",
    "materials",
    "relaxations",
    "training_sets",
    "model_versions",
    "frame_predictions",
    "evaluations",
    "hull_runs",
    "stability",
    "formation_energies",
    "candidate_pools",
    "al_campaigns",
    "al_iterations",
)
"""Tables whose rows carry the activity that created them."""

CHILDREN = {
    "frames": ("relaxations", "relaxation_id"),
    "energy_entries": ("sources", "source_id"),
    "training_set_relaxations": ("training_sets", "training_set_id"),
    "pool_candidates": ("candidate_pools", "pool_id"),
    "al_candidates": ("al_iterations", "iteration_id"),
}
"""Tables whose rows belong to a tagged row, made with it: (parent table, its key)."""


def stored_by(engine: Engine, activity_id: int) -> dict[str, int]:
    """{table: rows} that carry ``activity_id`` or belong to a row that does; tables
    without any are left out."""
    counts: dict[str, Any] = {}
    with engine.connect() as connection:
        for table in TAGGED:
            counts[table] = connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE activity_id = :a"), {"a": activity_id}
            ).scalar_one()
        for table, (parent, key) in CHILDREN.items():
            counts[table] = connection.execute(
                text(
                    f"SELECT count(*) FROM {table} c JOIN {parent} p ON p.id = c.{key}"
                    " WHERE p.activity_id = :a"
                ),
                {"a": activity_id},
            ).scalar_one()
    return {table: int(n) for table, n in counts.items() if n}


def activities_after(engine: Engine, last_id: int) -> list[dict[str, Any]]:
    """The activities with an id above ``last_id``, oldest first, as dicts."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM activities WHERE id > :last ORDER BY id"), {"last": last_id}
        ).mappings()
        return [dict(row) for row in rows]


def last_activity_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(text("SELECT coalesce(max(id), 0) FROM activities")).scalar_one()
        )
