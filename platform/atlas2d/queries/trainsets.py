"""Training-set selection in SQL: the thesis's step rules, the outlier filters, and the
content hash.

The rules need each step's energy change to the next step and whether any step of the
relaxation passes ecut; ingest stores both (``frames.energy_change``,
``relaxations.max_energy_change``), so a selection is one pass over the frames with no
window functions. Every function takes ``session`` first and never commits. The
selection is left in temporary tables of the current transaction, one row per
relaxation:

* ``trainset_candidates``: the frames the rule keeps, outlier counts per filter, and the
  ids of the frames no filter flags;
* ``trainset_selected(relaxation_id, material_id, split, frame_ids)``: what survives
  the filters, with its split (``fill_selected``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.analysis.units import KBAR_PER_EV_PER_A3
from atlas2d.db.models import SPLITS

FILTERS = ("max_sites", "isolated", "energy_per_atom", "max_force", "max_stress")


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
    "ecut": "f.energy_change > :ecut"
    " OR (r.no_step_passes AND f.step IN (0, (r.n_steps - 1) / 2, r.n_steps - 1))"
    " OR (:include_final AND f.step = r.n_steps - 1)",
    "wang": "f.step IN (0, r.n_steps / 3, r.n_steps - 1)",
    "all": "true",
}

RUNS_CTE = """
WITH runs AS (
    SELECT r.id, r.material_id, r.n_steps,
           COALESCE(r.max_energy_change, 0) <= :ecut AS no_step_passes
    FROM relaxations r
    WHERE r.method = :method AND r.id <= :watermark {conditions}
)"""
"""The relaxations that enter, and whether any of their steps passes ecut. Materials are
joined only when a selection needs them."""

RUN_CONDITIONS = {
    "dimensionality": "r.material_id IN (SELECT id FROM materials WHERE dimensionality = :dimensionality)",
    "chemsys": "r.material_id IN (SELECT id FROM materials WHERE chemsys = ANY(CAST(:chemsys AS text[])))",
    "sources": "r.source_id IN (SELECT s.id FROM sources s WHERE s.path = ANY(CAST(:sources AS text[]))"
    " OR s.id::text = ANY(CAST(:sources AS text[])))",
}


def _runs_cte(params: SelectionParameters) -> str:
    used = {
        "dimensionality": params.dimensionality is not None,
        "chemsys": bool(params.chemsys),
        "sources": bool(params.sources),
    }
    return RUNS_CTE.format(
        conditions="".join(f" AND {RUN_CONDITIONS[k]}" for k, on in used.items() if on)
    )


CANDIDATES_SQL = """, kept AS (
    SELECT f.id, f.relaxation_id, r.material_id, f.step,
           f.n_sites > :max_sites AS max_sites,
           {isolated} AS isolated,
           (f.energy_per_atom > :max_energy_per_atom OR f.energy_per_atom < :min_energy_per_atom) AS energy_per_atom,
           f.max_force > :max_force AS max_force,
           COALESCE(f.max_abs_stress * :kbar_per_ev_a3 > :max_stress_kbar, false) AS max_stress
    FROM frames f JOIN runs r ON r.id = f.relaxation_id
    WHERE {rule}
)
SELECT relaxation_id, min(material_id) AS material_id, count(*) AS n_kept,
       {filter_counts},
       array_agg(id ORDER BY step) FILTER (WHERE NOT ({offending})) AS clean_ids
FROM kept GROUP BY relaxation_id
"""
"""Per relaxation: the frames the rule keeps, counted per outlier filter, with the ids of
those no filter flags (appended to the runs CTE)."""


def _offending() -> str:
    """SQL: the frame is flagged by some outlier filter."""
    return " OR ".join(FILTERS)


def _reset(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS trainset_candidates, trainset_selected"))


def relaxation_watermark(session: Session) -> int:
    """Largest relaxation id now visible (0 for an empty database)."""
    return session.execute(text("SELECT COALESCE(max(id), 0) FROM relaxations")).scalar_one()


def select_candidates(
    session: Session,
    params: SelectionParameters,
    watermark: int,
    isolated_frames: np.ndarray | None = None,
) -> None:
    """Fill ``trainset_candidates``: per relaxation, the frames the rule keeps.

    Args:
        isolated_frames: frame ids with an isolated atom for a cutoff other than the
            stored 5 Å one (see ``rule_frame_geometry``); None uses the stored flag.
    """
    _reset(session)
    # Aggregating a million frames fits in memory with this.
    session.execute(text("SET LOCAL work_mem = '256MB'"))
    sql = (
        "CREATE TEMP TABLE trainset_candidates ON COMMIT DROP AS"
        + _runs_cte(params)
        + CANDIDATES_SQL.format(
            rule=_RULES[params.rule],
            # The stored flag is for 5 Å; another cutoff comes as a list of frame ids.
            isolated="f.has_isolated_atom"
            if isolated_frames is None
            else "f.id = ANY(CAST(:isolated_ids AS bigint[]))",
            filter_counts=", ".join(
                f"count(*) FILTER (WHERE {name}) AS {name}" for name in FILTERS
            ),
            offending=_offending(),
        )
    )
    session.execute(
        text(sql),
        {
            **_parameters(params, watermark),
            "isolated_ids": [] if isolated_frames is None else isolated_frames.tolist(),
        },
    )


def _parameters(params: SelectionParameters, watermark: int) -> dict[str, Any]:
    return {
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
    }


def rule_frame_geometry(
    session: Session, params: SelectionParameters, watermark: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame ids, cells (F, 3, 3), positions (F, N, 3)) of the frames the rule keeps,
    one relaxation at a time: for an isolated-atom cutoff other than the stored one."""
    from atlas2d.db.types import vec3_from_bytes

    rows = session.execute(
        text(
            f"{_runs_cte(params)} SELECT f.id, f.relaxation_id, f.cell, f.positions FROM frames f"
            f" JOIN runs r ON r.id = f.relaxation_id WHERE {_RULES[params.rule]}"
            " ORDER BY f.relaxation_id, f.step"
        ).execution_options(stream_results=True, yield_per=5000),
        _parameters(params, watermark),
    )
    for batch in _by_relaxation(rows):
        yield (
            np.array([r.id for r in batch], dtype=np.int64),
            np.array([r.cell for r in batch], dtype=np.float64),
            np.stack([vec3_from_bytes(r.positions) for r in batch]),
        )


def _by_relaxation(rows: Iterable[Any]) -> Iterator[list[Any]]:
    """Consecutive rows with the same ``relaxation_id``, as lists (rows ordered by it)."""
    batch: list[Any] = []
    for row in rows:
        if batch and row.relaxation_id != batch[-1].relaxation_id:
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def filter_counts(session: Session) -> dict[str, dict[str, int]]:
    """Frames, and materials with at least one such frame, that each filter flags, and
    what the rule kept before the filters."""
    columns = ", ".join(
        f"COALESCE(sum({name}), 0), count(DISTINCT material_id) FILTER (WHERE {name} > 0)"
        for name in FILTERS
    )
    row = session.execute(
        text(
            f"SELECT COALESCE(sum(n_kept), 0), count(DISTINCT material_id), {columns} FROM trainset_candidates"
        )
    ).one()
    counts = {"rule_kept": {"frames": int(row[0]), "materials": int(row[1])}}
    for k, name in enumerate(FILTERS):
        counts[name] = {"frames": int(row[2 + 2 * k]), "materials": int(row[3 + 2 * k])}
    return counts


def _survivors_where(scope: str) -> str:
    if scope == "material":
        return (
            "material_id NOT IN (SELECT material_id FROM trainset_candidates"
            " WHERE n_kept > COALESCE(cardinality(clean_ids), 0))"
        )
    return "clean_ids IS NOT NULL"


def surviving_groups(session: Session, scope: str, group_by: str) -> list[tuple[int, str]]:
    """(material id, group key) of every material that keeps at least one frame."""
    if group_by == "material":  # no join needed
        ids = session.execute(
            text(
                f"SELECT DISTINCT material_id FROM trainset_candidates WHERE {_survivors_where(scope)}"
            )
        ).scalars()
        return [(material_id, str(material_id)) for material_id in ids]
    group = {"formula": "m.formula", "chemsys": "m.chemsys"}[group_by]
    return [
        (material_id, key)
        for material_id, key in session.execute(
            text(
                f"SELECT DISTINCT m.id, {group} FROM trainset_candidates c"
                f" JOIN materials m ON m.id = c.material_id WHERE {_survivors_where(scope)}"
            )
        )
    ]


def fill_selected(session: Session, scope: str, split_of_material: dict[int, str]) -> None:
    """Fill ``trainset_selected`` with the surviving relaxations, their splits, frame ids
    and digests."""
    session.execute(
        text(
            "CREATE TEMP TABLE trainset_selected ON COMMIT DROP AS"
            " SELECT c.relaxation_id, c.material_id, a.split, c.clean_ids AS frame_ids"
            " FROM trainset_candidates c"
            " JOIN unnest(CAST(:material_ids AS int[]), CAST(:splits AS text[])) AS a(material_id, split)"
            f" ON a.material_id = c.material_id WHERE {_survivors_where(scope).replace('material_id NOT IN', 'c.material_id NOT IN')}"
        ),
        {"material_ids": list(split_of_material), "splits": list(split_of_material.values())},
    )


def selected_counts(session: Session) -> dict[str, dict[str, int]]:
    """{split: {"frames": n, "materials": m}} of ``trainset_selected``."""
    rows = session.execute(
        text(
            "SELECT split, sum(cardinality(frame_ids)), count(DISTINCT material_id)"
            " FROM trainset_selected GROUP BY split"
        )
    ).all()
    counts = {split: {"frames": 0, "materials": 0} for split in SPLITS}
    for split, frames, materials in rows:
        counts[split] = {"frames": int(frames), "materials": int(materials)}
    return counts


def selected_hash(session: Session) -> str:
    """sha256 over, in relaxation order, each selected relaxation's id, split, selected
    frame ids (step order) and content hash (sha256 of all its arrays, from ingest)."""
    return session.execute(
        text(
            "SELECT encode(sha256(COALESCE(string_agg(int4send(s.relaxation_id)"
            " || convert_to(s.split, 'UTF8') || array_send(s.frame_ids)"
            " || convert_to(r.content_hash, 'UTF8'), ''::bytea ORDER BY s.relaxation_id),"
            " ''::bytea)), 'hex') FROM trainset_selected s JOIN relaxations r ON r.id = s.relaxation_id"
        )
    ).scalar_one()


def insert_training_set(session: Session, row: dict[str, Any]) -> int:
    """Insert the ``training_sets`` row and ``trainset_selected`` under it."""
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
            "INSERT INTO training_set_relaxations (training_set_id, relaxation_id, split, frame_ids)"
            " SELECT :id, relaxation_id, split, frame_ids FROM trainset_selected"
        ),
        {"id": training_set_id},
    )
    return training_set_id


def training_set_row(session: Session, name: str) -> dict[str, Any] | None:
    """A stored training set's row by name, or None."""
    row = (
        session.execute(text("SELECT * FROM training_sets WHERE name = :name"), {"name": name})
        .mappings()
        .one_or_none()
    )
    return None if row is None else dict(row)


def list_training_sets(session: Session) -> list[dict[str, Any]]:
    """Every training set's row, newest first."""
    return [
        dict(r)
        for r in session.execute(
            text("SELECT * FROM training_sets ORDER BY created_at DESC, id DESC")
        ).mappings()
    ]


STORED_FRAMES = "SELECT frame_id, split FROM training_set_frames WHERE training_set_id = :id"
SELECTED_FRAMES = (
    "SELECT u.frame_id, s.split FROM trainset_selected s"
    " CROSS JOIN LATERAL unnest(s.frame_ids) AS u(frame_id)"
)


def compare_with_stored(session: Session, training_set_id: int, limit: int = 20) -> dict[str, Any]:
    """Differences between a stored training set and ``trainset_selected``.

    Returns:
        deleted: stored frame ids no longer in ``frames``; dropped / added: frames the
        selection no longer / newly picks; moved: frames whose split differs. Each is
        {"count": n, "first": [up to ``limit`` ids]}.
    """

    def ids(sql: str) -> dict[str, Any]:
        rows = session.execute(text(sql), {"id": training_set_id}).scalars().all()
        return {"count": len(rows), "first": sorted(rows)[:limit]}

    return {
        "deleted": ids(
            f"SELECT t.frame_id FROM ({STORED_FRAMES}) t LEFT JOIN frames f ON f.id = t.frame_id"
            " WHERE f.id IS NULL"
        ),
        "dropped": ids(
            f"SELECT t.frame_id FROM ({STORED_FRAMES}) t LEFT JOIN ({SELECTED_FRAMES}) s"
            " ON s.frame_id = t.frame_id WHERE s.frame_id IS NULL"
        ),
        "added": ids(
            f"SELECT s.frame_id FROM ({SELECTED_FRAMES}) s LEFT JOIN ({STORED_FRAMES}) t"
            " ON t.frame_id = s.frame_id WHERE t.frame_id IS NULL"
        ),
        "moved": ids(
            f"SELECT s.frame_id FROM ({SELECTED_FRAMES}) s JOIN ({STORED_FRAMES}) t"
            " ON t.frame_id = s.frame_id WHERE t.split <> s.split"
        ),
    }


def stored_frame_contents(session: Session, training_set_id: int) -> Iterator[list[Any]]:
    """Rows (id, step, energy, cell, positions, forces, stress, digest) of a stored
    set's frames that still exist, one relaxation at a time (streamed)."""
    rows = session.execute(
        text(
            "SELECT f.id, f.relaxation_id, f.step, f.energy, f.cell, f.positions, f.forces,"
            " f.stress, f.digest FROM training_set_frames t JOIN frames f ON f.id = t.frame_id"
            " WHERE t.training_set_id = :id ORDER BY f.relaxation_id, f.step"
        ).execution_options(stream_results=True, yield_per=5000),
        {"id": training_set_id},
    )
    yield from _by_relaxation(rows)
