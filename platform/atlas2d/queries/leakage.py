"""Which of the materials an evaluation would score a model has already seen in training:
in the train or val split of its own training set or of an ancestor's, found through
``model_training_materials()``. Functions take ``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.vocabulary import SPLITS, GroupBy, Split

TRAIN, VAL, _TEST = SPLITS


@dataclass(frozen=True)
class SeenMaterial:
    """An evaluated material that a training set on the model's parent chain holds.

    Attributes:
        material_key: the evaluated material.
        split: ``train`` when any set on the chain holds it (or a member of its group)
            in its train split, else ``val``.
        model: the version (``NAME:VERSION``) whose training set holds it: the model
            itself (depth 0) or an ancestor (1 = its parent, …); the nearest one.
        depth: that version's distance from the model.
        training_set: that version's training set.
        group_by: how that set keeps groups in one split. ``formula`` or ``chemsys``:
            the set holds a material of the same reduced formula or chemical system (a
            polymorph or sibling), not necessarily this one.
    """

    material_key: str
    split: Split
    model: str
    depth: int
    training_set: str
    group_by: GroupBy


@dataclass(frozen=True)
class TrainingOverlap:
    """The evaluated materials found on the model's chain, each once, sorted by key.

    Attributes:
        leaked: in a train split (of the model or any ancestor).
        validated: in a val split only (of the model or any ancestor), never in a train
            split: training watched the val split every epoch (MACE keeps its
            best-validation checkpoint), so its materials are not quite held out.
    """

    leaked: list[SeenMaterial]
    validated: list[SeenMaterial]


# One pass over the chain's train and val members: each member's group key under the
# rule its set was split by, joined with the same key of every evaluated material
# (three keys each), so the join is on equal values and stays a hash join over sets of
# 10⁵ materials. The nearest train row of a material wins over every val row.
_OVERLAP_SQL = text(
    """
    WITH chain_members AS (
        SELECT t.material_id, t.split, t.depth, t.ancestor_id,
               a.name || ':' || a.version AS model, ts.name AS training_set,
               COALESCE(ts.parameters ->> 'group_by', 'material') AS group_by
        FROM model_training_materials(:model) t
        JOIN model_versions a ON a.id = t.ancestor_id
        JOIN training_sets ts ON ts.id = a.training_set_id
        WHERE t.split IN (:train, :val)
    ), member_groups AS (
        SELECT c.*, CASE c.group_by WHEN 'formula' THEN m.formula
                                    WHEN 'chemsys' THEN m.chemsys
                                    ELSE m.id::text END AS group_key
        FROM chain_members c JOIN materials m ON m.id = c.material_id
    ), evaluated_groups AS (
        SELECT m.key, g.group_by, g.group_key
        FROM materials m
        CROSS JOIN LATERAL (VALUES ('material', m.id::text), ('formula', m.formula),
                                   ('chemsys', m.chemsys)) g (group_by, group_key)
        WHERE m.key = ANY(CAST(:keys AS text[]))
    )
    SELECT DISTINCT ON (e.key) e.key AS material_key, c.split, c.model, c.depth,
           c.training_set, c.group_by
    FROM evaluated_groups e
    JOIN member_groups c ON c.group_by = e.group_by AND c.group_key = e.group_key
    ORDER BY e.key, c.split = :train DESC, c.depth, c.ancestor_id
    """
)


def training_overlap(
    session: Session, model_version_id: int, material_keys: Sequence[str]
) -> TrainingOverlap:
    """Which of ``material_keys`` the model's training sets, or its ancestors', hold in
    a train or val split (test splits are held out). A set split with ``group_by``
    formula or chemsys counts a material whose group it holds: its polymorph or
    sibling was trained on, the thing grouping exists to prevent.

    Args:
        model_version_id: the evaluated model version.
        material_keys: the evaluated materials (unknown keys are not found).

    Returns:
        the leaked (train) and validated (val only) materials.
    """
    rows = session.execute(
        _OVERLAP_SQL,
        {"model": model_version_id, "keys": list(material_keys), "train": TRAIN, "val": VAL},
    ).mappings()
    seen = [SeenMaterial(**row) for row in rows]
    return TrainingOverlap(
        leaked=[s for s in seen if s.split == TRAIN],
        validated=[s for s in seen if s.split == VAL],
    )
