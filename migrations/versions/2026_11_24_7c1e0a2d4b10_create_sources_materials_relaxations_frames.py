"""Create sources, materials, energy_entries, relaxations and frames.

Revision ID: 7c1e0a2d4b10
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7c1e0a2d4b10"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCE_FORMATS = "'vasprun', 'outcar', 'extxyz', 'alexandria-traj', 'alexandria-hull', 'records'"


FRAMES_REFERENCE_TRIGGERS = """
CREATE FUNCTION frames_check_relaxation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing integer;
BEGIN
    SELECT n.relaxation_id INTO missing FROM new_frames n
    WHERE NOT EXISTS (SELECT 1 FROM relaxations r WHERE r.id = n.relaxation_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('frames.relaxation_id %s refers to no relaxation', missing),
            CONSTRAINT = 'fk_frames_relaxation_id_relaxations';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER frames_check_relaxation_insert AFTER INSERT ON frames
    REFERENCING NEW TABLE AS new_frames
    FOR EACH STATEMENT EXECUTE FUNCTION frames_check_relaxation();
CREATE TRIGGER frames_check_relaxation_update AFTER UPDATE ON frames
    REFERENCING NEW TABLE AS new_frames
    FOR EACH STATEMENT EXECUTE FUNCTION frames_check_relaxation();

CREATE FUNCTION relaxations_delete_frames() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM frames f USING old_relaxations o WHERE f.relaxation_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER relaxations_delete_frames AFTER DELETE ON relaxations
    REFERENCING OLD TABLE AS old_relaxations
    FOR EACH STATEMENT EXECUTE FUNCTION relaxations_delete_frames();
"""


def _id(big: bool = False) -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger() if big else sa.Integer(), sa.Identity(always=False), nullable=False
    )


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _jsonb(name: str) -> sa.Column:
    return sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), nullable=False)


def _matrix3(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, postgresql.ARRAY(sa.Double(), dimensions=2), nullable=nullable)


def _species() -> sa.Column:
    return sa.Column("species", postgresql.ARRAY(sa.SmallInteger(), dimensions=1), nullable=False)


def upgrade() -> None:
    op.create_table(
        "sources",
        _id(),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("parser", sa.Text(), nullable=False),
        _jsonb("versions"),
        _jsonb("options"),
        sa.Column("n_materials", sa.Integer(), nullable=False),
        sa.Column("n_relaxations", sa.Integer(), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("n_entries", sa.Integer(), nullable=False),
        _created_at(),
        sa.CheckConstraint(f"format IN ({SOURCE_FORMATS})", name=op.f("ck_sources_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("sha256", name=op.f("uq_sources_sha256")),
    )
    op.create_table(
        "materials",
        _id(),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("formula", sa.Text(), nullable=False),
        sa.Column("chemsys", sa.Text(), nullable=False),
        sa.Column("elements", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("n_elements", sa.SmallInteger(), nullable=False),
        sa.Column("prototype", sa.Text(), nullable=True),
        sa.Column("spacegroup_number", sa.SmallInteger(), nullable=True),
        sa.Column("dimensionality", sa.SmallInteger(), nullable=True),
        _jsonb("info"),
        _created_at(),
        sa.CheckConstraint(
            "dimensionality IN (0, 1, 2, 3)", name=op.f("ck_materials_dimensionality")
        ),
        sa.CheckConstraint(
            "n_elements = cardinality(elements)", name=op.f("ck_materials_n_elements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_materials")),
        sa.UniqueConstraint("key", name=op.f("uq_materials_key")),
    )
    op.create_index(op.f("ix_materials_chemsys"), "materials", ["chemsys"])
    op.create_index(op.f("ix_materials_formula"), "materials", ["formula"])

    op.create_table(
        "energy_entries",
        _id(),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("energy", sa.Double(), nullable=False),
        sa.Column("correction", sa.Double(), nullable=False),
        sa.Column("n_sites", sa.SmallInteger(), nullable=False),
        _species(),
        _matrix3("cell"),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        _jsonb("data"),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        _created_at(),
        sa.CheckConstraint("method IN ('dft', 'ml')", name=op.f("ck_energy_entries_method")),
        sa.CheckConstraint("cardinality(cell) = 9", name=op.f("ck_energy_entries_cell_shape")),
        sa.CheckConstraint(
            "cardinality(species) = n_sites", name=op.f("ck_energy_entries_species_length")
        ),
        sa.CheckConstraint("n_sites > 0", name=op.f("ck_energy_entries_n_sites_positive")),
        sa.CheckConstraint(
            "octet_length(positions) = 24 * n_sites",
            name=op.f("ck_energy_entries_positions_length"),
        ),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_energy_entries_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_energy_entries_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_entries")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_energy_entries_content_hash")),
    )
    op.create_index(op.f("ix_energy_entries_material_id"), "energy_entries", ["material_id"])
    op.create_index(op.f("ix_energy_entries_source_id"), "energy_entries", ["source_id"])

    op.create_table(
        "relaxations",
        _id(),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("sequence", sa.SmallInteger(), nullable=False),
        _jsonb("parameters"),
        sa.Column("n_sites", sa.SmallInteger(), nullable=False),
        _species(),
        sa.Column("pbc", postgresql.ARRAY(sa.Boolean()), nullable=False),
        sa.Column("n_steps", sa.Integer(), nullable=False),
        sa.Column("converged", sa.Boolean(), nullable=True),
        sa.Column("final_energy", sa.Double(), nullable=False),
        sa.Column("final_energy_per_atom", sa.Double(), nullable=False),
        sa.Column("final_area_per_atom", sa.Double(), nullable=False),
        sa.Column("max_energy_change", sa.Double(), nullable=True),
        sa.Column("wall_time_s", sa.Double(), nullable=True),
        _jsonb("info"),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        _created_at(),
        sa.CheckConstraint("method IN ('dft', 'ml')", name=op.f("ck_relaxations_method")),
        sa.CheckConstraint("cardinality(pbc) = 3", name=op.f("ck_relaxations_pbc_length")),
        sa.CheckConstraint(
            "cardinality(species) = n_sites", name=op.f("ck_relaxations_species_length")
        ),
        sa.CheckConstraint("n_sites > 0", name=op.f("ck_relaxations_n_sites_positive")),
        sa.CheckConstraint("n_steps >= 0", name=op.f("ck_relaxations_n_steps_nonnegative")),
        sa.ForeignKeyConstraint(
            ["material_id"],
            ["materials.id"],
            name=op.f("fk_relaxations_material_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_relaxations_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relaxations")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_relaxations_content_hash")),
    )
    op.create_index(op.f("ix_relaxations_material_id"), "relaxations", ["material_id"])
    op.create_index(op.f("ix_relaxations_source_id"), "relaxations", ["source_id"])

    op.create_table(
        "frames",
        _id(big=True),
        sa.Column("relaxation_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("n_sites", sa.SmallInteger(), nullable=False),
        _matrix3("cell"),
        sa.Column("positions", sa.LargeBinary(), nullable=False),
        sa.Column("forces", sa.LargeBinary(), nullable=False),
        _matrix3("stress", nullable=True),
        sa.Column("energy", sa.Double(), nullable=False),
        sa.Column("energy_per_atom", sa.Double(), nullable=False),
        sa.Column("energy_change", sa.Double(), nullable=True),
        sa.Column("max_force", sa.Double(), nullable=False),
        sa.Column("max_abs_stress", sa.Double(), nullable=True),
        sa.Column("area_per_atom", sa.Double(), nullable=False),
        sa.Column("has_isolated_atom", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("cardinality(cell) = 9", name=op.f("ck_frames_cell_shape")),
        sa.CheckConstraint("octet_length(digest) = 16", name=op.f("ck_frames_digest_length")),
        sa.CheckConstraint("n_sites > 0", name=op.f("ck_frames_n_sites_positive")),
        sa.CheckConstraint(
            "octet_length(forces) = 24 * n_sites", name=op.f("ck_frames_forces_length")
        ),
        sa.CheckConstraint(
            "octet_length(positions) = 24 * n_sites", name=op.f("ck_frames_positions_length")
        ),
        sa.CheckConstraint("step >= 0", name=op.f("ck_frames_step_nonnegative")),
        sa.CheckConstraint(
            "stress IS NULL OR cardinality(stress) = 9", name=op.f("ck_frames_stress_shape")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frames")),
        # Also the index for "the frames of a relaxation in step order".
        sa.UniqueConstraint("relaxation_id", "step", name=op.f("uq_frames_relaxation_id_step")),
    )
    # frames.relaxation_id → relaxations.id, enforced per statement: a row-level foreign
    # key runs one lookup per inserted frame and halved COPY throughput. These triggers
    # check a whole COPY batch in one anti-join and cascade deletes the same way.
    op.execute(FRAMES_REFERENCE_TRIGGERS)


def downgrade() -> None:
    # Unsafe: drops every ingested trajectory.
    op.execute("DROP TRIGGER relaxations_delete_frames ON relaxations")
    op.execute("DROP FUNCTION relaxations_delete_frames()")
    op.drop_table("frames")  # drops its triggers
    op.execute("DROP FUNCTION frames_check_relaxation()")
    op.drop_index(op.f("ix_relaxations_source_id"), table_name="relaxations")
    op.drop_index(op.f("ix_relaxations_material_id"), table_name="relaxations")
    op.drop_table("relaxations")
    op.drop_index(op.f("ix_energy_entries_source_id"), table_name="energy_entries")
    op.drop_index(op.f("ix_energy_entries_material_id"), table_name="energy_entries")
    op.drop_table("energy_entries")
    op.drop_index(op.f("ix_materials_formula"), table_name="materials")
    op.drop_index(op.f("ix_materials_chemsys"), table_name="materials")
    op.drop_table("materials")
    op.drop_table("sources")
