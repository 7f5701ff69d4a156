"""Create model_versions (the model registry) and frame_predictions.

Revision ID: d5a9e3f7c2b1
Revises: b2f4c8d1e3a7
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d5a9e3f7c2b1"
down_revision: str | None = "b2f4c8d1e3a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _matrix3(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, postgresql.ARRAY(sa.Double(), dimensions=2), nullable=nullable)


def _jsonb(name: str) -> sa.Column:
    return sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), nullable=False)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column("training_set_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        _jsonb("hyperparameters"),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        _jsonb("metrics"),
        _jsonb("training_curve"),
        _jsonb("environment"),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "architecture IN ('m3gnet', 'mace')", name=op.f("ck_model_versions_architecture")
        ),
        sa.CheckConstraint(
            "status IN ('training', 'ready', 'failed')", name=op.f("ck_model_versions_status")
        ),
        sa.CheckConstraint("version > 0", name=op.f("ck_model_versions_version_positive")),
        sa.CheckConstraint(
            "status <> 'ready' OR (artifact_path IS NOT NULL AND artifact_sha256 IS NOT NULL"
            " AND finished_at IS NOT NULL)",
            name=op.f("ck_model_versions_ready_has_artifact"),
        ),
        sa.CheckConstraint(
            "status <> 'failed' OR error IS NOT NULL",
            name=op.f("ck_model_versions_failed_has_error"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["model_versions.id"],
            name=op.f("fk_model_versions_parent_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["training_set_id"],
            ["training_sets.id"],
            name=op.f("fk_model_versions_training_set_id_training_sets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
    )
    op.create_index(op.f("ix_model_versions_parent_id"), "model_versions", ["parent_id"])
    op.create_index(
        op.f("ix_model_versions_training_set_id"), "model_versions", ["training_set_id"]
    )
    op.create_table(
        "frame_predictions",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("frame_id", sa.BigInteger(), nullable=False),
        sa.Column("n_sites", sa.SmallInteger(), nullable=False),
        sa.Column("energy", sa.Double(), nullable=False),
        sa.Column("forces", sa.LargeBinary(), nullable=False),
        _matrix3("stress", nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "octet_length(forces) = 24 * n_sites", name=op.f("ck_frame_predictions_forces_length")
        ),
        sa.CheckConstraint(
            "stress IS NULL OR cardinality(stress) = 9",
            name=op.f("ck_frame_predictions_stress_shape"),
        ),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
            name=op.f("fk_frame_predictions_frame_id_frames"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_frame_predictions_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_version_id", "frame_id", name=op.f("pk_frame_predictions")),
    )
    op.create_index(op.f("ix_frame_predictions_frame_id"), "frame_predictions", ["frame_id"])


def downgrade() -> None:
    # Unsafe: drops the model registry and every stored prediction (artifacts stay on disk).
    op.drop_table("frame_predictions")
    op.drop_table("model_versions")
