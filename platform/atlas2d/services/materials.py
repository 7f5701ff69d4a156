"""Material listings and details, as DataFrames and dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import NotFound
from atlas2d.queries import materials as queries
from atlas2d.queries.materials import MaterialRow


@dataclass
class MaterialDetail:
    """A material with its relaxations and energy entries."""

    material: MaterialRow
    relaxations: pd.DataFrame
    entries: pd.DataFrame


def list_materials(
    sessions: sessionmaker[Session],
    chemsys: str | None = None,
    formula: str | None = None,
    dimensionality: int | None = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """Materials matching the filters (see ``queries.materials.list_materials``)."""
    with sessions.begin() as session:
        return queries.list_materials(session, chemsys, formula, dimensionality, limit)


def count_materials(
    sessions: sessionmaker[Session],
    chemsys: str | None = None,
    formula: str | None = None,
    dimensionality: int | None = None,
) -> int:
    """How many materials match the filters, whatever the listing's limit."""
    with sessions.begin() as session:
        return queries.count_materials(session, chemsys, formula, dimensionality)


def show_material(sessions: sessionmaker[Session], key: str) -> MaterialDetail:
    """One material by key.

    Raises:
        NotFound: no material has this key.
    """
    with sessions.begin() as session:
        material = queries.material_row(session, key)
        if material is None:
            raise NotFound(
                f"No material has the key {key!r}; `atlas2d materials list` shows the keys."
            )
        return MaterialDetail(
            material=material,
            relaxations=queries.material_relaxations(session, material.id),
            entries=queries.material_entries(session, material.id),
        )
