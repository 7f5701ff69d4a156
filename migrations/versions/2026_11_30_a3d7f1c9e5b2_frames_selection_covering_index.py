"""Make the frames' (relaxation_id, step) index cover the training-set selection, and
check a stored training set's reference once per set rather than once per row.

The unique index on ``frames (relaxation_id, step)`` now also carries the columns a
selection reads (id, energy change, site count, energy per atom, largest force and
stress, isolated-atom flag), so ``trainset create`` reads them in (relaxation, step)
order from an 82 MB index instead of the 870 MB table for a million frames
(index-only scans; autovacuum keeps the visibility map they need current). Ingest pays
for the wider index entries (see docs/benchmarks.md).

The statement-level check that every stored ``training_set_relaxations`` row names an
existing training set now looks up each distinct set once (one lookup instead of
40,000 for a large set).

Revision ID: a3d7f1c9e5b2
Revises: f6c2d8a4b9e1
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "a3d7f1c9e5b2"
down_revision: str | None = "f6c2d8a4b9e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SELECTION_COLUMNS = [
    "id",
    "energy_change",
    "n_sites",
    "energy_per_atom",
    "max_force",
    "max_abs_stress",
    "has_isolated_atom",
]


CHECK_SET = """
CREATE OR REPLACE FUNCTION training_set_relaxations_check_set() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing integer;
BEGIN
    SELECT n.training_set_id INTO missing FROM ({new_sets}) n
    WHERE NOT EXISTS (SELECT 1 FROM training_sets s WHERE s.id = n.training_set_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('training_set_relaxations.training_set_id %s refers to no training set', missing);
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.drop_constraint("uq_frames_relaxation_id_step", "frames", type_="unique")
    # Raw SQL: Alembic's constraint builder cannot name INCLUDE columns it has no
    # table for.
    op.execute(
        "ALTER TABLE frames ADD CONSTRAINT uq_frames_relaxation_id_step"
        f" UNIQUE (relaxation_id, step) INCLUDE ({', '.join(SELECTION_COLUMNS)})"
    )
    op.execute(CHECK_SET.format(new_sets="SELECT DISTINCT training_set_id FROM new_rows"))


def downgrade() -> None:
    op.drop_constraint("uq_frames_relaxation_id_step", "frames", type_="unique")
    op.create_unique_constraint("uq_frames_relaxation_id_step", "frames", ["relaxation_id", "step"])
    op.execute(CHECK_SET.format(new_sets="SELECT training_set_id FROM new_rows"))
