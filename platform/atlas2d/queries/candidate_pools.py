"""The ``candidate_pools`` and ``pool_candidates`` tables: pools, their members and the
generated structures members start from. Functions take ``session`` first and never
commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, aliased

from atlas2d.db.models import CandidatePool, Material, PoolCandidate


@dataclass(frozen=True)
class PoolRecord:
    """A pool's own columns."""

    id: int
    name: str
    generator: str
    parameters: dict[str, Any]
    counts: dict[str, Any]
    duplicates: list[Any]
    n_candidates: int
    created_at: datetime


def pool_row(session: Session, name: str) -> PoolRecord | None:
    """The pool of this name, or None."""
    row = session.execute(select(CandidatePool).where(CandidatePool.name == name)).scalar()
    if row is None:
        return None
    return PoolRecord(
        row.id,
        row.name,
        row.generator,
        row.parameters,
        row.counts,
        row.duplicates,
        row.n_candidates,
        row.created_at,
    )


def pool_name(session: Session, pool_id: int) -> str:
    """The name of a stored pool."""
    return str(session.get_one(CandidatePool, pool_id).name)


def insert_pool(
    session: Session,
    name: str,
    generator: str,
    parameters: dict[str, Any],
    counts: dict[str, int],
    duplicates: list[dict[str, Any]],
    n_candidates: int,
) -> int:
    """Insert a pool; its id. A name already taken raises IntegrityError."""
    return int(
        session.execute(
            insert(CandidatePool)
            .values(
                name=name,
                generator=generator,
                parameters=parameters,
                counts=counts,
                duplicates=duplicates,
                n_candidates=n_candidates,
            )
            .returning(CandidatePool.id)
        ).scalar_one()
    )


def insert_candidates(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert members: dicts with pool_id, material_id, parent_material_id, substitution,
    score, n_sites, species (n,), cell (3, 3) Å, positions (n, 3) Å."""
    if rows:
        session.execute(insert(PoolCandidate), rows)


def list_pools(session: Session) -> pd.DataFrame:
    """One row per pool: name, generator, candidates, counts per outcome, created."""
    result = session.execute(
        text(
            "SELECT name, generator, n_candidates, counts, created_at FROM candidate_pools"
            " ORDER BY name"
        )
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))


@dataclass(frozen=True)
class CandidateStructure:
    """A pool member and the generated structure it starts from.

    Attributes:
        species: atomic numbers (n,); cell: (3, 3) Å, rows; positions: (n, 3) Å.
    """

    material_id: int
    material_key: str
    formula: str
    dimensionality: int | None
    parent_key: str | None
    substitution: dict[str, Any]
    score: float
    species: np.ndarray
    cell: np.ndarray
    positions: np.ndarray


def _candidates(session: Session, where: Any) -> list[CandidateStructure]:
    parent = aliased(Material)
    rows = session.execute(
        select(
            Material.id,
            Material.key,
            Material.formula,
            Material.dimensionality,
            parent.key,
            PoolCandidate.substitution,
            PoolCandidate.score,
            PoolCandidate.species,
            PoolCandidate.cell,
            PoolCandidate.positions,
        )
        .join(PoolCandidate, PoolCandidate.material_id == Material.id)
        .outerjoin(parent, parent.id == PoolCandidate.parent_material_id)
        .where(where)
        .order_by(Material.key)
    )
    return [CandidateStructure(*row) for row in rows]


def pool_candidates(session: Session, pool_id: int) -> list[CandidateStructure]:
    """The members of a pool with their structures, by material key."""
    return _candidates(session, PoolCandidate.pool_id == pool_id)


def candidates_by_formula(session: Session, formulas: Sequence[str]) -> list[CandidateStructure]:
    """Members of any pool with one of these reduced formulas (the same material may be
    listed once per pool)."""
    return _candidates(session, Material.formula.in_(list(formulas)))


def candidates_by_keys(session: Session, keys: Sequence[str]) -> list[CandidateStructure]:
    """Members of any pool that are these materials (once per pool holding one)."""
    return _candidates(session, Material.key.in_(list(keys)))


def candidate_summary(session: Session, pool_id: int) -> pd.DataFrame:
    """The members of a pool: key, formula, parent, substitution, score, sites."""
    result = session.execute(
        text(
            "SELECT m.key AS material_key, m.formula, p.key AS parent_key,"
            " c.substitution, c.score, c.n_sites"
            " FROM pool_candidates c JOIN materials m ON m.id = c.material_id"
            " LEFT JOIN materials p ON p.id = c.parent_material_id"
            " WHERE c.pool_id = :pool_id ORDER BY c.score DESC, m.key"
        ),
        {"pool_id": pool_id},
    )
    return pd.DataFrame(result.all(), columns=list(result.keys()))
