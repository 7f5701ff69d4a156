"""Training sets: create (rule, outlier filters, splits), list, show, verify, export.

Python API for notebooks; every function returns plain data (dataclasses, DataFrames,
paths). The selection runs in SQL (``queries.training_sets``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.splits import assign_splits
from atlas2d.analysis.structure import ISOLATED_CUTOFF_A, has_isolated_atom
from atlas2d.db.digests import digest_of_fields
from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.queries import training_sets as queries
from atlas2d.queries.retractions import RetractedContent, retracted_content
from atlas2d.queries.training_sets import LeftOut, SelectionParameters, TrainingSetRow
from atlas2d.vocabulary import (
    GROUP_BYS,
    OUTLIER_SCOPES,
    RULES,
    SPLITS,
    Rule,
    Split,
    or_list,
)


@dataclass
class TrainingSetSummary:
    """A stored training set: what it holds and how it was made."""

    name: str
    rule: Rule
    parameters: dict[str, Any]
    split_counts: dict[str, dict[str, int]]
    filter_counts: dict[str, Any]
    n_frames: int
    n_materials: int
    relaxation_watermark: int
    content_hash: str | None
    """None for a dry run (``preview_training_set``)."""
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: TrainingSetRow) -> TrainingSetSummary:
        return cls(**{k: getattr(row, k) for k in cls.__dataclass_fields__})

    @property
    def retracted(self) -> dict[str, Any] | None:
        """The relaxations of retracted sources the selection met (``filter_counts``
        key ``retracted``, see ``_retracted_counts``); None for a set made before
        retraction existed."""
        return self.filter_counts.get(RETRACTED)


@dataclass
class VerifyReport:
    """Whether a training set reproduces from the stored parameters and data.

    Attributes:
        retracted: the retracted sources the set holds frames of, with counts; a set
            still reproduces with them (nothing is deleted), this only says so.
    """

    name: str
    reproduced: bool
    stored_hash: str
    recomputed_hash: str
    differences: dict[str, Any] = field(default_factory=dict)
    retracted: list[RetractedContent] = field(default_factory=list)


RETRACTED = "retracted"
"""The ``filter_counts`` key recording the retracted sources a selection met."""


def _retracted_counts(left_out: LeftOut, include_retracted: bool) -> dict[str, Any]:
    """``filter_counts["retracted"]``: the relaxations of retracted sources that entered
    the selection (all their steps counted as frames, before the step rule), per source,
    and whether they were left out. Verify leaves the same sources out again, whatever
    has been retracted or restored since."""
    return {
        "left_out": not include_retracted,
        "relaxations": left_out.relaxations,
        "frames": left_out.frames,
        "materials": left_out.materials,
        "sources": [
            {
                "id": s.source_id,
                "path": s.path,
                "sha256": s.sha256,
                "reason": s.reason,
                "relaxations": s.relaxations,
                "frames": s.frames,
                "materials": s.materials,
            }
            for s in left_out.sources
        ],
    }


def _left_out_sources(filter_counts: dict[str, Any]) -> list[int]:
    """Ids of the retracted sources a stored set left out (none for older sets)."""
    retracted = filter_counts.get(RETRACTED)
    if not retracted or not retracted["left_out"]:
        return []
    return [source["id"] for source in retracted["sources"]]


def _validate(params: SelectionParameters) -> None:
    problems = []
    if params.rule not in RULES:
        problems.append(f"rule {params.rule!r} is not one of {', '.join(RULES)}")
    if params.outlier_scope not in OUTLIER_SCOPES:
        problems.append(f"outlier scope {params.outlier_scope!r} is not {or_list(OUTLIER_SCOPES)}")
    if params.group_by not in GROUP_BYS:
        problems.append(f"group-by {params.group_by!r} is not {or_list(GROUP_BYS)}")
    if len(params.split) != 3 or min(params.split) < 0 or abs(sum(params.split) - 100) > 1e-9:
        problems.append(f"split {params.split} does not sum to 100")
    if params.ecut < 0:
        problems.append("ecut must be ≥ 0 eV/atom")
    if params.keep_splits_from is not None and not params.keep_splits_from.strip():
        problems.append("keep-splits-from is empty; name an earlier training set or leave it out")
    if problems:
        raise InvalidInput("Invalid training-set parameters: " + "; ".join(problems) + ".")


def _isolated_frames(
    session: Session, params: SelectionParameters, watermark: int, left_out: list[int]
) -> np.ndarray | None:
    """Ids of rule-kept frames with an isolated atom at a cutoff other than the stored
    5 Å one (computed from the geometry), or None to use the stored flag."""
    if params.isolated_cutoff == ISOLATED_CUTOFF_A:
        return None
    frames = queries.rule_frame_geometry(session, params, watermark, left_out)
    isolated = [
        ids[has_isolated_atom(cells, positions, params.isolated_cutoff)]
        for ids, cells, positions in frames
    ]
    return np.concatenate(isolated) if isolated else np.empty(0, dtype=np.int64)


def split_materials(
    material_ids: list[int],
    groups: list[str],
    earlier: dict[int, Split],
    ratios: tuple[float, float, float],
    seed: int,
) -> dict[int, Split]:
    """Each material's split, keeping the splits of an earlier training set.

    A material of the earlier set keeps its split. A group with earlier members takes
    their split; when they disagree (only when the earlier set grouped otherwise), the
    split most of them are in, ties going to the first in train, val, test order; the
    earlier members still keep their own. The other groups are split by
    ``assign_splits(groups, ratios, seed)``, so with no earlier set this is the plain
    seeded split.

    Args:
        material_ids, groups: parallel lists, each material's group key.
        earlier: material id → split in the earlier set (empty for none).
        ratios, seed: as ``assign_splits``.

    Returns:
        material id → split.
    """
    votes: dict[str, Counter[Split]] = {}
    for material_id, group in zip(material_ids, groups, strict=True):
        if material_id in earlier:
            votes.setdefault(group, Counter())[earlier[material_id]] += 1
    split_of_group = {
        group: max(SPLITS, key=lambda split: (counts[split], -SPLITS.index(split)))
        for group, counts in votes.items()
    }
    split_of_group |= assign_splits([g for g in groups if g not in split_of_group], ratios, seed)
    return {m: earlier.get(m, split_of_group[g]) for m, g in zip(material_ids, groups, strict=True)}


def _earlier_splits(session: Session, params: SelectionParameters) -> dict[int, Split]:
    """{material id: split} of ``params.keep_splits_from`` (empty when not set).

    Raises:
        NotFound: no training set has that name.
    """
    if params.keep_splits_from is None:
        return {}
    earlier = queries.training_set_row(session, params.keep_splits_from)
    if earlier is None:
        raise NotFound(
            f"No training set is named {params.keep_splits_from!r} to keep the splits of "
            "(keep-splits-from); `atlas2d trainset list` shows them."
        )
    return queries.material_splits(session, earlier.id)


def _select(
    session: Session,
    params: SelectionParameters,
    watermark: int,
    left_out: list[int] | None = None,
) -> dict[str, Any]:
    """Run the rule and the filters into ``trainset_candidates`` and assign splits
    (``split_materials``).

    Args:
        left_out: ids of the retracted sources to leave out, as recorded by a stored
            set (verify); None to find them now (create: every retracted source, unless
            ``params.include_retracted``).

    Returns:
        split_of_material (material id → split), split_counts, filter_counts (with
        ``retracted`` when the sources were found now), n_frames, n_materials.

    Raises:
        NotFound: ``params.keep_splits_from`` names no training set (checked first).
    """
    earlier = _earlier_splits(session, params)
    recorded: dict[str, Any] = {}
    if left_out is None:
        met = queries.retracted_runs(session, params, watermark)
        recorded[RETRACTED] = _retracted_counts(met, params.include_retracted)
        left_out = [] if params.include_retracted else met.source_ids
    queries.select_candidates(
        session,
        params,
        watermark,
        _isolated_frames(session, params, watermark, left_out),
        left_out,
    )
    per_filter = queries.filter_counts(session)
    survivors = queries.surviving_materials(session, params.outlier_scope, params.group_by)
    split_of_material = split_materials(
        survivors.material_ids, survivors.groups, earlier, params.split, params.seed
    )
    split_counts = {split: {"frames": 0, "materials": 0} for split in SPLITS}
    for material_id, frames in zip(survivors.material_ids, survivors.frames, strict=True):
        counts = split_counts[split_of_material[material_id]]
        counts["frames"] += frames
        counts["materials"] += 1
    n_frames = sum(survivors.frames)
    n_materials = len(survivors.material_ids)
    kept = per_filter["rule_kept"]
    return {
        "split_of_material": split_of_material,
        "split_counts": split_counts,
        "filter_counts": {
            **per_filter,
            "removed": {
                "frames": kept["frames"] - n_frames,
                "materials": kept["materials"] - n_materials,
            },
            **recorded,
        },
        "n_frames": n_frames,
        "n_materials": n_materials,
    }


def _refuse_taken(session: Session, name: str) -> None:
    if queries.training_set_row(session, name) is not None:
        raise AlreadyExists(
            f"A training set named {name!r} exists; training sets are immutable, pick another name."
        )


def create_training_set(
    sessions: sessionmaker[Session], name: str, params: SelectionParameters
) -> TrainingSetSummary:
    """Select, filter, split and store a training set in one transaction.

    Relaxations of retracted sources are left out unless ``params.include_retracted``;
    ``filter_counts["retracted"]`` records which sources and how much either way.

    Raises:
        InvalidInput: bad parameters, or no frame survives the selection.
        AlreadyExists: a training set with this name exists.
        NotFound: ``params.keep_splits_from`` names no training set.
    """
    _validate(params)
    try:
        with sessions.begin() as session:
            _refuse_taken(session, name)
            # Membership is what was committed when the set was made: wait for ingests in
            # flight, whose relaxation ids may lie below the watermark.
            queries.wait_for_relaxation_writers(session)
            watermark = queries.relaxation_watermark(session)
            selection = _select(session, params, watermark)
            if selection["n_frames"] == 0:
                retracted = selection["filter_counts"][RETRACTED]
                left_out = (
                    f"; {retracted['relaxations']} relaxations of retracted sources were "
                    "left out, which --include-retracted keeps"
                    if retracted["left_out"] and retracted["relaxations"]
                    else ""
                )
                raise InvalidInput(
                    f"No frame survives the selection for training set {name!r} "
                    f"(rule kept {selection['filter_counts']['rule_kept']['frames']} frames before the "
                    f"outlier filters{left_out}); ingest data or loosen the selection."
                )
            split_of_material = selection.pop("split_of_material")
            row = {
                "name": name,
                "rule": params.rule,
                "parameters": params.to_json(),
                "watermark": watermark,
                **selection,
            }
            queries.store(session, row, split_of_material)
            stored = queries.training_set_row(session, name)
    except IntegrityError as err:
        raise AlreadyExists(f"A training set named {name!r} exists; pick another name.") from err
    assert stored is not None
    return TrainingSetSummary.from_row(stored)


def preview_training_set(
    sessions: sessionmaker[Session], name: str, params: SelectionParameters
) -> TrainingSetSummary:
    """What ``create_training_set`` would store under ``name``: the counts per split and
    per outlier filter, from the same selection, without storing anything or computing
    the content hash (``trainset create --dry-run``).

    Raises:
        InvalidInput: bad parameters. AlreadyExists: ``name`` is taken (as create would).
        NotFound: ``params.keep_splits_from`` names no training set.
    """
    _validate(params)
    with sessions.begin() as session:
        _refuse_taken(session, name)
        watermark = queries.relaxation_watermark(session)
        selection = _select(session, params, watermark)
    del selection["split_of_material"]
    return TrainingSetSummary(
        name=name,
        rule=params.rule,
        parameters=params.to_json(),
        relaxation_watermark=watermark,
        content_hash=None,
        **selection,
    )


def stored_training_set(session: Session, name: str) -> TrainingSetRow:
    """The stored training set named ``name``. Raises NotFound."""
    row = queries.training_set_row(session, name)
    if row is None:
        raise NotFound(f"No training set is named {name!r}; `atlas2d trainset list` shows them.")
    return row


def show_training_set(sessions: sessionmaker[Session], name: str) -> TrainingSetSummary:
    """One stored training set. Raises NotFound."""
    with sessions.begin() as session:
        return TrainingSetSummary.from_row(stored_training_set(session, name))


def list_training_sets(sessions: sessionmaker[Session]) -> pd.DataFrame:
    """One row per training set: name, rule, ecut, frames per split, hash, time."""
    with sessions.begin() as session:
        rows = queries.list_training_sets(session)
    return pd.DataFrame(
        [
            {
                "name": r.name,
                "rule": r.rule,
                "ecut_ev_per_atom": r.parameters["ecut"] if r.rule == "ecut" else None,
                "materials": r.n_materials,
                **{f"{s}_frames": r.split_counts[s]["frames"] for s in SPLITS},
                "content_hash": r.content_hash[:12],
                "created_at": f"{r.created_at:%Y-%m-%d %H:%M}",
            }
            for r in rows
        ],
        columns=[
            "name",
            "rule",
            "ecut_ev_per_atom",
            "materials",
            *(f"{s}_frames" for s in SPLITS),
            "content_hash",
            "created_at",
        ],
    )


def verify_training_set(sessions: sessionmaker[Session], name: str) -> VerifyReport:
    """Re-run the selection with the stored parameters below the stored watermark and
    compare frames, splits and hash with what was stored; recompute every stored
    frame's content digest. Writes nothing (the re-run lives in temporary tables
    dropped at commit). A set made with ``keep_splits_from`` reads the earlier set's
    splits again (training sets are immutable). The retracted sources the set left out
    when it was made are left out again, whatever was retracted or restored since; the
    retracted sources it holds frames of are reported (``VerifyReport.retracted``),
    without failing it."""
    with sessions.begin() as session:
        row = stored_training_set(session, name)
        params = SelectionParameters.from_json(row.parameters)
        left_out = _left_out_sources(row.filter_counts)
        selection = _select(session, params, row.relaxation_watermark, left_out)
        queries.fill_selected(session, selection["split_of_material"])
        recomputed = queries.selected_hash(session)
        differences = queries.compare_with_stored(session, row.id)
        differences["changed"] = _changed_frames(session, row.id)
        retracted = retracted_content(session, row.id)
    reproduced = recomputed == row.content_hash and not any(
        d["count"] for d in differences.values()
    )
    return VerifyReport(name, reproduced, row.content_hash, recomputed, differences, retracted)


def _changed_frames(session: Session, training_set_id: int, limit: int = 20) -> dict[str, Any]:
    """Stored frames whose content no longer matches the digest taken at ingest."""
    changed = [
        frame_id
        for frame_id, fields, stored in queries.stored_frame_encodings(session, training_set_id)
        if digest_of_fields(fields) != stored
    ]
    return {"count": len(changed), "first": sorted(changed)[:limit]}
