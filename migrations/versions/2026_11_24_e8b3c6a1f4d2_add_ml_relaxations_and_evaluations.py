"""ML relaxations (relaxations.model_version_id), evaluations, and the
relaxation_errors view.

Revision ID: e8b3c6a1f4d2
Revises: d5a9e3f7c2b1
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e8b3c6a1f4d2"
down_revision: str | None = "d5a9e3f7c2b1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per ML relaxation of a material that has a DFT relaxation: the model's
# relaxed energy and area next to the DFT-relaxed ones (the last frame of the
# material's last DFT relaxation). Energies eV/atom, areas Å²/atom.
RELAXATION_ERRORS = """
CREATE VIEW relaxation_errors AS
WITH dft_final AS (
    SELECT DISTINCT ON (r.material_id)
           r.material_id, r.id AS relaxation_id, r.final_energy_per_atom, r.final_area_per_atom
    FROM relaxations r
    WHERE r.method = 'dft'
    ORDER BY r.material_id, r.sequence DESC, r.id DESC
)
SELECT mv.name AS model_name,
       mv.version AS model_version,
       mv.id AS model_version_id,
       m.key AS material_key,
       m.formula,
       m.chemsys,
       m.spacegroup_number,
       m.dimensionality,
       ml.id AS relaxation_id,
       d.relaxation_id AS dft_relaxation_id,
       ml.parameters,
       ml.converged,
       COALESCE((ml.info ->> 'optimizer_steps')::int, ml.n_steps) AS n_steps,
       d.final_energy_per_atom AS dft_energy_per_atom,
       ml.final_energy_per_atom AS ml_energy_per_atom,
       ml.final_energy_per_atom - d.final_energy_per_atom AS energy_error_per_atom,
       d.final_area_per_atom AS dft_area_per_atom,
       ml.final_area_per_atom AS ml_area_per_atom,
       ml.final_area_per_atom - d.final_area_per_atom AS area_error_per_atom
FROM relaxations ml
JOIN model_versions mv ON mv.id = ml.model_version_id
JOIN materials m ON m.id = ml.material_id
JOIN dft_final d ON d.material_id = ml.material_id
WHERE ml.method = 'ml'
"""


def upgrade() -> None:
    op.add_column("relaxations", sa.Column("model_version_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_relaxations_model_version_id_model_versions"),
        "relaxations",
        "model_versions",
        ["model_version_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(op.f("ix_relaxations_model_version_id"), "relaxations", ["model_version_id"])
    op.create_check_constraint(
        op.f("ck_relaxations_model_only_for_ml"),
        "relaxations",
        "method = 'ml' OR model_version_id IS NULL",
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("training_set_id", sa.Integer(), nullable=True),
        sa.Column("split", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("per_element", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("per_spacegroup", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('relaxation', 'direct', 'stability')", name=op.f("ck_evaluations_kind")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_evaluations_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["training_set_id"],
            ["training_sets.id"],
            name=op.f("fk_evaluations_training_set_id_training_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_index(op.f("ix_evaluations_model_version_id"), "evaluations", ["model_version_id"])
    op.create_index(op.f("ix_evaluations_training_set_id"), "evaluations", ["training_set_id"])
    op.execute(RELAXATION_ERRORS)


def downgrade() -> None:
    # Unsafe: drops every evaluation and the link of ML relaxations to their models.
    op.execute("DROP VIEW relaxation_errors")
    op.drop_table("evaluations")
    op.drop_constraint(op.f("ck_relaxations_model_only_for_ml"), "relaxations", type_="check")
    op.drop_index(op.f("ix_relaxations_model_version_id"), table_name="relaxations")
    op.drop_constraint(
        op.f("fk_relaxations_model_version_id_model_versions"), "relaxations", type_="foreignkey"
    )
    op.drop_column("relaxations", "model_version_id")
