"""One material's provenance in SQL (``atlas2d audit material``): its sources, its
relaxations, its stability per energy source, the training sets holding it and the
models trained on it, directly or through an ancestor. Functions take ``session``
first, return DataFrames whose column names carry their units, and never commit."""

from __future__ import annotations

import pandas as pd
from sqlalchemy.orm import Session

from atlas2d.queries.tabular import query_frame
from atlas2d.vocabulary import DFT

MATERIAL_SOURCES_SQL = """
WITH used AS (
    SELECT source_id, count(*) AS relaxations, 0 AS entries FROM relaxations
    WHERE material_id = :id AND source_id IS NOT NULL GROUP BY source_id
    UNION ALL
    SELECT source_id, 0, count(*) FROM energy_entries WHERE material_id = :id
    GROUP BY source_id
)
SELECT s.id AS source_id, s.path, s.sha256, s.format,
       sum(u.relaxations)::int AS relaxations, sum(u.entries)::int AS energy_entries,
       s.created_at AS ingested_at, s.retracted_at, s.retraction_reason
FROM used u JOIN sources s ON s.id = u.source_id
GROUP BY s.id ORDER BY s.id"""


def material_sources(session: Session, material_id: int) -> pd.DataFrame:
    """The files the material's relaxations and energy entries came from: source_id,
    path, sha256, format, relaxations, energy_entries, ingested_at, retracted_at,
    retraction_reason (both None unless retracted)."""
    return query_frame(session, MATERIAL_SOURCES_SQL, {"id": material_id})


def material_relaxations(session: Session, material_id: int, method: str) -> pd.DataFrame:
    """The material's relaxations of one method, in order: relaxation_id, model (ML
    only, ``NAME:VERSION``), source_id (DFT), sequence, n_sites, n_steps, converged,
    final_energy_per_atom_ev, final_area_per_atom_a2, created_at."""
    return query_frame(
        session,
        "SELECT r.id AS relaxation_id, mv.name || ':' || mv.version AS model, r.source_id,"
        " r.sequence, r.n_sites, r.n_steps, r.converged,"
        " r.final_energy_per_atom AS final_energy_per_atom_ev,"
        " r.final_area_per_atom AS final_area_per_atom_a2, r.created_at"
        " FROM relaxations r LEFT JOIN model_versions mv ON mv.id = r.model_version_id"
        " WHERE r.material_id = :id AND r.method = :method"
        " ORDER BY r.model_version_id NULLS FIRST, r.source_id, r.sequence, r.id",
        {"id": material_id, "method": method},
    )


def material_stability(session: Session, material_id: int) -> pd.DataFrame:
    """The material's place relative to the hull per energy source, DFT first:
    energy_source, e_above_hull_mev_per_atom, hull_distance_mev_per_atom,
    formation_energy_ev_per_atom, energy_per_atom_ev, hull_run, computed_at."""
    return query_frame(
        session,
        "SELECT s.energy_source, 1000 * s.e_above_hull AS e_above_hull_mev_per_atom,"
        " 1000 * s.hull_distance AS hull_distance_mev_per_atom,"
        " s.formation_energy_per_atom AS formation_energy_ev_per_atom,"
        " s.energy_per_atom AS energy_per_atom_ev, s.hull_run_id AS hull_run,"
        " h.created_at AS computed_at"
        " FROM stability s JOIN hull_runs h ON h.id = s.hull_run_id"
        " WHERE s.material_id = :id"
        " ORDER BY s.energy_source <> :dft, s.energy_source",
        {"id": material_id, "dft": DFT},
    )


# The sets holding the material, reached from its relaxations (indexed both ways).
MATERIAL_SETS_CTE = """
WITH held AS (
    SELECT t.training_set_id, t.split, count(*) AS relaxations,
           sum(cardinality(t.frame_ids)) AS frames
    FROM relaxations r JOIN training_set_relaxations t ON t.relaxation_id = r.id
    WHERE r.material_id = :id
    GROUP BY t.training_set_id, t.split
)"""


def material_training_sets(session: Session, material_id: int) -> pd.DataFrame:
    """The training sets holding the material's frames, oldest first: training_set,
    split, relaxations, frames, created_at. A set splits by material, so one row per
    set."""
    return query_frame(
        session,
        MATERIAL_SETS_CTE + " SELECT ts.name AS training_set, h.split,"
        " h.relaxations::int AS relaxations, h.frames::int AS frames, ts.created_at"
        " FROM held h JOIN training_sets ts ON ts.id = h.training_set_id"
        " ORDER BY ts.created_at, ts.id",
        {"id": material_id},
    )


def material_models(session: Session, material_id: int) -> pd.DataFrame:
    """Every model version trained on the material, directly (its own training set) or
    through an ancestor's (``model_lineage``): model, status, architecture, split (in
    that set), training_set (holding the material), through_ancestor (None when
    direct), depth (0 direct, 1 parent, …). One row per (model, ancestor) that held
    the material, by model and depth; with model_version_id first."""
    return query_frame(
        session,
        MATERIAL_SETS_CTE
        + " SELECT l.model_version_id, l.model, mv.status, mv.architecture, h.split,"
        " l.training_set, CASE WHEN l.depth > 0 THEN l.ancestor END AS through_ancestor,"
        " l.depth"
        " FROM held h JOIN model_lineage l ON l.training_set_id = h.training_set_id"
        " JOIN model_versions mv ON mv.id = l.model_version_id"
        " ORDER BY l.model, l.depth",
        {"id": material_id},
    )


def material_campaign_decisions(session: Session, material_id: int) -> pd.DataFrame:
    """The active-learning decisions about the material: campaign, iteration,
    screening_model, decision, reason, ml_e_above_hull_mev_per_atom, label_status,
    dft_e_above_hull_mev_per_atom."""
    return query_frame(
        session,
        "SELECT k.name AS campaign, i.index AS iteration,"
        " mv.name || ':' || mv.version AS screening_model, c.decision, c.reason,"
        " 1000 * c.ml_e_above_hull AS ml_e_above_hull_mev_per_atom, c.label_status,"
        " 1000 * c.dft_e_above_hull AS dft_e_above_hull_mev_per_atom"
        " FROM al_candidates c JOIN al_iterations i ON i.id = c.iteration_id"
        " JOIN al_campaigns k ON k.id = i.campaign_id"
        " JOIN model_versions mv ON mv.id = i.screening_model_id"
        " WHERE c.material_id = :id ORDER BY k.name, i.index",
        {"id": material_id},
    )
