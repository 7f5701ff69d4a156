"""Model files in the database: ``artifact_blobs``, content-addressed by sha256, so that
a worker on another machine loads a model from PostgreSQL (``$ATLAS2D_HOME/artifacts``
becomes a cache). Existing versions' files are copied in lazily, the first time a
machine that has the file loads it (a migration cannot see ``$ATLAS2D_HOME``).

Revision ID: b7d3e9a1c5f8
Revises: b7d4e2a9c6f1
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7d3e9a1c5f8"
down_revision: str | None = "b7d4e2a9c6f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("n_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "octet_length(content) = n_bytes", name=op.f("ck_artifact_blobs_content_length")
        ),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_artifact_blobs_sha256_hex")),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_artifact_blobs")),
    )
    # Out of line and uncompressed (model files barely compress): substring() then reads
    # only the slices asked for, so a file is fetched in bounded memory.
    op.execute("ALTER TABLE artifact_blobs ALTER COLUMN content SET STORAGE EXTERNAL")


def downgrade() -> None:
    # Unsafe when a machine has no copy of a model file: its only copy goes with the table.
    op.drop_table("artifact_blobs")
