"""One source file's downstream impact in SQL (``atlas2d audit source``): the training
sets holding its frames, the models trained on those sets and their descendants, and
what those models produced (ML relaxations, stability rows, campaign decisions).
Functions take ``session`` first, return DataFrames whose column names carry their
units (or a ``Listing``), and never commit.

Every query starts from the source's relaxations or from a few model ids, along
indexed keys, so its cost follows the impact, not the size of the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.queries.tabular import query_frame


@dataclass(frozen=True)
class Listing:
    """How many things there are, and the first ``limit`` of them (all when the
    listing was asked for in full).

    Attributes:
        count: how many in all. items: the first ones, sorted. complete: items holds
            them all.
    """

    count: int
    items: list[Any]

    @property
    def complete(self) -> bool:
        return len(self.items) == self.count


def _listing(session: Session, sql: str, params: dict[str, Any], limit: int | None) -> Listing:
    """``sql`` selects one sorted column ``item``; count them and keep the first
    ``limit`` (None: all)."""
    rows = session.execute(
        text(f"SELECT item, count(*) OVER () AS total FROM ({sql}) listed LIMIT :limit"),
        {**params, "limit": limit},
    ).all()
    return Listing(count=int(rows[0].total) if rows else 0, items=[row.item for row in rows])


def source_materials(session: Session, source_id: int, limit: int | None) -> Listing:
    """Keys of the materials the source brought relaxations or energy entries of."""
    return _listing(
        session,
        "SELECT m.key AS item FROM materials m WHERE m.id IN ("
        " SELECT material_id FROM relaxations WHERE source_id = :id"
        " UNION SELECT material_id FROM energy_entries WHERE source_id = :id)"
        " ORDER BY m.key",
        {"id": source_id},
        limit,
    )


def source_training_sets(session: Session, source_id: int) -> pd.DataFrame:
    """The training sets holding the source's frames, oldest first: training_set_id,
    training_set, relaxations, materials, frames, train_frames, val_frames,
    test_frames (of this source's), created_at."""
    return query_frame(
        session,
        "SELECT ts.id AS training_set_id, ts.name AS training_set,"
        " count(*)::int AS relaxations, count(DISTINCT r.material_id)::int AS materials,"
        " sum(cardinality(t.frame_ids))::int AS frames,"
        " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'train'), 0)::int"
        " AS train_frames,"
        " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'val'), 0)::int"
        " AS val_frames,"
        " COALESCE(sum(cardinality(t.frame_ids)) FILTER (WHERE t.split = 'test'), 0)::int"
        " AS test_frames,"
        " ts.created_at"
        " FROM relaxations r JOIN training_set_relaxations t ON t.relaxation_id = r.id"
        " JOIN training_sets ts ON ts.id = t.training_set_id"
        " WHERE r.source_id = :id"
        " GROUP BY ts.id ORDER BY ts.created_at, ts.id",
        {"id": source_id},
    )


def models_trained_on(session: Session, training_set_ids: Sequence[int]) -> pd.DataFrame:
    """The model versions trained on any of the sets, directly or through an ancestor
    (``model_lineage``: descendants included), by id: model_version_id, model, status,
    architecture, training_set (its own), through_ancestor (the nearest ancestor
    trained on one of the sets; None when it was itself), depth (0 itself, 1 its
    parent, …), held_in (that set)."""
    return query_frame(
        session,
        "SELECT DISTINCT ON (l.model_version_id) l.model_version_id, l.model, mv.status,"
        " mv.architecture, own.name AS training_set,"
        " CASE WHEN l.depth > 0 THEN l.ancestor END AS through_ancestor, l.depth,"
        " l.training_set AS held_in"
        " FROM model_lineage l JOIN model_versions mv ON mv.id = l.model_version_id"
        " JOIN training_sets own ON own.id = mv.training_set_id"
        " WHERE l.training_set_id = ANY(CAST(:sets AS int[]))"
        " ORDER BY l.model_version_id, l.depth",
        {"sets": list(training_set_ids)},
    )


def ml_relaxations_by(session: Session, model_ids: Sequence[int]) -> pd.DataFrame:
    """The ML relaxations each model ran: model, relaxations, materials, converged
    (counts), first_at, last_at (when the first and last were stored)."""
    return query_frame(
        session,
        "SELECT mv.name || ':' || mv.version AS model, count(*)::int AS relaxations,"
        " count(DISTINCT r.material_id)::int AS materials,"
        " count(*) FILTER (WHERE r.converged)::int AS converged,"
        " min(r.created_at) AS first_at, max(r.created_at) AS last_at"
        " FROM relaxations r JOIN model_versions mv ON mv.id = r.model_version_id"
        " WHERE r.model_version_id = ANY(CAST(:models AS int[]))"
        " GROUP BY mv.id ORDER BY mv.id",
        {"models": list(model_ids)},
    )


def ml_relaxation_ids(session: Session, model_ids: Sequence[int], limit: int | None) -> Listing:
    """Ids of the ML relaxations the models ran."""
    return _listing(
        session,
        "SELECT id AS item FROM relaxations"
        " WHERE model_version_id = ANY(CAST(:models AS int[])) ORDER BY id",
        {"models": list(model_ids)},
        limit,
    )


def ml_relaxed_materials(session: Session, model_ids: Sequence[int], limit: int | None) -> Listing:
    """Keys of the materials the models relaxed."""
    return _listing(
        session,
        "SELECT m.key AS item FROM materials m WHERE m.id IN (SELECT material_id"
        " FROM relaxations WHERE model_version_id = ANY(CAST(:models AS int[])))"
        " ORDER BY m.key",
        {"models": list(model_ids)},
        limit,
    )


def stability_by(session: Session, model_ids: Sequence[int]) -> pd.DataFrame:
    """The stability rows computed from the models' energies, per energy source:
    energy_source, materials, at_or_below_hull (e_above_hull ≤ 0), hull_runs,
    last_computed_at."""
    return query_frame(
        session,
        "SELECT s.energy_source, count(*)::int AS materials,"
        " count(*) FILTER (WHERE s.e_above_hull <= 0)::int AS at_or_below_hull,"
        " count(DISTINCT s.hull_run_id)::int AS hull_runs,"
        " max(h.created_at) AS last_computed_at"
        " FROM stability s JOIN hull_runs h ON h.id = s.hull_run_id"
        " WHERE s.model_version_id = ANY(CAST(:models AS int[]))"
        " GROUP BY s.energy_source ORDER BY s.energy_source",
        {"models": list(model_ids)},
    )


def stability_materials(session: Session, model_ids: Sequence[int], limit: int | None) -> Listing:
    """Keys of the materials with a stability row from the models' energies."""
    return _listing(
        session,
        "SELECT m.key AS item FROM materials m WHERE m.id IN (SELECT material_id"
        " FROM stability WHERE model_version_id = ANY(CAST(:models AS int[])))"
        " ORDER BY m.key",
        {"models": list(model_ids)},
        limit,
    )


# A decision comes from a model when the model screened its iteration or was the
# committee whose relaxation it weighed.
DECIDED_BY = """
FROM al_candidates c JOIN al_iterations i ON i.id = c.iteration_id
JOIN materials m ON m.id = c.material_id
JOIN al_campaigns k ON k.id = i.campaign_id
JOIN model_versions mv ON mv.id = i.screening_model_id
LEFT JOIN relaxations committee ON committee.id = c.committee_relaxation_id
WHERE i.screening_model_id = ANY(CAST(:models AS int[]))
   OR committee.model_version_id = ANY(CAST(:models AS int[]))"""


def campaign_decisions_by(session: Session, model_ids: Sequence[int]) -> pd.DataFrame:
    """The active-learning decisions the models took part in, counted per campaign,
    iteration and decision: campaign, iteration, screening_model, decision,
    candidates, labelled."""
    return query_frame(
        session,
        "SELECT k.name AS campaign, i.index AS iteration,"
        " mv.name || ':' || mv.version AS screening_model, c.decision,"
        " count(*)::int AS candidates,"
        " count(*) FILTER (WHERE c.label_status = 'labelled')::int AS labelled"
        + DECIDED_BY
        + " GROUP BY k.name, i.index, mv.id, c.decision ORDER BY k.name, i.index, c.decision",
        {"models": list(model_ids)},
    )


def campaign_candidates_by(
    session: Session, model_ids: Sequence[int], limit: int | None
) -> Listing:
    """Keys of the candidate materials those decisions were about."""
    return _listing(
        session,
        "SELECT DISTINCT m.key AS item " + DECIDED_BY + " ORDER BY m.key",
        {"models": list(model_ids)},
        limit,
    )


def retraction_history(session: Session, source_id: int, commands: Sequence[str]) -> pd.DataFrame:
    """The activities that retracted or restored the source, oldest first:
    activity_id, command, reason, os_user, host, started_at, status."""
    return query_frame(
        session,
        "SELECT id AS activity_id, command, arguments->>'reason' AS reason, os_user, host,"
        " started_at, status FROM activities"
        " WHERE command = ANY(CAST(:commands AS text[]))"
        " AND arguments->>'source_id' = CAST(:id AS text)"
        " ORDER BY started_at, id",
        {"commands": list(commands), "id": source_id},
    )
