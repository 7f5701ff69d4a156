"""Give materials the formulas OPTIMADE filters on, stored and indexed: the reduced
formula with its elements in alphabetical order (``Se2W``, where ``formula`` holds
pymatgen's ``WSe2``) and the anonymous formula (``A2B``), and a GIN index on the
elements array for ``elements HAS ALL "Mo","S"``.

Both formulas are STORED generated columns over ``formula``, computed by two IMMUTABLE
SQL functions, so every writer of materials fills them without knowing of them and
``atlas2d serve`` filters 100,000 materials by index instead of recomputing formulas
per request (docs/benchmarks.md, "Serve").

Revision ID: b7d4e2a9c6f1
Revises: f3b9d2e6a8c4
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "b7d4e2a9c6f1"
down_revision: str | None = "f3b9d2e6a8c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (element, count) pairs of a formula without parentheses (pymatgen's reduced formulas
# have none), summed per element and divided by their greatest common divisor.
_COUNTS = """
WITH counts AS (
    SELECT part[1] AS element, sum(COALESCE(NULLIF(part[2], '')::integer, 1)) AS n
    FROM pg_catalog.regexp_matches(formula, '([A-Z][a-z]*)([0-9]*)', 'g') AS part
    GROUP BY part[1]
), divisor AS (
    SELECT max(d) AS d
    FROM pg_catalog.generate_series(1, (SELECT min(n) FROM counts)::integer) AS d
    WHERE NOT EXISTS (SELECT 1 FROM counts WHERE n % d <> 0)
), reduced AS (
    SELECT element, n / d AS n FROM counts, divisor
)
"""

CREATE_FUNCTIONS = f"""
CREATE FUNCTION formula_alphabetical(formula text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
{_COUNTS}
SELECT string_agg(element || CASE WHEN n = 1 THEN '' ELSE n::text END, ''
                  ORDER BY element COLLATE "C")
FROM reduced
$$;
COMMENT ON FUNCTION formula_alphabetical(text) IS
    'Reduced formula with elements in alphabetical order (OPTIMADE chemical_formula_reduced).';

CREATE FUNCTION formula_anonymous(formula text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
{_COUNTS}, ranked AS (
    SELECT n, row_number() OVER (ORDER BY n DESC, element COLLATE "C") - 1 AS rank
    FROM reduced
)
SELECT string_agg(
    CASE WHEN rank < 26 THEN chr(65 + rank::integer)
         ELSE chr(65 + (rank::integer - 26) / 26) || chr(97 + (rank::integer - 26) % 26) END
    || CASE WHEN n = 1 THEN '' ELSE n::text END, '' ORDER BY rank)
FROM ranked
$$;
COMMENT ON FUNCTION formula_anonymous(text) IS
    'Anonymous reduced formula, largest proportion first: A2B (OPTIMADE chemical_formula_anonymous).';
"""


def upgrade() -> None:
    op.execute(CREATE_FUNCTIONS)
    op.execute(
        "ALTER TABLE materials"
        " ADD COLUMN formula_alphabetical text"
        " GENERATED ALWAYS AS (formula_alphabetical(formula)) STORED,"
        " ADD COLUMN formula_anonymous text"
        " GENERATED ALWAYS AS (formula_anonymous(formula)) STORED"
    )
    op.create_index("ix_materials_formula_alphabetical", "materials", ["formula_alphabetical"])
    op.create_index("ix_materials_formula_anonymous", "materials", ["formula_anonymous"])
    op.create_index("ix_materials_elements", "materials", ["elements"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_materials_elements", table_name="materials")
    op.drop_index("ix_materials_formula_anonymous", table_name="materials")
    op.drop_index("ix_materials_formula_alphabetical", table_name="materials")
    op.execute(
        "ALTER TABLE materials DROP COLUMN formula_anonymous, DROP COLUMN formula_alphabetical"
    )
    op.execute("DROP FUNCTION formula_anonymous(text); DROP FUNCTION formula_alphabetical(text)")
