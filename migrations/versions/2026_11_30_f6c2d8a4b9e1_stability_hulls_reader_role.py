"""Stability (convex hulls per energy source), the stability views and function, the
read-only ``atlas2d_reader`` role, and the ``labeller`` source format.

Revision ID: f6c2d8a4b9e1
Revises: e8b3c6a1f4d2
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f6c2d8a4b9e1"
down_revision: str | None = "e8b3c6a1f4d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_FORMATS = "'vasprun', 'outcar', 'extxyz', 'alexandria-traj', 'alexandria-hull', 'records'"
NEW_FORMATS = OLD_FORMATS + ", 'labeller'"

# One row per (material, energy source): the stability row is replaced by each hull run
# that recomputes the material's chemical system, so this is the latest result.
MATERIAL_STABILITY = """
CREATE VIEW material_stability AS
SELECT m.key AS material_key,
       m.formula,
       m.chemsys,
       m.spacegroup_number AS spacegroup,
       m.dimensionality,
       s.energy_source,
       s.model_version_id,
       s.energy_per_atom AS energy_ev_per_atom,
       s.formation_energy_per_atom AS formation_energy_ev_per_atom,
       s.e_above_hull AS e_above_hull_ev_per_atom,
       1000 * s.e_above_hull AS e_above_hull_mev_per_atom,
       s.hull_distance AS hull_distance_ev_per_atom,
       s.decomposition,
       s.hull_run_id AS hull_run,
       s.material_id
FROM stability s
JOIN materials m ON m.id = s.material_id
"""

STABLE_COMPOUNDS_FUNCTION = """
CREATE FUNCTION stable_compounds(max_ehull_ev double precision DEFAULT 0.0,
                                 source text DEFAULT 'dft')
RETURNS SETOF material_stability
LANGUAGE sql STABLE AS $$
    SELECT * FROM material_stability
    WHERE energy_source = source AND e_above_hull_ev_per_atom <= max_ehull_ev
    ORDER BY chemsys, e_above_hull_ev_per_atom, material_key
$$
"""

STABLE_COMPOUNDS_VIEW = """
CREATE VIEW stable_compounds AS SELECT * FROM stable_compounds(0.0, 'dft')
"""

# A role, not a login: give colleagues query access with
#   CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE atlas2d_reader;
# Roles are shared by every database of a server, so it is created only when missing;
# a migrating user without CREATEROLE (managed databases) gets a notice, not a failure.
# The default privileges cover the tables later migrations create (they run as the same
# user). Functions are executable by PUBLIC already.
READER_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atlas2d_reader') THEN
        CREATE ROLE atlas2d_reader NOLOGIN;
    END IF;
    GRANT USAGE ON SCHEMA public TO atlas2d_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO atlas2d_reader;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO atlas2d_reader;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'atlas2d_reader not created or granted (needs CREATEROLE): %', SQLERRM;
END $$;
"""

READER_ROLE_REVOKE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atlas2d_reader') THEN
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM atlas2d_reader;
        REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM atlas2d_reader;
        REVOKE USAGE ON SCHEMA public FROM atlas2d_reader;
    END IF;
END $$;
"""


def _replace_format_check(formats: str) -> None:
    op.drop_constraint(op.f("ck_sources_format"), "sources", type_="check")
    op.create_check_constraint(op.f("ck_sources_format"), "sources", f"format IN ({formats})")


def upgrade() -> None:
    _replace_format_check(NEW_FORMATS)
    op.create_table(
        "hull_runs",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("energy_source", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("parameters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("watermarks", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("wall_time_s", sa.Double(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_hull_runs_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hull_runs")),
    )
    op.create_index(op.f("ix_hull_runs_energy_source"), "hull_runs", ["energy_source"])
    op.create_table(
        "stability",
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("energy_source", sa.Text(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("hull_run_id", sa.Integer(), nullable=False),
        sa.Column("energy_per_atom", sa.Double(), nullable=False),
        sa.Column("formation_energy_per_atom", sa.Double(), nullable=False),
        sa.Column("e_above_hull", sa.Double(), nullable=False),
        sa.Column("hull_distance", sa.Double(), nullable=False),
        sa.Column("decomposition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint(
            "(energy_source = 'dft') = (model_version_id IS NULL)",
            name=op.f("ck_stability_source_matches_model"),
        ),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_stability_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_stability_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hull_run_id"],
            ["hull_runs.id"],
            name=op.f("fk_stability_hull_run_id_hull_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("material_id", "energy_source", name=op.f("pk_stability")),
    )
    op.create_index(op.f("ix_stability_hull_run_id"), "stability", ["hull_run_id"])
    op.create_index(op.f("ix_stability_model_version_id"), "stability", ["model_version_id"])
    op.create_index(
        "ix_stability_energy_source_e_above_hull", "stability", ["energy_source", "e_above_hull"]
    )
    op.execute(MATERIAL_STABILITY)
    op.execute(STABLE_COMPOUNDS_FUNCTION)
    op.execute(STABLE_COMPOUNDS_VIEW)
    op.execute(READER_ROLE)


def downgrade() -> None:
    # Unsafe: drops every stability result. The role stays (other databases on the same
    # server may use it); its privileges in this database are revoked.
    op.execute(READER_ROLE_REVOKE)
    op.execute("DROP VIEW stable_compounds")
    op.execute("DROP FUNCTION stable_compounds(double precision, text)")
    op.execute("DROP VIEW material_stability")
    op.drop_table("stability")
    op.drop_table("hull_runs")
    op.execute("DELETE FROM sources WHERE format = 'labeller'")
    _replace_format_check(OLD_FORMATS)
