"""What the model pages show: the registry with each version's lineage, training set
and test metrics; one version's lineage, metrics, stored evaluations and the pairs
behind its parity plots (stored frame predictions, relaxations, stability)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from atlas2d.queries.model_versions import ModelVersionRef, list_versions
from atlas2d.queries.provenance import LineageStep, lineage
from atlas2d.queries.stability import paired_stability
from atlas2d.queries.tabular import query_frame

MAX_PARITY_POINTS = 5000
"""The most pairs one parity plot draws (the first by id)."""


@dataclass(frozen=True)
class RegistryRow:
    """One version in the registry table.

    Attributes:
        lineage: its parent chain, root first (``NAME:VERSION``).
        test_metrics: ``metrics["test"]`` (units in the keys), empty without one.
    """

    model: ModelVersionRef
    lineage: list[str]
    test_metrics: dict[str, Any]


def registry(session: Session) -> list[RegistryRow]:
    """Every registered version, by name and version."""
    versions = list_versions(session)
    by_id = {v.id: v for v in versions}
    rows = []
    for version in versions:
        chain: list[str] = []
        parent = version.parent_id
        while parent is not None and parent in by_id and len(chain) < len(by_id):
            chain.append(by_id[parent].label)
            parent = by_id[parent].parent_id
        test = version.metrics.get("test")
        rows.append(RegistryRow(version, chain[::-1], test if isinstance(test, dict) else {}))
    return rows


@dataclass(frozen=True)
class ModelPage:
    """One version's page.

    Attributes:
        lineage: the version first, its root last.
        evaluations: stored evaluations, newest first (metrics as dicts).
        direct: DFT and predicted energy per atom (eV/atom) of stored frame predictions.
        relaxed: DFT and ML final energy per atom (eV/atom) of its relaxations.
        stability: DFT and ML e_above_hull (meV/atom) where both hulls hold a material.
    """

    model: ModelVersionRef
    lineage: list[LineageStep]
    evaluations: pd.DataFrame
    direct: pd.DataFrame
    relaxed: pd.DataFrame
    stability: pd.DataFrame


def model_page(session: Session, model: ModelVersionRef) -> ModelPage:
    """The page of ``model`` (resolved by the caller)."""
    limit = {"id": model.id, "limit": MAX_PARITY_POINTS}
    stability = paired_stability(session, model.label)
    return ModelPage(
        model=model,
        lineage=lineage(session, model.id),
        evaluations=query_frame(
            session,
            "SELECT e.id, e.kind, ts.name AS training_set, e.split, e.metrics, e.leakage,"
            " e.created_at FROM evaluations e"
            " LEFT JOIN training_sets ts ON ts.id = e.training_set_id"
            " WHERE e.model_version_id = :id ORDER BY e.id DESC",
            {"id": model.id},
        ),
        direct=query_frame(
            session,
            "SELECT f.energy / f.n_sites AS dft_ev_per_atom,"
            " p.energy / p.n_sites AS predicted_ev_per_atom"
            " FROM frame_predictions p JOIN frames f ON f.id = p.frame_id"
            " WHERE p.model_version_id = :id ORDER BY p.frame_id LIMIT :limit",
            limit,
        ),
        relaxed=query_frame(
            session,
            "SELECT dft_energy_per_atom AS dft_ev_per_atom, ml_energy_per_atom AS ml_ev_per_atom"
            " FROM relaxation_errors WHERE model_version_id = :id"
            " ORDER BY relaxation_id LIMIT :limit",
            limit,
        ),
        stability=pd.DataFrame(
            {
                "dft_mev_per_atom": 1000 * stability["dft_e_above_hull"].astype(float),
                "ml_mev_per_atom": 1000 * stability["ml_e_above_hull"].astype(float),
            }
        ),
    )
