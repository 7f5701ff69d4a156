"""Provenance: the activity log (one row per write command, rows inserted per table),
``activity_id`` on the rows commands create, source retraction, evaluation leakage,
the ``model_lineage`` view and ``model_training_materials()``.

Revision ID: f3b9d2e6a8c4
Revises: e1a7c3b9d5f2
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f3b9d2e6a8c4"
down_revision: str | None = "e1a7c3b9d5f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copies, not imports: a migration must not change when the vocabulary does.
STATUSES = "'running', 'succeeded', 'failed'"

# The activity a connection works for, set per connection by atlas2d (db.session);
# unset (NULL) for anyone else, e.g. a user's own SQL.
CURRENT_ACTIVITY = "NULLIF(current_setting('atlas2d.activity_id', true), '')::integer"

TAGGED_TABLES = (
    "sources",
    "materials",
    "relaxations",
    "training_sets",
    "model_versions",
    "frame_predictions",
    "evaluations",
    "hull_runs",
    "stability",
    "candidate_pools",
    "al_campaigns",
    "al_iterations",
)
"""Tables whose rows carry the activity that created them (frames, entries and
memberships belong to a tagged row)."""

COUNTED_TABLES = (
    *TAGGED_TABLES,
    "energy_entries",
    "frames",
    "training_set_relaxations",
    "pool_candidates",
    "al_candidates",
)
"""Tables whose inserted rows are counted per activity."""

COUNT_FUNCTION = f"""
CREATE FUNCTION activity_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    activity integer := {CURRENT_ACTIVITY};
    n bigint;
BEGIN
    IF activity IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO n FROM inserted_rows;
    IF n > 0 THEN
        INSERT INTO activity_rows (activity_id, table_name, n_rows)
        VALUES (activity, TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;
END $$;
"""

LINEAGE_VIEW = """
CREATE VIEW model_lineage AS
WITH RECURSIVE chain (model_version_id, ancestor_id, depth) AS (
    SELECT id, id, 0 FROM model_versions
    UNION ALL
    SELECT chain.model_version_id, m.parent_id, chain.depth + 1
    FROM chain JOIN model_versions m ON m.id = chain.ancestor_id
    WHERE m.parent_id IS NOT NULL
)
SELECT
    chain.model_version_id,
    m.name || ':' || m.version AS model,
    chain.depth,
    chain.ancestor_id,
    a.name || ':' || a.version AS ancestor,
    a.architecture,
    a.status,
    a.training_set_id,
    t.name AS training_set,
    t.content_hash AS training_set_hash,
    a.artifact_path,
    a.artifact_sha256,
    a.activity_id
FROM chain
JOIN model_versions m ON m.id = chain.model_version_id
JOIN model_versions a ON a.id = chain.ancestor_id
JOIN training_sets t ON t.id = a.training_set_id
"""

TRAINING_MATERIALS_FUNCTION = """
CREATE FUNCTION model_training_materials(model integer)
RETURNS TABLE (material_id integer, split text, ancestor_id integer, depth integer)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE chain (ancestor_id, depth) AS (
        SELECT id, 0 FROM model_versions WHERE id = model
        UNION ALL
        SELECT m.parent_id, chain.depth + 1
        FROM chain JOIN model_versions m ON m.id = chain.ancestor_id
        WHERE m.parent_id IS NOT NULL
    )
    SELECT DISTINCT r.material_id, tsr.split, chain.ancestor_id, chain.depth
    FROM chain
    JOIN model_versions a ON a.id = chain.ancestor_id
    JOIN training_set_relaxations tsr ON tsr.training_set_id = a.training_set_id
    JOIN relaxations r ON r.id = tsr.relaxation_id
$$;
COMMENT ON FUNCTION model_training_materials(integer) IS
    'Every material in the training set of the model version or of any ancestor '
    '(parent chain), with its split there, the ancestor and its depth (0 = the model).';
"""


def upgrade() -> None:
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("arguments", postgresql.JSONB(), nullable=False),
        sa.Column("os_user", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("atlas2d_version", sa.Text(), nullable=False),
        sa.Column("git_commit", sa.Text(), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rows_written", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_activities_status"),
        sa.CheckConstraint(
            "status <> 'failed' OR error IS NOT NULL", name="ck_activities_failed_has_error"
        ),
        sa.CheckConstraint(
            "(status = 'running') = (finished_at IS NULL)", name="ck_activities_finished"
        ),
    )
    op.create_index("ix_activities_started_at", "activities", ["started_at"])
    op.create_table(
        "activity_rows",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "activity_id",
            sa.Integer(),
            sa.ForeignKey("activities.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_activity_rows_activity_id", "activity_rows", ["activity_id"])
    op.execute(COUNT_FUNCTION)
    for table in TAGGED_TABLES:
        op.add_column(table, sa.Column("activity_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            f"fk_{table}_activity_id_activities",
            table,
            "activities",
            ["activity_id"],
            ["id"],
            ondelete="SET NULL",
        )
        # Set apart from ADD COLUMN so that existing rows stay NULL (made before the log).
        op.execute(f"ALTER TABLE {table} ALTER COLUMN activity_id SET DEFAULT {CURRENT_ACTIVITY}")
    for table in COUNTED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_count_inserted AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS inserted_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION activity_count_inserted()"
        )

    op.add_column("sources", sa.Column("retracted_at", sa.DateTime(timezone=True)))
    op.add_column("sources", sa.Column("retraction_reason", sa.Text()))
    op.create_check_constraint(
        "ck_sources_retraction_has_reason",
        "sources",
        "(retracted_at IS NULL) = (retraction_reason IS NULL)",
    )
    # Audits go from a relaxation (of a material, of a source) to the sets holding it.
    op.create_index(
        "ix_training_set_relaxations_relaxation_id",
        "training_set_relaxations",
        ["relaxation_id"],
    )

    op.add_column(
        "evaluations",
        sa.Column("leakage", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "evaluations",
        sa.Column("leaked_materials", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "evaluations",
        sa.Column("ancestor_val_materials", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        "ck_evaluations_leakage_counted", "evaluations", "leakage = (leaked_materials > 0)"
    )

    op.execute(LINEAGE_VIEW)
    op.execute(TRAINING_MATERIALS_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION model_training_materials(integer)")
    op.execute("DROP VIEW model_lineage")
    op.drop_constraint("ck_evaluations_leakage_counted", "evaluations")
    for column in ("ancestor_val_materials", "leaked_materials", "leakage"):
        op.drop_column("evaluations", column)
    op.drop_index("ix_training_set_relaxations_relaxation_id", "training_set_relaxations")
    op.drop_constraint("ck_sources_retraction_has_reason", "sources")
    op.drop_column("sources", "retraction_reason")
    op.drop_column("sources", "retracted_at")
    for table in COUNTED_TABLES:
        op.execute(f"DROP TRIGGER {table}_count_inserted ON {table}")
    for table in TAGGED_TABLES:
        op.drop_column(table, "activity_id")
    op.execute("DROP FUNCTION activity_count_inserted()")
    op.drop_table("activity_rows")
    op.drop_table("activities")
