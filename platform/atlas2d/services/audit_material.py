"""``audit material``: everything about one material, from the files it came from to
the models trained on it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import NotFound
from atlas2d.queries import audits_material as queries
from atlas2d.queries.materials import MaterialRow, material_row
from atlas2d.queries.provenance import tainted_models
from atlas2d.vocabulary import DFT


@dataclass
class MaterialAudit:
    """One material's provenance (column names carry units; see
    ``queries.audits_material``).

    Attributes:
        material: its own columns.
        sources: the files its relaxations and energy entries came from, with their
            retraction.
        dft_relaxations, ml_relaxations: its relaxations (ML ones with their model).
        stability: its e_above_hull per energy source (DFT first).
        training_sets: the sets holding its frames and its split in each.
        models: the versions trained on it, directly or through an ancestor, with its
            split there; ``tainted`` when a retracted source reached the version.
        campaign_decisions: what active learning decided about it.
    """

    material: MaterialRow
    sources: pd.DataFrame
    dft_relaxations: pd.DataFrame
    ml_relaxations: pd.DataFrame
    stability: pd.DataFrame
    training_sets: pd.DataFrame
    models: pd.DataFrame
    campaign_decisions: pd.DataFrame


def audit_material(sessions: sessionmaker[Session], key: str) -> MaterialAudit:
    """One material's provenance by key, read in one transaction.

    Raises:
        NotFound: no material has this key.
    """
    with sessions.begin() as session:
        material = material_row(session, key)
        if material is None:
            raise NotFound(
                f"No material has the key {key!r}; `atlas2d materials list` shows the keys."
            )
        models = queries.material_models(session, material.id)
        models.insert(3, "tainted", models.model_version_id.isin(list(tainted_models(session))))
        return MaterialAudit(
            material=material,
            sources=queries.material_sources(session, material.id),
            dft_relaxations=queries.material_relaxations(session, material.id, DFT),
            ml_relaxations=queries.material_relaxations(session, material.id, "ml"),
            stability=queries.material_stability(session, material.id),
            training_sets=queries.material_training_sets(session, material.id),
            models=models,
            campaign_decisions=queries.material_campaign_decisions(session, material.id),
        )
