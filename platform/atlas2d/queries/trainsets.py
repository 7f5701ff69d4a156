"""Training-set selection in SQL: the thesis's step rules with window functions over the
frames of each relaxation, the outlier filters, and per-frame content digests.

Every function takes ``session`` first and never commits. The selection is left in
temporary tables of the current transaction:

* ``trainset_candidates``: frames the rule keeps, with the outlier flags;
* ``trainset_selected(frame_id, material_id, split, digest)``: what survives the filters,
  with its split (filled by ``fill_selected``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.analysis.units import KBAR_PER_EV_PER_A3

FILTERS = ("max_sites", "isolated", "energy_per_atom", "max_force", "max_stress")

FRAME_DIGEST_SQL = (
    "sha256(int8send(f.id) || int4send(f.step) || float8send(f.energy)"
    " || convert_to(f.cell::text, 'UTF8') || f.positions || f.forces"
    " || COALESCE(convert_to(f.stress::text, 'UTF8'), ''::bytea))"
)
"""sha256 of a frame's content (``f`` = frames); PostgreSQL prints float8 exactly."""


@dataclass(frozen=True)
class SelectionParameters:
    """Everything that decides a training set's frames and splits (recorded as JSONB).

    Attributes:
        rule: ``ecut`` (thesis), ``wang`` (Wang et al.: steps 0, ⌊N/3⌋, N−1) or ``all``.
        ecut: eV/atom; step i (i < N−1) is kept when |e_i − e_{i+1}| > ecut.
        include_final: also keep the last step of every relaxation.
        max_sites, min_energy_per_atom (eV/atom), max_energy_per_atom (eV/atom),
        max_force (eV/Å), max_stress_kbar (|σ| in kBar), isolated_cutoff (Å): the
            outlier filters, thesis defaults.
        outlier_scope: ``material`` (a material with any offending selected frame is
            dropped whole) or ``frame`` (only offending frames go).
        split: train/val/test percentages; seed: random seed; group_by: ``material``,
            ``formula`` or ``chemsys`` (a group lands in one split).
        method, dimensionality, chemsys, sources: which relaxations enter.
    """

    rule: str = "ecut"
    ecut: float = 0.01
    include_final: bool = False
    max_sites: int = 20
    min_energy_per_atom: float = -20.0
    max_energy_per_atom: float = 0.0
    max_force: float = 20.0
    max_stress_kbar: float = 500.0
    isolated_cutoff: float = 5.0
    outlier_scope: str = "material"
    split: tuple[float, float, float] = (90.0, 5.0, 5.0)
    seed: int = 0
    group_by: str = "material"
    method: str = "dft"
    dimensionality: int | None = None
    chemsys: tuple[str, ...] = field(default_factory=tuple)
    sources: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["split"] = list(self.split)
        values["chemsys"] = list(self.chemsys)
        values["sources"] = list(self.sources)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> SelectionParameters:
        return cls(
            **{
                **values,
                "split": tuple(values["split"]),
                "chemsys": tuple(values["chemsys"]),
                "sources": tuple(values["sources"]),
            }
        )


_RULES = {
    "ecut": "qualifies OR (NOT any_qualifies AND i IN (0, (n - 1) / 2, n - 1))"
    " OR (:include_final AND i = n - 1)",
    "wang": "i IN (0, n / 3, n - 1)",
    "all": "true",
}

CANDIDATES_SQL = """
CREATE TEMP TABLE trainset_candidates ON COMMIT DROP AS
WITH runs AS (
    SELECT r.id, r.material_id
    FROM relaxations r JOIN materials m ON m.id = r.material_id
    WHERE r.method = :method AND r.id <= :watermark
      AND (CAST(:dimensionality AS int) IS NULL OR m.dimensionality = :dimensionality)
      AND (cardinality(CAST(:chemsys AS text[])) = 0 OR m.chemsys = ANY(CAST(:chemsys AS text[])))
      AND (cardinality(CAST(:sources AS text[])) = 0 OR r.source_id IN (
            SELECT s.id FROM sources s
            WHERE s.path = ANY(CAST(:sources AS text[])) OR s.id::text = ANY(CAST(:sources AS text[]))))
), indexed AS (
    SELECT f.id AS frame_id, f.relaxation_id, r.material_id,
           row_number() OVER w - 1 AS i,
           count(*) OVER (PARTITION BY f.relaxation_id) AS n,
           COALESCE(abs(f.energy_per_atom - lead(f.energy_per_atom) OVER w) > :ecut, false) AS qualifies,
           f.energy_per_atom, f.n_sites, f.max_force, f.max_abs_stress, f.has_isolated_atom
    FROM frames f JOIN runs r ON r.id = f.relaxation_id
    WINDOW w AS (PARTITION BY f.relaxation_id ORDER BY f.step)
), ruled AS (
    SELECT *, bool_or(qualifies) OVER (PARTITION BY relaxation_id) AS any_qualifies FROM indexed
)
SELECT frame_id, relaxation_id, material_id,
       n_sites > :max_sites AS off_max_sites,
       has_isolated_atom AS off_isolated,
       (energy_per_atom > :max_energy_per_atom OR energy_per_atom < :min_energy_per_atom) AS off_energy_per_atom,
       max_force > :max_force AS off_max_force,
       COALESCE(max_abs_stress * :kbar_per_ev_a3 > :max_stress_kbar, false) AS off_max_stress
FROM ruled WHERE {rule}
"""


def _reset(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS trainset_candidates, trainset_selected"))


def relaxation_watermark(session: Session) -> int:
    """Largest relaxation id now visible (0 for an empty database)."""
    return session.execute(text("SELECT COALESCE(max(id), 0) FROM relaxations")).scalar_one()


def select_candidates(session: Session, params: SelectionParameters, watermark: int) -> None:
    """Fill ``trainset_candidates`` with the frames the rule keeps and their outlier flags."""
    _reset(session)
    # Sorting a million frames by (relaxation, step) fits in memory with this.
    session.execute(text("SET LOCAL work_mem = '256MB'"))
    session.execute(
        text(CANDIDATES_SQL.format(rule=_RULES[params.rule])),
        {
            "method": params.method,
            "watermark": watermark,
            "dimensionality": params.dimensionality,
            "chemsys": list(params.chemsys),
            "sources": list(params.sources),
            "ecut": params.ecut,
            "include_final": params.include_final,
            "max_sites": params.max_sites,
            "max_energy_per_atom": params.max_energy_per_atom,
            "min_energy_per_atom": params.min_energy_per_atom,
            "max_force": params.max_force,
            "kbar_per_ev_a3": KBAR_PER_EV_PER_A3,
            "max_stress_kbar": params.max_stress_kbar,
        },
    )


def candidate_geometry(session: Session) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Frame ids, cells (F, 3, 3) and positions (list of (N, 3)) of the candidates."""
    from atlas2d.db.types import vec3_from_bytes

    rows = session.execute(
        text(
            "SELECT c.frame_id, f.cell, f.positions FROM trainset_candidates c"
            " JOIN frames f ON f.id = c.frame_id ORDER BY c.frame_id"
        )
    ).all()
    ids = np.array([r.frame_id for r in rows], dtype=np.int64)
    cells = np.array([r.cell for r in rows], dtype=np.float64).reshape(-1, 3, 3)
    return ids, cells, [vec3_from_bytes(r.positions) for r in rows]


def set_isolated_flags(session: Session, frame_ids: np.ndarray, isolated: np.ndarray) -> None:
    """Replace the stored 5 Å isolated-atom flags by ones for another cutoff."""
    session.execute(
        text(
            "UPDATE trainset_candidates c SET off_isolated = u.flag"
            " FROM unnest(CAST(:ids AS bigint[]), CAST(:flags AS boolean[])) AS u(id, flag)"
            " WHERE c.frame_id = u.id"
        ),
        {"ids": frame_ids.tolist(), "flags": isolated.tolist()},
    )


def filter_counts(session: Session) -> dict[str, dict[str, int]]:
    """Frames, and materials with at least one such frame, that each filter flags."""
    columns = ", ".join(
        f"count(*) FILTER (WHERE off_{name}), count(DISTINCT material_id) FILTER (WHERE off_{name})"
        for name in FILTERS
    )
    row = session.execute(text(f"SELECT {columns} FROM trainset_candidates")).one()
    return {name: {"frames": row[2 * k], "materials": row[2 * k + 1]} for k, name in enumerate(FILTERS)}


def _offending(alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return " OR ".join(f"{prefix}off_{name}" for name in FILTERS)


def surviving_groups(session: Session, scope: str, group_by: str) -> list[tuple[int, str]]:
    """(material id, group key) of every material that keeps at least one frame."""
    group = {"material": "m.id::text", "formula": "m.formula", "chemsys": "m.chemsys"}[group_by]
    survivors = _survivors_sql(scope)
    return [
        (material_id, key)
        for material_id, key in session.execute(
            text(
                f"SELECT DISTINCT m.id, {group} FROM ({survivors}) s"
                " JOIN materials m ON m.id = s.material_id"
            )
        )
    ]


def _survivors_sql(scope: str) -> str:
    if scope == "material":
        return (
            "SELECT * FROM trainset_candidates WHERE material_id NOT IN"
            f" (SELECT material_id FROM trainset_candidates WHERE {_offending()})"
        )
    return f"SELECT * FROM trainset_candidates WHERE NOT ({_offending()})"


def fill_selected(session: Session, scope: str, split_of_material: dict[int, str]) -> None:
    """Fill ``trainset_selected`` with the surviving frames, their splits and digests."""
    session.execute(
        text(
            "CREATE TEMP TABLE trainset_selected ON COMMIT DROP AS"
            f" SELECT s.frame_id, s.material_id, a.split, {FRAME_DIGEST_SQL} AS digest"
            f" FROM ({_survivors_sql(scope)}) s"
            " JOIN unnest(CAST(:material_ids AS int[]), CAST(:splits AS text[])) AS a(material_id, split)"
            " ON a.material_id = s.material_id"
            " JOIN frames f ON f.id = s.frame_id"
        ),
        {"material_ids": list(split_of_material), "splits": list(split_of_material.values())},
    )


def selected_counts(session: Session) -> dict[str, dict[str, int]]:
    """{split: {"frames": n, "materials": m}} of ``trainset_selected``."""
    rows = session.execute(
        text(
            "SELECT split, count(*), count(DISTINCT material_id) FROM trainset_selected GROUP BY split"
        )
    ).all()
    counts = {split: {"frames": 0, "materials": 0} for split in ("train", "val", "test")}
    for split, frames, materials in rows:
        counts[split] = {"frames": frames, "materials": materials}
    return counts


def candidate_totals(session: Session) -> tuple[int, int]:
    """(frames, materials) the rule kept before the outlier filters."""
    frames, materials = session.execute(
        text("SELECT count(*), count(DISTINCT material_id) FROM trainset_candidates")
    ).one()
    return frames, materials


HASH_SQL = (
    "SELECT encode(sha256(COALESCE(string_agg(int8send(frame_id) || convert_to(split, 'UTF8')"
    " || digest, ''::bytea ORDER BY frame_id), ''::bytea)), 'hex') FROM {table}"
)


def selected_hash(session: Session) -> str:
    """Content hash of ``trainset_selected``: sha256 over (frame id, split, digest)."""
    return session.execute(text(HASH_SQL.format(table="trainset_selected"))).scalar_one()


def stored_hash(session: Session, training_set_id: int) -> str:
    """The same hash recomputed from a stored training set's rows."""
    return session.execute(
        text(
            HASH_SQL.format(table="training_set_frames WHERE training_set_id = :id")
        ),
        {"id": training_set_id},
    ).scalar_one()


def insert_training_set(session: Session, row: dict[str, Any]) -> int:
    """Insert the ``training_sets`` row and copy ``trainset_selected`` under it."""
    import json

    training_set_id = session.execute(
        text(
            "INSERT INTO training_sets (name, rule, parameters, split_counts, filter_counts,"
            " n_frames, n_materials, relaxation_watermark, content_hash)"
            " VALUES (:name, :rule, CAST(:parameters AS jsonb), CAST(:split_counts AS jsonb),"
            " CAST(:filter_counts AS jsonb), :n_frames, :n_materials, :watermark, :content_hash)"
            " RETURNING id"
        ),
        {
            **row,
            "parameters": json.dumps(row["parameters"]),
            "split_counts": json.dumps(row["split_counts"]),
            "filter_counts": json.dumps(row["filter_counts"]),
        },
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO training_set_frames (training_set_id, frame_id, split, digest)"
            " SELECT :id, frame_id, split, digest FROM trainset_selected"
        ),
        {"id": training_set_id},
    )
    return training_set_id


def training_set_row(session: Session, name: str) -> dict[str, Any] | None:
    """A stored training set's row by name, or None."""
    row = session.execute(
        text("SELECT * FROM training_sets WHERE name = :name"), {"name": name}
    ).mappings().one_or_none()
    return None if row is None else dict(row)


def list_training_sets(session: Session) -> list[dict[str, Any]]:
    """Every training set's row, newest first."""
    return [
        dict(r)
        for r in session.execute(
            text("SELECT * FROM training_sets ORDER BY created_at DESC, id DESC")
        ).mappings()
    ]


def compare_with_stored(session: Session, training_set_id: int, limit: int = 20) -> dict[str, Any]:
    """Differences between a stored training set and ``trainset_selected``.

    Returns:
        deleted: stored frame ids no longer in ``frames``; changed: stored frames whose
        content digest differs now; dropped / added: frames the selection no longer
        / newly picks; moved: frames whose split differs. Each is (count, first ids).
    """

    def ids(sql: str) -> dict[str, Any]:
        rows = session.execute(text(sql), {"id": training_set_id}).scalars().all()
        return {"count": len(rows), "first": sorted(rows)[:limit]}

    stored = "SELECT frame_id, split, digest FROM training_set_frames WHERE training_set_id = :id"
    return {
        "deleted": ids(
            f"SELECT t.frame_id FROM ({stored}) t LEFT JOIN frames f ON f.id = t.frame_id"
            " WHERE f.id IS NULL"
        ),
        "changed": ids(
            f"SELECT t.frame_id FROM ({stored}) t JOIN frames f ON f.id = t.frame_id"
            f" WHERE {FRAME_DIGEST_SQL} <> t.digest"
        ),
        "dropped": ids(
            f"SELECT t.frame_id FROM ({stored}) t LEFT JOIN trainset_selected s"
            " ON s.frame_id = t.frame_id WHERE s.frame_id IS NULL"
        ),
        "added": ids(
            f"SELECT s.frame_id FROM trainset_selected s LEFT JOIN ({stored}) t"
            " ON t.frame_id = s.frame_id WHERE t.frame_id IS NULL"
        ),
        "moved": ids(
            f"SELECT s.frame_id FROM trainset_selected s JOIN ({stored}) t"
            " ON t.frame_id = s.frame_id WHERE t.split <> s.split"
        ),
    }
