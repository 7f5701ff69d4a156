"""Reading relaxation errors and storing evaluations. Functions take ``session`` first
and never commit."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from atlas2d.db.models import Evaluation


def relaxation_errors(
    session: Session,
    model_version_id: int,
    parameters: dict[str, Any],
    training_set_id: int | None = None,
    split: str | None = None,
) -> pd.DataFrame:
    """Rows of the ``relaxation_errors`` view for one model version and set of relaxation
    parameters, optionally only the materials of a training-set split, with each
    material's elements."""
    result = session.execute(
        text(
            "SELECT e.*, m.elements FROM relaxation_errors e"
            " JOIN materials m ON m.key = e.material_key"
            " WHERE e.model_version_id = :mv AND e.parameters = CAST(:parameters AS jsonb)"
            " AND (CAST(:ts AS int) IS NULL OR m.id IN ("
            "   SELECT r.material_id FROM training_set_relaxations t"
            "   JOIN relaxations r ON r.id = t.relaxation_id"
            "   WHERE t.training_set_id = :ts AND t.split = :split))"
            " ORDER BY e.material_key"
        ),
        {
            "mv": model_version_id,
            "parameters": json.dumps(parameters),
            "ts": training_set_id,
            "split": split,
        },
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def insert_evaluation(session: Session, row: dict[str, Any]) -> int:
    """Store an evaluation; an identical one already stored (same model, set, split,
    kind, parameters, figures and leakage counts) is not stored twice: its id is
    returned. Leakage columns left out of ``row`` take their defaults (none)."""
    # Counts are compared too: an evaluation stored before the leakage guard carries
    # the defaults whatever it scored, and must not stand in for a flagged one.
    row = {"leakage": False, "leaked_materials": 0, "ancestor_val_materials": 0, **row}
    same = session.execute(
        text(
            "SELECT id FROM evaluations WHERE model_version_id = :model_version_id"
            " AND training_set_id IS NOT DISTINCT FROM :training_set_id"
            " AND split IS NOT DISTINCT FROM :split AND kind = :kind"
            " AND parameters = CAST(:parameters AS jsonb) AND metrics = CAST(:metrics AS jsonb)"
            " AND per_element = CAST(:per_element AS jsonb)"
            " AND per_spacegroup = CAST(:per_spacegroup AS jsonb)"
            " AND leaked_materials = :leaked_materials"
            " AND ancestor_val_materials = :ancestor_val_materials ORDER BY id LIMIT 1"
        ),
        {
            **row,
            **{
                k: json.dumps(row[k])
                for k in ("parameters", "metrics", "per_element", "per_spacegroup")
            },
        },
    ).scalar()
    if same is not None:
        return int(same)
    return session.execute(insert(Evaluation).values(**row).returning(Evaluation.id)).scalar_one()
