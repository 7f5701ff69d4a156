"""Active-learning campaigns: campaigns, iterations, candidates and the summary view;
file-made candidate pools.

Revision ID: e1a7c3b9d5f2
Revises: c4e8a2f6d1b3
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e1a7c3b9d5f2"
down_revision: str | None = "c4e8a2f6d1b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copies, not imports: a migration must not change when the vocabulary does.
OLD_GENERATORS = "'substitute', 'decorate'"
GENERATORS = "'substitute', 'decorate', 'file'"
STAGES = "'generate', 'relax', 'select', 'label', 'measure', 'retrain', 'done'"
STATUSES = "'running', 'waiting', 'done', 'failed'"
DECISIONS = "'filtered', 'selected', 'not_selected', 'control'"
LABEL_STATUSES = "'pending', 'labelled', 'failed'"

SUMMARY_VIEW = """
CREATE VIEW al_iteration_summary AS
WITH labels AS (
    SELECT k.*,
           k.label_status = 'labelled' AS labelled_,
           k.label_status = 'labelled'
               AND k.dft_e_above_hull <= (c.parameters->>'stable_threshold_ev')::float8 AS hit
    FROM al_candidates k
    JOIN al_iterations i ON i.id = k.iteration_id
    JOIN al_campaigns c ON c.id = i.campaign_id
)
SELECT
    c.name AS campaign,
    i.index AS iteration,
    screening.name || ':' || screening.version AS screening_model,
    i.stage,
    i.status,
    GREATEST(count(k.material_id), COALESCE((i.counts->>'candidates')::int, 0)) AS candidates,
    count(k.ml_relaxation_id) AS relaxed,
    count(*) FILTER (WHERE k.passed) AS passed,
    count(*) FILTER (WHERE k.decision = 'selected') AS selected,
    count(*) FILTER (WHERE k.in_control) AS control,
    count(*) FILTER (WHERE k.label_status = 'labelled') AS labelled,
    count(*) FILTER (WHERE k.label_status = 'pending') AS pending,
    count(*) FILTER (WHERE k.label_status = 'failed') AS failed,
    count(*) FILTER (WHERE k.dft_e_above_hull IS NOT NULL) AS measured,
    count(*) FILTER (WHERE k.decision = 'selected' AND k.hit) AS hits,
    (count(*) FILTER (WHERE k.decision = 'selected' AND k.hit))::float8
        / NULLIF(count(*) FILTER (WHERE k.decision = 'selected' AND k.labelled_), 0)
        AS hit_rate,
    (count(*) FILTER (WHERE k.in_control AND k.hit))::float8
        / NULLIF(count(*) FILTER (WHERE k.in_control AND k.labelled_), 0)
        AS control_hit_rate,
    (i.metrics->>'enrichment')::float8 AS enrichment,
    (i.metrics->>'prospective_energy_mae_mev_per_atom')::float8
        AS prospective_energy_mae_mev_per_atom,
    (i.metrics->>'prospective_ehull_mae_mev_per_atom')::float8
        AS prospective_ehull_mae_mev_per_atom,
    (i.metrics->>'new_dft_stable')::int AS new_dft_stable,
    (i.metrics->>'dft_hull_size')::int AS dft_hull_size,
    (screening.metrics->'test'->>'energy_mae_mev_per_atom')::float8
        AS screening_test_energy_mae_mev_per_atom,
    produced.name || ':' || produced.version AS produced_model,
    (produced.metrics->'test'->>'energy_mae_mev_per_atom')::float8
        AS produced_test_energy_mae_mev_per_atom,
    i.started_at,
    i.finished_at
FROM al_iterations i
JOIN al_campaigns c ON c.id = i.campaign_id
JOIN model_versions screening ON screening.id = i.screening_model_id
LEFT JOIN model_versions produced ON produced.id = i.produced_model_id
LEFT JOIN labels k ON k.iteration_id = i.id
GROUP BY c.id, i.id, screening.id, produced.id
"""


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    default = None if nullable else sa.text("now()")
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade() -> None:
    op.drop_constraint("ck_candidate_pools_generator", "candidate_pools", type_="check")
    op.create_check_constraint(
        "ck_candidate_pools_generator", "candidate_pools", f"generator IN ({GENERATORS})"
    )
    op.create_table(
        "al_campaigns",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "status IN ('created', 'running', 'waiting', 'done', 'failed')",
            name=op.f("ck_al_campaigns_status"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_al_campaigns_model_version_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_al_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_al_campaigns_name")),
    )
    op.create_table(
        "al_iterations",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("screening_model_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("stage_times", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=True),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("training_set_id", sa.Integer(), nullable=True),
        sa.Column("produced_model_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.CheckConstraint("index >= 1", name=op.f("ck_al_iterations_index_positive")),
        sa.CheckConstraint(f"stage IN ({STAGES})", name=op.f("ck_al_iterations_stage")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_al_iterations_status")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["al_campaigns.id"],
            name=op.f("fk_al_iterations_campaign_id_al_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["screening_model_id"],
            ["model_versions.id"],
            name=op.f("fk_al_iterations_screening_model_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["candidate_pools.id"],
            name=op.f("fk_al_iterations_pool_id_candidate_pools"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["training_set_id"],
            ["training_sets.id"],
            name=op.f("fk_al_iterations_training_set_id_training_sets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["produced_model_id"],
            ["model_versions.id"],
            name=op.f("fk_al_iterations_produced_model_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_al_iterations")),
        sa.UniqueConstraint(
            "campaign_id", "index", name=op.f("uq_al_iterations_campaign_id_index")
        ),
    )
    op.create_table(
        "al_candidates",
        sa.Column("iteration_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("ml_relaxation_id", sa.Integer(), nullable=True),
        sa.Column("ml_e_above_hull", sa.Double(), nullable=True),
        sa.Column("committee_relaxation_id", sa.Integer(), nullable=True),
        sa.Column("committee_e_above_hull", sa.Double(), nullable=True),
        sa.Column("disagreement", sa.Double(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("in_control", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("label_status", sa.Text(), nullable=True),
        sa.Column("label_error", sa.Text(), nullable=True),
        sa.Column("dft_relaxation_id", sa.Integer(), nullable=True),
        sa.Column("dft_e_above_hull", sa.Double(), nullable=True),
        sa.CheckConstraint(f"decision IN ({DECISIONS})", name=op.f("ck_al_candidates_decision")),
        sa.CheckConstraint(
            f"label_status IN ({LABEL_STATUSES})", name=op.f("ck_al_candidates_label_status")
        ),
        sa.CheckConstraint(
            "(label_status IS NOT NULL) = (decision IN ('selected', 'control'))",
            name=op.f("ck_al_candidates_labels_for_chosen"),
        ),
        sa.CheckConstraint(
            "decision <> 'control' OR in_control",
            name=op.f("ck_al_candidates_control_in_control"),
        ),
        sa.ForeignKeyConstraint(
            ["iteration_id"],
            ["al_iterations.id"],
            name=op.f("fk_al_candidates_iteration_id_al_iterations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_al_candidates_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ml_relaxation_id"],
            ["relaxations.id"],
            name=op.f("fk_al_candidates_ml_relaxation_id_relaxations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["committee_relaxation_id"],
            ["relaxations.id"],
            name=op.f("fk_al_candidates_committee_relaxation_id_relaxations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["dft_relaxation_id"],
            ["relaxations.id"],
            name=op.f("fk_al_candidates_dft_relaxation_id_relaxations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("iteration_id", "material_id", name=op.f("pk_al_candidates")),
    )
    op.create_index(op.f("ix_al_candidates_material_id"), "al_candidates", ["material_id"])
    op.execute(SUMMARY_VIEW)


def downgrade() -> None:
    # Unsafe: drops every campaign's record (the materials, relaxations, pools, training
    # sets and models it made stay).
    op.execute("DROP VIEW al_iteration_summary")
    op.drop_index(op.f("ix_al_candidates_material_id"), table_name="al_candidates")
    op.drop_table("al_candidates")
    op.drop_table("al_iterations")
    op.drop_table("al_campaigns")
    op.execute("DELETE FROM candidate_pools WHERE generator = 'file'")
    op.drop_constraint("ck_candidate_pools_generator", "candidate_pools", type_="check")
    op.create_check_constraint(
        "ck_candidate_pools_generator", "candidate_pools", f"generator IN ({OLD_GENERATORS})"
    )
