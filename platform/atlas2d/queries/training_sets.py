"""Training-set selection in SQL: the thesis's step rules, the outlier filters, and the
content hash.

The rules need each step's energy change to the next step and whether any step of the
relaxation passes ecut; ingest stores both (``frames.energy_change``,
``relaxations.max_energy_change``). A selection is then one pass over the frames'
covering index (``uq_frames_relaxation_id_step``) for the steps a frame's own columns
decide, plus index lookups of named steps for the relaxations that need their length
(the fallback steps, Wang's steps), with no window functions and no per-frame join.
Every function takes ``session`` first and never commits. The selection is left in
temporary tables of the current transaction, one row per relaxation:

* ``trainset_candidates``: the frames the rule keeps, outlier counts per filter, and the
  ids of the frames no filter flags;
* ``trainset_selected(relaxation_id, split, frame_ids, content_hash)``: what survives
  the filters, with its split (``fill_selected``, for ``verify``; ``store`` writes the
  same rows straight into ``training_set_relaxations``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from atlas2d.analysis.units import KBAR_PER_EV_PER_A3
from atlas2d.db.copy_binary import copied_rows
from atlas2d.db.copy_columns import CopiedBatch
from atlas2d.db.digests import DIGEST_BYTES, DIGEST_COLUMNS
from atlas2d.db.models import TrainingSet
from atlas2d.db.session import driver_connection
from atlas2d.db.types import Matrix3, Vec3Array
from atlas2d.errors import InvalidInput
from atlas2d.vocabulary import (
    DEFAULT_ECUT_EV_PER_ATOM,
    DEFAULT_GROUP_BY,
    DEFAULT_ISOLATED_CUTOFF_A,
    DEFAULT_MAX_ENERGY_PER_ATOM_EV,
    DEFAULT_MAX_FORCE_EV_PER_A,
    DEFAULT_MAX_SITES,
    DEFAULT_MAX_STRESS_KBAR,
    DEFAULT_MIN_ENERGY_PER_ATOM_EV,
    DEFAULT_OUTLIER_SCOPE,
    DEFAULT_RULE,
    DEFAULT_SPLIT_PERCENT,
    DFT,
    OUTLIER_FILTERS,
    SPLITS,
    GroupBy,
    Method,
    OutlierScope,
    Rule,
    Split,
)


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
        include_retracted: also take relaxations of retracted sources (``audit source
            --retract``); left out by default. Parameters recorded before retraction
            existed read as True: those sets were made from every source.
        keep_splits_from: the name of an earlier training set whose materials keep
            their split (an active-learning campaign's sets over growing data); the
            other groups are split by ``split`` and ``seed``. None splits every group.
    """

    rule: Rule = DEFAULT_RULE
    ecut: float = DEFAULT_ECUT_EV_PER_ATOM
    include_final: bool = False
    max_sites: int = DEFAULT_MAX_SITES
    min_energy_per_atom: float = DEFAULT_MIN_ENERGY_PER_ATOM_EV
    max_energy_per_atom: float = DEFAULT_MAX_ENERGY_PER_ATOM_EV
    max_force: float = DEFAULT_MAX_FORCE_EV_PER_A
    max_stress_kbar: float = DEFAULT_MAX_STRESS_KBAR
    isolated_cutoff: float = DEFAULT_ISOLATED_CUTOFF_A
    outlier_scope: OutlierScope = DEFAULT_OUTLIER_SCOPE
    split: tuple[float, float, float] = DEFAULT_SPLIT_PERCENT
    seed: int = 0
    group_by: GroupBy = DEFAULT_GROUP_BY
    method: Method = DFT
    dimensionality: int | None = None
    chemsys: tuple[str, ...] = field(default_factory=tuple)
    sources: tuple[str, ...] = field(default_factory=tuple)
    include_retracted: bool = False
    keep_splits_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["split"] = list(self.split)
        values["chemsys"] = list(self.chemsys)
        values["sources"] = list(self.sources)
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> SelectionParameters:
        """The parameters ``to_json`` recorded; a key recorded by no older version
        takes its default (``keep_splits_from``), except ``include_retracted``, which
        older versions did in effect (they left nothing out)."""
        return cls(
            **{
                "include_retracted": True,
                **values,
                "split": tuple(values["split"]),
                "chemsys": tuple(values["chemsys"]),
                "sources": tuple(values["sources"]),
            }
        )


@dataclass(frozen=True)
class RuleSql:
    """A step rule split so that no frame row is joined to its relaxation's row.

    Attributes:
        probed: SQL on relaxation ``r``: its steps are looked up by number (``probe``)
            instead of read from the scan. Every relaxation takes its frames from
            exactly one of the two.
        scan: SQL on frame ``f`` alone: the steps kept by the one pass over the
            frames' covering index (for relaxations that are not probed); None when
            the rule keeps only named steps.
        probe: SQL int[] on relaxation ``r``: the steps kept of a probed relaxation
            (N = ``r.n_steps``); None when no relaxation is probed.
    """

    probed: str
    scan: str | None
    probe: str | None


RULES_SQL: dict[Rule, RuleSql] = {
    # Steps passing ecut, read from the scan; a relaxation where none passes keeps its
    # fallback steps. The last step is the one with a NULL energy_change (ingest).
    "ecut": RuleSql(
        probed="COALESCE(r.max_energy_change, 0) <= :ecut",
        scan="f.energy_change > :ecut OR (:include_final AND f.energy_change IS NULL)",
        probe="ARRAY[0, (r.n_steps - 1) / 2, r.n_steps - 1]",
    ),
    "wang": RuleSql(probed="true", scan=None, probe="ARRAY[0, r.n_steps / 3, r.n_steps - 1]"),
    "all": RuleSql(probed="false", scan="true", probe=None),
}

RUNS_CTE = """
WITH runs AS NOT MATERIALIZED (
    SELECT r.id, r.material_id, r.n_steps, r.content_hash, {probed} AS probed
    FROM relaxations r
    WHERE r.method = :method AND r.id <= :watermark {conditions}
)"""
"""The relaxations that enter, and whether the rule probes their steps. Materials are
joined only when a selection needs them."""

RUN_CONDITIONS = {
    "dimensionality": "r.material_id IN (SELECT id FROM materials WHERE dimensionality = :dimensionality)",
    "chemsys": "r.material_id IN (SELECT id FROM materials WHERE chemsys = ANY(CAST(:chemsys AS text[])))",
    "sources": "r.source_id IN (SELECT s.id FROM sources s WHERE s.path = ANY(CAST(:sources AS text[]))"
    " OR s.id::text = ANY(CAST(:sources AS text[])))",
}


LEFT_OUT_CONDITION = "(r.source_id IS NULL OR r.source_id <> ALL(CAST(:left_out_sources AS int[])))"
"""The relaxations of the sources a set leaves out (retracted when it was made) do not
enter. Not a selector: it removes few runs, so the scan stays unrestricted."""


def _runs_cte(params: SelectionParameters, left_out_sources: Sequence[int] = ()) -> str:
    conditions = [RUN_CONDITIONS[k] for k in _selectors(params)]
    if left_out_sources:
        conditions.append(LEFT_OUT_CONDITION)
    return RUNS_CTE.format(
        probed=RULES_SQL[params.rule].probed,
        conditions="".join(f" AND {condition}" for condition in conditions),
    )


def _selectors(params: SelectionParameters) -> list[str]:
    """The RUN_CONDITIONS this selection uses."""
    used = {
        "dimensionality": params.dimensionality is not None,
        "chemsys": bool(params.chemsys),
        "sources": bool(params.sources),
    }
    return [name for name, on in used.items() if on]


BRANCH_RUNS = {"scanned": "NOT r.probed", "probed": "r.probed"}
"""Which runs (relaxation ``r``) take their frames from each branch of ``_kept_frames``."""


def _kept_frames(params: SelectionParameters, columns: str) -> dict[str, str]:
    """SQL selecting ``columns`` (on frame ``f``) of the frames the rule keeps, one
    query per branch ("scanned", "probed"), to follow the runs CTE.

    The scan reads every frame below the watermark in (relaxation, step) order and
    leaves the relaxations that are not runs to the caller's join, which is cheaper
    than joining each frame to its relaxation; with selectors it is restricted to the
    runs first, as those may be few.
    """
    rule = RULES_SQL[params.rule]
    branches = {}
    if rule.scan is not None:
        restrict = " AND f.relaxation_id IN (SELECT id FROM runs)" if _selectors(params) else ""
        branches["scanned"] = (
            f"SELECT {columns} FROM frames f"
            f" WHERE f.relaxation_id <= :watermark AND ({rule.scan}){restrict}"
        )
    if rule.probe is not None:
        branches["probed"] = (
            f"SELECT {columns} FROM runs r JOIN frames f"
            f" ON f.relaxation_id = r.id AND f.step = ANY({rule.probe})"
            f" WHERE {BRANCH_RUNS['probed']}"
        )
    return branches


FLAGS_SQL = """f.id, f.relaxation_id, f.step,
    f.n_sites > :max_sites AS max_sites,
    {isolated} AS isolated,
    (f.energy_per_atom > :max_energy_per_atom OR f.energy_per_atom < :min_energy_per_atom) AS energy_per_atom,
    f.max_force > :max_force AS max_force,
    COALESCE(f.max_abs_stress * :kbar_per_ev_a3 > :max_stress_kbar, false) AS max_stress"""
"""A kept frame's id, relaxation and step, and whether each outlier filter flags it."""

AGGREGATE_SQL = """SELECT c.*, r.material_id, r.content_hash FROM (
    SELECT relaxation_id, count(*) AS n_kept, {filter_counts},
           array_agg(id ORDER BY step) FILTER (WHERE NOT ({offending})) AS clean_ids
    FROM ({frames}) kept GROUP BY relaxation_id
) c JOIN runs r ON r.id = c.relaxation_id AND {branch}"""
"""Per relaxation of one branch: the frames the rule keeps, counted per outlier filter,
with the ids of those no filter flags (in step order) and the relaxation's content hash.
Aggregating before joining the runs keeps the join at one row per relaxation."""


def _reset(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS trainset_candidates, trainset_selected"))


def wait_for_relaxation_writers(session: Session) -> None:
    """Hold the ``relaxations`` table still until this transaction ends.

    Relaxation ids are drawn before their ingest commits, so an ingest in flight can
    commit ids below a watermark read meanwhile, and a set cut by that watermark would
    not reproduce. A SHARE lock waits for every writer in flight (they hold ROW
    EXCLUSIVE) to commit or roll back, and holds new ones back until this transaction
    ends: afterwards every id up to the watermark is committed and no new one can fall
    below it. Take it before reading the watermark (``relaxation_watermark``).
    """
    session.execute(text("LOCK TABLE relaxations IN SHARE MODE"))


def relaxation_watermark(session: Session) -> int:
    """Largest relaxation id now visible (0 for an empty database)."""
    return session.execute(text("SELECT COALESCE(max(id), 0) FROM relaxations")).scalar_one()


def select_candidates(
    session: Session,
    params: SelectionParameters,
    watermark: int,
    isolated_frames: np.ndarray | None = None,
    left_out_sources: Sequence[int] = (),
) -> None:
    """Fill ``trainset_candidates``: per relaxation, the frames the rule keeps.

    Args:
        isolated_frames: frame ids with an isolated atom for a cutoff other than the
            stored 5 Å one (see ``rule_frame_geometry``); None uses the stored flag.
        left_out_sources: ids of sources whose relaxations do not enter (the retracted
            sources a set leaves out, ``retracted_runs``).
    """
    _reset(session)
    flags = FLAGS_SQL.format(
        # The stored flag is for 5 Å; another cutoff comes as a list of frame ids.
        isolated="f.has_isolated_atom"
        if isolated_frames is None
        else "f.id = ANY(CAST(:isolated_ids AS bigint[]))"
    )
    aggregates = [
        AGGREGATE_SQL.format(
            filter_counts=", ".join(
                f"count(*) FILTER (WHERE {name}) AS {name}" for name in OUTLIER_FILTERS
            ),
            offending=_offending(),
            frames=frames,
            branch=BRANCH_RUNS[branch],
        )
        for branch, frames in _kept_frames(params, flags).items()
    ]
    previous = _set_local(session, PASS_SETTINGS)
    session.execute(
        text(
            "CREATE TEMP TABLE trainset_candidates ON COMMIT DROP AS"
            + _runs_cte(params, left_out_sources)
            + "\nUNION ALL\n".join(aggregates)
        ),
        {
            **_parameters(params, watermark, left_out_sources),
            "isolated_ids": [] if isolated_frames is None else isolated_frames.tolist(),
        },
    )
    _set_local(session, previous)


WORK_MEM = {"work_mem": "256MB"}
"""Aggregating a million frames, and holding 40,000 selected rows, fit in memory."""

PASS_SETTINGS = {
    **WORK_MEM,
    # One parallel worker shares the pass over the index while this backend aggregates
    # in (relaxation, step) order: 1.25x faster for a million frames on two cores (more
    # workers only contend with the aggregating leader). At PostgreSQL's default costs
    # (2, 1000, 0.1) the planner prices merging the ordered outputs too high. Small
    # tables stay serial (min_parallel_index_scan_size).
    "max_parallel_workers_per_gather": "1",
    "parallel_setup_cost": "0",
    "parallel_tuple_cost": "0.001",
}
"""Settings for the pass over the frames only; the session's own come back after it."""


def _set_local(session: Session, settings: dict[str, str]) -> dict[str, str]:
    """Set each setting for the current transaction; return the values they replaced."""
    previous = {}
    for name, value in settings.items():
        previous[name] = session.execute(
            text("SELECT current_setting(:name)"), {"name": name}
        ).scalar_one()
        session.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
        )
    return previous


def _offending() -> str:
    """SQL: the frame is flagged by some outlier filter."""
    return " OR ".join(OUTLIER_FILTERS)


def _parameters(
    params: SelectionParameters, watermark: int, left_out_sources: Sequence[int] = ()
) -> dict[str, Any]:
    return {
        "left_out_sources": list(left_out_sources),
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


@dataclass(frozen=True)
class LeftOutSource:
    """A retracted source whose relaxations a new training set leaves out.

    Attributes:
        relaxations: its relaxations that would have entered the selection (method,
            watermark and selectors match). frames: their stored steps, all of them
            (before the step rule). materials: their materials.
    """

    source_id: int
    path: str
    sha256: str
    reason: str
    relaxations: int
    frames: int
    materials: int


@dataclass(frozen=True)
class LeftOut:
    """What a selection leaves out of retracted sources: per source, and in total
    (``materials`` counts a material once even when several sources held it)."""

    sources: list[LeftOutSource]
    relaxations: int
    frames: int
    materials: int

    @property
    def source_ids(self) -> list[int]:
        return [s.source_id for s in self.sources]


# One pass: a row per source and, with all grouping columns NULL, the total.
RETRACTED_RUNS_SQL = """
SELECT s.id AS source_id, s.path, s.sha256, s.retraction_reason AS reason,
       count(*) AS relaxations, COALESCE(sum(r.n_steps), 0) AS frames,
       count(DISTINCT r.material_id) AS materials
FROM sources s JOIN relaxations r ON r.source_id = s.id
WHERE s.retracted_at IS NOT NULL AND r.method = :method AND r.id <= :watermark {conditions}
GROUP BY GROUPING SETS ((s.id, s.path, s.sha256, s.retraction_reason), ())
ORDER BY s.id NULLS LAST"""


def retracted_runs(session: Session, params: SelectionParameters, watermark: int) -> LeftOut:
    """The relaxations of retracted sources that would enter ``params``'s selection
    below ``watermark``, per source. Starts from the (few) retracted sources."""
    conditions = "".join(f" AND {RUN_CONDITIONS[k]}" for k in _selectors(params))
    rows = (
        session.execute(
            text(RETRACTED_RUNS_SQL.format(conditions=conditions)),
            _parameters(params, watermark),
        )
        .mappings()
        .all()
    )
    total = rows[-1]  # the empty grouping set: always one row, zeros when none matched
    return LeftOut(
        sources=[LeftOutSource(**row) for row in rows[:-1]],
        relaxations=int(total["relaxations"]),
        frames=int(total["frames"]),
        materials=int(total["materials"]),
    )


def rule_frame_geometry(
    session: Session,
    params: SelectionParameters,
    watermark: int,
    left_out_sources: Sequence[int] = (),
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame ids, cells (F, 3, 3), positions (F, N, 3)) of the frames the rule keeps,
    one relaxation at a time: for an isolated-atom cutoff other than the stored one."""
    kept = " UNION ALL ".join(
        f"SELECT k.id FROM ({frames}) k JOIN runs r ON r.id = k.relaxation_id"
        f" AND {BRANCH_RUNS[branch]}"
        for branch, frames in _kept_frames(params, "f.id, f.relaxation_id").items()
    )
    rows = session.execute(
        text(
            f"{_runs_cte(params, left_out_sources)} SELECT f.id, f.relaxation_id, f.cell,"
            f" f.positions FROM frames f WHERE f.id IN ({kept}) ORDER BY f.relaxation_id, f.step"
        )
        .columns(cell=Matrix3, positions=Vec3Array)
        .execution_options(stream_results=True, yield_per=5000),
        _parameters(params, watermark, left_out_sources),
    )
    for batch in _by_relaxation(rows):
        yield (
            np.array([r.id for r in batch], dtype=np.int64),
            np.stack([r.cell for r in batch]),
            np.stack([r.positions for r in batch]),
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
    columns = "".join(
        f", COALESCE(sum({name}), 0) AS {name}_frames,"
        f" count(DISTINCT material_id) FILTER (WHERE {name} > 0) AS {name}_materials"
        for name in OUTLIER_FILTERS
    )
    row = (
        session.execute(
            text(
                "SELECT COALESCE(sum(n_kept), 0) AS rule_kept_frames,"
                f" count(DISTINCT material_id) AS rule_kept_materials{columns}"
                " FROM trainset_candidates"
            )
        )
        .mappings()
        .one()
    )
    return {
        name: {"frames": int(row[f"{name}_frames"]), "materials": int(row[f"{name}_materials"])}
        for name in ("rule_kept", *OUTLIER_FILTERS)
    }


SURVIVORS: dict[OutlierScope, str] = {
    # A material with any flagged frame is dropped whole.
    "material": "material_id NOT IN (SELECT material_id FROM trainset_candidates"
    " WHERE n_kept > COALESCE(cardinality(clean_ids), 0))",
    # Only the flagged frames go.
    "frame": "clean_ids IS NOT NULL",
}
"""Per outlier scope: the candidate rows (relaxations) that keep frames."""


@dataclass(frozen=True)
class Survivors:
    """The materials that keep at least one frame: parallel lists of material ids, group
    keys and selected frame counts."""

    material_ids: list[int]
    groups: list[str]
    frames: list[int]


GROUP_KEYS: dict[GroupBy, str] = {
    "material": "c.material_id::text",
    "formula": "m.formula",
    "chemsys": "m.chemsys",
}
"""Per group-by: the SQL of a candidate's group key."""


def surviving_materials(session: Session, scope: OutlierScope, group_by: GroupBy) -> Survivors:
    """Every material that keeps at least one frame, with its group and frame count."""
    group = GROUP_KEYS[group_by]
    join = "" if group_by == "material" else " JOIN materials m ON m.id = c.material_id"
    # One row of three arrays: 40,000 rows cost three times more to fetch one by one.
    material_ids, groups, frames = session.execute(
        text(
            "SELECT array_agg(material_id), array_agg(grp), array_agg(frames) FROM ("
            f" SELECT c.material_id, {group} AS grp, sum(cardinality(c.clean_ids))::int AS frames"
            f" FROM trainset_candidates c{join} WHERE {SURVIVORS[scope]}"
            f" GROUP BY c.material_id, {group}) survivors"
        )
    ).one()
    return Survivors(material_ids or [], groups or [], frames or [])


def material_splits(session: Session, training_set_id: int) -> dict[int, Split]:
    """{material id: split} of a stored training set's materials.

    A set splits by material, so each material has one split. A material is found
    through the set's relaxations that still exist (``training_set_relaxations`` keeps
    no foreign key to ``relaxations``): one whose every selected relaxation was deleted
    since is not listed.
    """
    # One row of two arrays, as in ``surviving_materials``.
    material_ids, splits = session.execute(
        text(
            "SELECT array_agg(material_id), array_agg(split) FROM ("
            " SELECT DISTINCT r.material_id, t.split FROM training_set_relaxations t"
            " JOIN relaxations r ON r.id = t.relaxation_id"
            " WHERE t.training_set_id = :id) members"
        ),
        {"id": training_set_id},
    ).one()
    return dict(zip(material_ids or [], splits or [], strict=True))


SPLIT_OF_CANDIDATE = "CASE {} END".format(
    " ".join(
        f"WHEN c.material_id = ANY(CAST(:{split}_ids AS int[])) THEN '{split}'" for split in SPLITS
    )
)

SELECTED_SQL = f"""SELECT relaxation_id, split, frame_ids, content_hash FROM (
    SELECT c.relaxation_id, {SPLIT_OF_CANDIDATE} AS split, c.clean_ids AS frame_ids, c.content_hash
    FROM trainset_candidates c WHERE c.clean_ids IS NOT NULL
) s WHERE split IS NOT NULL"""
"""The selected relaxations with their splits, given each split's surviving materials
(``surviving_materials``): a surviving material's relaxations with clean frames (all of
them at material scope)."""

HASH_SQL = """encode(sha256(COALESCE(string_agg(
    int4send(relaxation_id) || convert_to(split, 'UTF8') || array_send(frame_ids)
    || convert_to(content_hash, 'UTF8'), ''::bytea ORDER BY relaxation_id), ''::bytea)), 'hex')"""
"""The content hash of selected rows: sha256 over, in relaxation order, each selected
relaxation's id, split, selected frame ids (step order) and content hash (sha256 of all
its arrays, from ingest)."""


def _split_parameters(split_of_material: dict[int, Split]) -> dict[str, str]:
    """Each split's material ids as one PostgreSQL int[] literal: three text parameters
    instead of lists the driver would encode element by element (40,000 of them in the
    benchmark took longer than the query using them)."""
    ids: dict[str, list[int]] = {split: [] for split in SPLITS}
    for material_id, split in split_of_material.items():
        ids[split].append(material_id)
    return {f"{split}_ids": "{" + ",".join(map(str, v)) + "}" for split, v in ids.items()}


def fill_selected(session: Session, split_of_material: dict[int, Split]) -> None:
    """Fill ``trainset_selected`` (relaxation_id, split, frame_ids, content_hash)."""
    session.execute(
        text(f"CREATE TEMP TABLE trainset_selected ON COMMIT DROP AS {SELECTED_SQL}"),
        _split_parameters(split_of_material),
    )
    # Autovacuum never analyses a temporary table: without statistics the planner took
    # it for a few rows and compared a large set frame by frame (nested loops).
    session.execute(text("ANALYZE trainset_selected"))


def selected_hash(session: Session) -> str:
    """The content hash of ``trainset_selected``."""
    return session.execute(text(f"SELECT {HASH_SQL} FROM trainset_selected")).scalar_one()


STORE_SQL = f"""WITH selected AS MATERIALIZED ({SELECTED_SQL}),
new_set AS (
    INSERT INTO training_sets (name, rule, parameters, split_counts, filter_counts,
                               n_frames, n_materials, relaxation_watermark, content_hash)
    SELECT :name, :rule, CAST(:parameters AS jsonb), CAST(:split_counts AS jsonb),
           CAST(:filter_counts AS jsonb), :n_frames, :n_materials, :watermark, {HASH_SQL}
    FROM selected
    RETURNING id
)
INSERT INTO training_set_relaxations (training_set_id, relaxation_id, split, frame_ids)
SELECT n.id, s.relaxation_id, s.split, s.frame_ids FROM selected s CROSS JOIN new_set n"""
"""The training set's row, with the content hash of what it selects, and one row per
selected relaxation, in one statement: the selection is computed once, in memory."""


def store(session: Session, row: dict[str, Any], split_of_material: dict[int, Split]) -> None:
    """Insert the ``training_sets`` row and its selected relaxations (SELECTED_SQL)."""

    previous = _set_local(session, WORK_MEM)
    session.execute(
        text(STORE_SQL),
        {
            **row,
            "parameters": json.dumps(row["parameters"]),
            "split_counts": json.dumps(row["split_counts"]),
            "filter_counts": json.dumps(row["filter_counts"]),
            **_split_parameters(split_of_material),
        },
    )
    _set_local(session, previous)
    # The statistics must know the new set now, not when autovacuum next comes by: a
    # `trainset verify` right after `create` otherwise planned its comparison for one
    # row and ran quadratic (minutes on 270,000 frames, 0.3 s once analysed).
    session.execute(text("ANALYZE training_set_relaxations"))


@dataclass(frozen=True)
class TrainingSetRow:
    """A stored training set (``training_sets``; see ``db.models.TrainingSet``).

    Attributes:
        parameters: the ``SelectionParameters`` it was made with, as JSON.
        split_counts: {split: {"frames": n, "materials": m}}.
        filter_counts: {filter: {"frames": n, "materials": m}}, and ``rule_kept`` and
            ``removed``.
        relaxation_watermark: the largest relaxation id it could select from.
    """

    id: int
    name: str
    rule: Rule
    parameters: dict[str, Any]
    split_counts: dict[str, dict[str, int]]
    filter_counts: dict[str, Any]
    n_frames: int
    n_materials: int
    relaxation_watermark: int
    content_hash: str
    created_at: datetime
    activity_id: int | None
    """The ``trainset create`` activity that made it (None before the log)."""


_TRAINING_SETS = select(TrainingSet.__table__)


def training_set_row(session: Session, name: str) -> TrainingSetRow | None:
    """A stored training set by name, or None."""
    row = session.execute(_TRAINING_SETS.where(TrainingSet.name == name)).mappings().one_or_none()
    return None if row is None else TrainingSetRow(**row)


def training_set_name(session: Session, training_set_id: int) -> str:
    """The name of a stored training set."""
    return str(session.get_one(TrainingSet, training_set_id).name)


def list_training_sets(session: Session) -> list[TrainingSetRow]:
    """Every stored training set, newest first."""
    rows = session.execute(
        _TRAINING_SETS.order_by(TrainingSet.created_at.desc(), TrainingSet.id.desc())
    ).mappings()
    return [TrainingSetRow(**row) for row in rows]


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


def stored_frame_encodings(
    session: Session, training_set_id: int
) -> Iterator[tuple[int, memoryview, bytes]]:
    """(frame id, its :data:`~atlas2d.db.digests.DIGEST_COLUMNS` as binary COPY encodes
    them, the digest stored at ingest) for each stored frame of a set that still
    exists, in no order (streamed).

    Encoded, not decoded, on purpose: the digest is a hash of that encoding
    (``db.digests.digest_of_fields``), and a binary COPY sends it as stored, so checking
    a million frames costs a hash each instead of decoding six columns each.
    """
    columns = ", ".join(f"f.{column}" for column in DIGEST_COLUMNS)
    query = (
        f"COPY (SELECT {columns}, f.id, f.digest FROM training_set_frames t"
        f" JOIN frames f ON f.id = t.frame_id WHERE t.training_set_id = {int(training_set_id)})"
        " TO STDOUT (FORMAT BINARY)"
    )
    # Each row: field count (2 bytes), the digest columns, then the id (length 4, int8)
    # and the digest (length 4, 16 bytes).
    id_field = 4 + 8 + 4 + DIGEST_BYTES
    with driver_connection(session).cursor() as cursor, cursor.copy(query) as copy:
        for row in copied_rows(copy):
            yield (
                int.from_bytes(row[-id_field + 4 : -id_field + 12], "big"),
                row[2:-id_field],
                bytes(row[-DIGEST_BYTES:]),
            )


@dataclass(frozen=True)
class TrainingFrame:
    """One frame of a training set's split, with where it comes from (eV, Å, eV/Å,
    eV/Å³ ASE sign; N sites).

    Attributes:
        species: (N,) atomic numbers. cell: (3, 3) Å, rows. positions: (N, 3) Å.
        energy: total energy, eV. forces: (N, 3) eV/Å. stress: (3, 3) eV/Å³ as stored
            (full), or None.
        pbc: the relaxation's periodic flags (a, b, c).
        dimensionality: the material's (2 for a layer), or None.
    """

    frame_id: int
    relaxation_id: int
    step: int
    split: Split
    material_key: str
    dimensionality: int | None
    species: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    pbc: tuple[bool, bool, bool]


SPLIT_FRAMES_COPY = """COPY (
SELECT t.frame_id, f.step, f.energy, r.id, m.dimensionality, r.pbc[1], r.pbc[2], r.pbc[3],
       m.key, f.cell, f.stress, r.species, f.positions, f.forces
FROM (
    SELECT frame_id FROM training_set_frames
    WHERE training_set_id = %(id)s AND split = %(split)s
      AND relaxation_id BETWEEN %(first_relaxation)s AND %(last_relaxation)s
      AND frame_id BETWEEN %(first_frame)s AND %(last_frame)s
    ORDER BY frame_id
) t
JOIN frames f ON f.id = t.frame_id
JOIN relaxations r ON r.id = f.relaxation_id
JOIN materials m ON m.id = r.material_id
ORDER BY t.frame_id
) TO STDOUT (FORMAT BINARY)"""
"""A split's frames (those of a ``FrameRange``) as binary COPY rows; ``_frame_batch``
reads the fields in this order. psycopg merges the parameters into the statement
(COPY takes none). The ids are sorted before the joins, which keep their order: the
rows stream out as they are joined, and no sort of wide rows spills to disk (the
planner sorted them last when it expected few)."""


@dataclass(frozen=True)
class FrameRange:
    """Frames with ids ``first_frame`` to ``last_frame`` of relaxations with ids
    ``first_relaxation`` to ``last_relaxation`` (inclusive; the default: every one).

    The relaxation ids let the server read only the set's rows of those relaxations (an
    index range) instead of every row of the split: a part of an export cost as much
    as the whole split without them.
    """

    first_frame: int = -(2**63)  # frames.id is a bigint, relaxations.id an integer
    last_frame: int = 2**63 - 1
    first_relaxation: int = -(2**31)
    last_relaxation: int = 2**31 - 1


SPLIT_FRAMES_BATCH = 4096
"""Rows decoded together: about 3 MB for frames of 3–20 atoms."""


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive frames of a split, by frame id, column-wise (units and signs as in
    ``TrainingFrame``; B frames, Σn atoms).

    Attributes:
        frame_ids, relaxation_ids, steps: (B,) ints. energies: (B,) eV.
        dimensionalities: (B,) the materials' (None where unknown). material_keys: (B,).
        pbc: (B,) the relaxations' periodic flags (a, b, c).
        cells: (B, 3, 3) Å, rows. stresses: (B, 3, 3) eV/Å³ as stored, zeros where
            ``has_stress`` is False. has_stress: (B,).
        species: (Σn,) atomic numbers (int64). positions: (Σn, 3) Å. forces: (Σn, 3) eV/Å.
        bounds: (B + 1,) frame i's atoms are rows ``bounds[i]:bounds[i + 1]``.
    """

    split: Split
    frame_ids: list[int]
    relaxation_ids: list[int]
    steps: list[int]
    energies: list[float]
    dimensionalities: list[int | None]
    material_keys: list[str]
    pbc: list[tuple[bool, bool, bool]]
    cells: np.ndarray
    stresses: np.ndarray
    has_stress: list[bool]
    species: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    bounds: list[int]

    def frames(self) -> Iterator[TrainingFrame]:
        """The batch frame by frame; a frame's arrays are views of the batch's."""
        bounds = self.bounds
        columns = zip(
            self.frame_ids,
            self.relaxation_ids,
            self.steps,
            self.material_keys,
            self.dimensionalities,
            self.energies,
            self.has_stress,
            self.pbc,
            bounds,
            bounds[1:],
            strict=False,  # the bounds have one item more than there are frames
        )
        for i, (frame_id, relaxation_id, step, key, dim, energy, stressed, pbc, a, b) in enumerate(
            columns
        ):
            yield TrainingFrame(
                frame_id=frame_id,
                relaxation_id=relaxation_id,
                step=step,
                split=self.split,
                material_key=key,
                dimensionality=dim,
                species=self.species[a:b],
                cell=self.cells[i],
                positions=self.positions[a:b],
                energy=energy,
                forces=self.forces[a:b],
                stress=self.stresses[i] if stressed else None,
                pbc=pbc,
            )


def split_frame_batches(
    session: Session,
    training_set_id: int,
    split: Split,
    frames: FrameRange = FrameRange(),
) -> Iterator[FrameBatch]:
    """A training set's frames of one split (only those in ``frames`` when given), by
    frame id, in batches of ``SPLIT_FRAMES_BATCH`` frames (streamed: one batch in
    memory at a time).

    A binary COPY decoded with numpy a batch at a time (``db.copy_columns``): the
    rows psycopg decoded into lists (cell, stress, species), then into arrays, cost as
    much as writing the MACE file.

    Raises:
        InvalidInput: a stored frame is not laid out as the schema stores it (a cell
            or stress that is not 3×3, species with NULLs, as many species as
            positions): edited outside atlas2d.
    """
    parameters = {"id": int(training_set_id), "split": split, **asdict(frames)}
    with (
        driver_connection(session).cursor() as cursor,
        cursor.copy(SPLIT_FRAMES_COPY, parameters) as copy,
    ):
        rows: list[memoryview] = []
        for row in copied_rows(copy):
            rows.append(row)
            if len(rows) == SPLIT_FRAMES_BATCH:
                yield _frame_batch(rows, split)
                rows = []
        if rows:
            yield _frame_batch(rows, split)


def split_frame_ids(
    session: Session, training_set_id: int, split: Split
) -> tuple[np.ndarray, np.ndarray]:
    """(F,) int64 each: the ids of a split's frames, ascending, and of their relaxations."""
    frame_ids, relaxation_ids = session.execute(
        text(
            "SELECT array_agg(frame_id ORDER BY frame_id),"
            " array_agg(relaxation_id ORDER BY frame_id) FROM training_set_frames"
            " WHERE training_set_id = :id AND split = :split"
        ),
        {"id": training_set_id, "split": split},
    ).one()
    return np.array(frame_ids or [], dtype=np.int64), np.array(relaxation_ids or [], dtype=np.int64)


def split_frames(session: Session, training_set_id: int, split: Split) -> Iterator[TrainingFrame]:
    """A training set's frames of one split, by frame id, streamed
    (``split_frame_batches`` frame by frame)."""
    for batch in split_frame_batches(session, training_set_id, split):
        yield from batch.frames()


SPLIT_FRAMES_FIELDS = (
    "frame_id",
    "step",
    "energy",
    "relaxation_id",
    "dimensionality",
    "pbc[1]",
    "pbc[2]",
    "pbc[3]",
    "material_key",
    "cell",
    "stress",
    "species",
    "positions",
    "forces",
)
"""The fields of ``SPLIT_FRAMES_COPY``, in order."""


def _frame_batch(rows: list[memoryview], split: Split) -> FrameBatch:
    """The frames of ``SPLIT_FRAMES_COPY`` rows (``split_frame_batches`` raises)."""
    try:
        batch = CopiedBatch(rows, SPLIT_FRAMES_FIELDS)
        cells, _ = batch.matrices(9, (3, 3))
        stresses, no_stress = batch.matrices(10, (3, 3))
        species, species_bounds = batch.vectors(11, ">i2")
        positions, bounds = batch.vec3_bytes(12)
        forces, force_bounds = batch.vec3_bytes(13)
        for name, other in (("species", species_bounds), ("forces", force_bounds)):
            if (other != bounds).any():
                first = int(np.flatnonzero(np.diff(other) != np.diff(bounds))[0])
                frame_id = batch.scalars(0, ">i8")[first]
                raise ValueError(f"frame {frame_id} has another number of {name} than positions")
        return FrameBatch(
            split=split,
            frame_ids=batch.scalars(0, ">i8"),
            steps=batch.scalars(1, ">i4"),
            energies=batch.scalars(2, ">f8"),
            relaxation_ids=batch.scalars(3, ">i4"),
            dimensionalities=batch.scalars(4, ">i2"),
            pbc=list(
                zip(
                    batch.scalars(5, "?"),
                    batch.scalars(6, "?"),
                    batch.scalars(7, "?"),
                    strict=True,
                )
            ),
            material_keys=cast("list[str]", batch.texts(8)),  # materials.key is NOT NULL
            cells=cells,
            stresses=stresses,
            has_stress=(~no_stress).tolist(),
            species=species.astype(np.int64),
            positions=positions,
            forces=forces,
            bounds=bounds.tolist(),
        )
    except ValueError as err:
        raise InvalidInput(
            f"A stored frame of the {split} split cannot be exported: {err}. Run "
            "`atlas2d trainset verify` on the set; fix or delete the frame with SQL."
        ) from err


def training_set_elements(session: Session, training_set_id: int) -> tuple[str, ...]:
    """Element symbols of every frame of a training set, in Z order."""
    from ase.data import chemical_symbols

    numbers = session.execute(
        text(
            "SELECT DISTINCT z FROM training_set_relaxations t"
            " JOIN relaxations r ON r.id = t.relaxation_id, unnest(r.species) AS z"
            " WHERE t.training_set_id = :id ORDER BY z"
        ),
        {"id": training_set_id},
    ).scalars()
    return tuple(chemical_symbols[z] for z in numbers)
