"""Candidate pools: generated 2D layers, their parents and their unrelaxed structures.

Revision ID: c4e8a2f6d1b3
Revises: a3d7f1c9e5b2
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4e8a2f6d1b3"
down_revision: str | None = "a3d7f1c9e5b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy, not an import: a migration must not change when the vocabulary does.
GENERATORS = "'substitute', 'decorate'"


def upgrade() -> None:
    op.create_table(
        "candidate_pools",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("generator", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("duplicates", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("n_candidates", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            f"generator IN ({GENERATORS})", name=op.f("ck_candidate_pools_generator")
        ),
        sa.CheckConstraint(
            "n_candidates >= 0", name=op.f("ck_candidate_pools_n_candidates_nonnegative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_candidate_pools_name")),
    )
    op.create_table(
        "pool_candidates",
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("parent_material_id", sa.Integer(), nullable=True),
        sa.Column("substitution", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("n_sites", sa.SmallInteger(), nullable=False),
        sa.Column("species", postgresql.ARRAY(sa.SmallInteger(), dimensions=1), nullable=False),
        sa.Column("cell", postgresql.ARRAY(sa.Double(), dimensions=2), nullable=False),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("n_sites > 0", name=op.f("ck_pool_candidates_n_sites_positive")),
        sa.CheckConstraint(
            "cardinality(species) = n_sites", name=op.f("ck_pool_candidates_species_length")
        ),
        sa.CheckConstraint(
            "octet_length(positions) = 24 * n_sites",
            name=op.f("ck_pool_candidates_positions_length"),
        ),
        sa.CheckConstraint("cardinality(cell) = 9", name=op.f("ck_pool_candidates_cell_shape")),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["candidate_pools.id"],
            name=op.f("fk_pool_candidates_pool_id_candidate_pools"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_pool_candidates_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_material_id"],
            ["materials.id"],
            name=op.f("fk_pool_candidates_parent_material_id_materials"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("pool_id", "material_id", name=op.f("pk_pool_candidates")),
    )
    op.create_index(op.f("ix_pool_candidates_material_id"), "pool_candidates", ["material_id"])
    op.create_index(
        op.f("ix_pool_candidates_parent_material_id"), "pool_candidates", ["parent_material_id"]
    )


def downgrade() -> None:
    # Unsafe: drops every pool and the generated structures (the generated materials
    # stay, without the structure relax --pool starts from).
    op.drop_index(op.f("ix_pool_candidates_parent_material_id"), table_name="pool_candidates")
    op.drop_index(op.f("ix_pool_candidates_material_id"), table_name="pool_candidates")
    op.drop_table("pool_candidates")
    op.drop_table("candidate_pools")
