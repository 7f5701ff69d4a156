"""Create training_sets, training_set_relaxations and the training_set_frames view.

Revision ID: b2f4c8d1e3a7
Revises: 7c1e0a2d4b10
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b2f4c8d1e3a7"
down_revision: str | None = "7c1e0a2d4b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMMUTABLE = """
CREATE FUNCTION training_sets_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = 'training sets are immutable: create a new one instead of changing this one';
END $$;
CREATE TRIGGER training_sets_immutable BEFORE UPDATE ON training_sets
    FOR EACH STATEMENT EXECUTE FUNCTION training_sets_immutable();
CREATE TRIGGER training_set_relaxations_immutable BEFORE UPDATE ON training_set_relaxations
    FOR EACH STATEMENT EXECUTE FUNCTION training_sets_immutable();
"""


REFERENCE_TRIGGERS = """
CREATE FUNCTION training_set_relaxations_check_set() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing integer;
BEGIN
    SELECT n.training_set_id INTO missing FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM training_sets s WHERE s.id = n.training_set_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('training_set_relaxations.training_set_id %s refers to no training set', missing);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER training_set_relaxations_check_set AFTER INSERT ON training_set_relaxations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION training_set_relaxations_check_set();

CREATE FUNCTION training_sets_delete_relaxations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM training_set_relaxations t USING old_sets o WHERE t.training_set_id = o.id;
    RETURN NULL;
END $$;
CREATE TRIGGER training_sets_delete_relaxations AFTER DELETE ON training_sets
    REFERENCING OLD TABLE AS old_sets
    FOR EACH STATEMENT EXECUTE FUNCTION training_sets_delete_relaxations();
"""


def upgrade() -> None:
    op.create_table(
        "training_sets",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("split_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("filter_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("n_materials", sa.Integer(), nullable=False),
        sa.Column("relaxation_watermark", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rule IN ('ecut', 'wang', 'all')", name=op.f("ck_training_sets_rule")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_sets")),
        sa.UniqueConstraint("name", name=op.f("uq_training_sets_name")),
    )
    op.create_table(
        "training_set_relaxations",
        sa.Column("training_set_id", sa.Integer(), nullable=False),
        # No foreign key to relaxations or frames on purpose: a training set is a
        # snapshot, and `trainset verify` reports what was deleted or changed since.
        sa.Column("relaxation_id", sa.Integer(), nullable=False),
        sa.Column("split", sa.Text(), nullable=False),
        sa.Column("frame_ids", postgresql.ARRAY(sa.BigInteger(), dimensions=1), nullable=False),
        sa.CheckConstraint(
            "split IN ('train', 'val', 'test')", name=op.f("ck_training_set_relaxations_split")
        ),
        sa.CheckConstraint(
            "cardinality(frame_ids) > 0",
            name=op.f("ck_training_set_relaxations_frame_ids_not_empty"),
        ),
        sa.PrimaryKeyConstraint(
            "training_set_id", "relaxation_id", name=op.f("pk_training_set_relaxations")
        ),
    )
    # One row per selected frame, for SQL users and exports. Stored per relaxation
    # (frame ids in step order): ten times fewer rows to write than one per frame.
    op.execute(
        "CREATE VIEW training_set_frames AS"
        " SELECT t.training_set_id, t.relaxation_id, u.frame_id, t.split"
        " FROM training_set_relaxations t CROSS JOIN LATERAL unnest(t.frame_ids) AS u(frame_id)"
    )
    op.execute(IMMUTABLE)
    # training_set_relaxations.training_set_id → training_sets.id, enforced per statement:
    # a row-level foreign key cost more than the rest of storing a set.
    op.execute(REFERENCE_TRIGGERS)


def downgrade() -> None:
    # Unsafe: drops every training set.
    op.execute("DROP VIEW training_set_frames")
    op.drop_table("training_set_relaxations")
    op.drop_table("training_sets")
    op.execute("DROP FUNCTION training_set_relaxations_check_set()")
    op.execute("DROP FUNCTION training_sets_delete_relaxations()")
    op.execute("DROP FUNCTION training_sets_immutable()")
