"""Alloys: the ``formation_energies`` table (per material, system and energy source), the
``alloy_formation_energies`` view, the ``cluster-expansion`` architecture and the
``alloy`` evaluation kind and the ``enumerate`` pool generator.

Revision ID: d8f2a6c4e9b3
Revises: b7d3e9a1c5f8
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d8f2a6c4e9b3"
down_revision: str | None = "b7d3e9a1c5f8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copies, not imports: a migration must not change when the vocabulary does.
OLD_ARCHITECTURES = "'m3gnet', 'mace'"
NEW_ARCHITECTURES = OLD_ARCHITECTURES + ", 'cluster-expansion'"
OLD_KINDS = "'relaxation', 'direct', 'stability'"
NEW_KINDS = OLD_KINDS + ", 'alloy'"
OLD_GENERATORS = "'substitute', 'decorate', 'file'"
NEW_GENERATORS = OLD_GENERATORS + ", 'enumerate'"
CURRENT_ACTIVITY = "NULLIF(current_setting('atlas2d.activity_id', true), '')::integer"

VIEW = """
CREATE VIEW alloy_formation_energies AS
SELECT m.key AS material_key,
       m.formula,
       f.system,
       f.x,
       f.n_metal_sites,
       f.formation_energy_mev_per_site,
       f.formation_energy_mev_per_atom,
       a.key AS end_member_a_key,
       b.key AS end_member_b_key,
       f.energy_source,
       f.model_version_id,
       f.alloy_energy_ev,
       f.computed_at,
       f.material_id
FROM formation_energies f
JOIN materials m ON m.id = f.material_id
JOIN materials a ON a.id = f.end_member_a_id
JOIN materials b ON b.id = f.end_member_b_id
"""


def _replace_check(table: str, column: str, values: str) -> None:
    name = op.f(f"ck_{table}_{column}")
    op.drop_constraint(name, table, type_="check")
    op.create_check_constraint(name, table, f"{column} IN ({values})")


def upgrade() -> None:
    _replace_check("model_versions", "architecture", NEW_ARCHITECTURES)
    _replace_check("evaluations", "kind", NEW_KINDS)
    _replace_check("candidate_pools", "generator", NEW_GENERATORS)
    op.create_table(
        "formation_energies",
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("energy_source", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("x", sa.Double(), nullable=False),
        sa.Column("n_metal_sites", sa.SmallInteger(), nullable=False),
        sa.Column("formation_energy_mev_per_site", sa.Double(), nullable=False),
        sa.Column("formation_energy_mev_per_atom", sa.Double(), nullable=False),
        sa.Column("end_member_a_id", sa.Integer(), nullable=False),
        sa.Column("end_member_b_id", sa.Integer(), nullable=False),
        sa.Column("alloy_energy_ev", sa.Double(), nullable=True),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "activity_id", sa.Integer(), server_default=sa.text(CURRENT_ACTIVITY), nullable=True
        ),
        sa.CheckConstraint(
            "(energy_source = 'dft') = (model_version_id IS NULL)",
            name=op.f("ck_formation_energies_source_matches_model"),
        ),
        sa.CheckConstraint("x >= 0 AND x <= 1", name=op.f("ck_formation_energies_x_range")),
        sa.CheckConstraint(
            "n_metal_sites > 0", name=op.f("ck_formation_energies_n_metal_sites_positive")
        ),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_formation_energies_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_formation_energies_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["end_member_a_id"],
            ["materials.id"],
            name=op.f("fk_formation_energies_end_member_a_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["end_member_b_id"],
            ["materials.id"],
            name=op.f("fk_formation_energies_end_member_b_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_formation_energies_activity_id_activities"),
            ondelete="SET NULL",
        ),
        # An end member (MoS2) belongs to every system with its metal, with its own x in
        # each (1 in Mo-W-S, 0 in Cr-Mo-S): the system is part of the key.
        sa.PrimaryKeyConstraint(
            "material_id", "system", "energy_source", name=op.f("pk_formation_energies")
        ),
    )
    op.create_index(
        op.f("ix_formation_energies_model_version_id"), "formation_energies", ["model_version_id"]
    )
    op.create_index(
        "ix_formation_energies_system_energy_source",
        "formation_energies",
        ["system", "energy_source"],
    )
    op.execute(
        "CREATE TRIGGER formation_energies_count_inserted AFTER INSERT ON formation_energies "
        "REFERENCING NEW TABLE AS inserted_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION activity_count_inserted()"
    )
    op.execute(VIEW)


def downgrade() -> None:
    # Unsafe: drops every formation energy, every alloy evaluation and every cluster
    # expansion's registry row (with what refers to them).
    op.execute("DROP VIEW alloy_formation_energies")
    op.drop_table("formation_energies")  # its trigger goes with it
    op.execute("DELETE FROM evaluations WHERE kind = 'alloy'")
    op.execute("DELETE FROM candidate_pools WHERE generator = 'enumerate'")
    _replace_check("candidate_pools", "generator", OLD_GENERATORS)
    op.execute("DELETE FROM model_versions WHERE architecture = 'cluster-expansion'")
    _replace_check("evaluations", "kind", OLD_KINDS)
    _replace_check("model_versions", "architecture", OLD_ARCHITECTURES)
