"""How well a model predicts stability: its hull results against DFT's, stored in
``evaluations`` (kind ``stability``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.stability import score_stability
from atlas2d.errors import InvalidInput
from atlas2d.queries import evaluations as evaluation_queries
from atlas2d.queries import stability as queries
from atlas2d.services import models as registry
from atlas2d.services.leakage import Leakage, check_leakage

PER_MATERIAL_COLUMNS = [
    "material_key",
    "formula",
    "dft_e_above_hull",
    "dft_hull_distance",
    "ml_e_above_hull",
]


@dataclass
class StabilityEvaluation:
    """A stored stability evaluation; ``per_material`` has both sides in eV/atom;
    ``leakage`` the materials the model or an ancestor trained or validated on."""

    id: int
    model: str
    threshold_ev_per_atom: float
    metrics: dict[str, Any]
    per_element: pd.DataFrame
    per_material: pd.DataFrame
    leakage: Leakage = field(default_factory=Leakage)


def evaluate_stability(
    sessions: sessionmaker[Session],
    model_ref: str,
    threshold: float = 0.0,
    allow_leakage: bool = False,
) -> StabilityEvaluation:
    """Compare a model's stability results with DFT's on the materials that have both.

    Args:
        threshold: stable means e_above_hull ≤ threshold (eV/atom).
        allow_leakage: evaluate even materials in a train split of the model or an
            ancestor (``services.leakage``); the evaluation is stored flagged.

    Raises:
        InvalidInput: no material has both results (run ``atlas2d hull update`` for DFT
        and for the model first), or (without ``allow_leakage``) some are leaked;
        nothing is stored.
    """
    with sessions.begin() as session:
        model = registry.resolve(session, model_ref)
        source = model.label
        paired = queries.paired_stability(session, source)
        if paired.empty:
            raise InvalidInput(
                f"No material has stability results from both DFT and {source}: run "
                f"`atlas2d hull update` and `atlas2d hull update --energy {source}` first."
            )
        leakage = check_leakage(session, model, list(paired["material_key"]), allow_leakage)
        scores = score_stability(paired, threshold)
        evaluation_id = evaluation_queries.insert_evaluation(
            session,
            {
                "model_version_id": model.id,
                "training_set_id": None,
                "split": None,
                "kind": "stability",
                "parameters": {
                    "threshold_ev_per_atom": threshold,
                    "energy_source": source,
                    "ml_hull_runs": sorted(int(r) for r in paired["ml_hull_run"].unique()),
                    "dft_hull_runs": sorted(int(r) for r in paired["dft_hull_run"].unique()),
                    "materials": paired["material_key"].tolist(),
                },
                "metrics": scores.metrics,
                "per_element": scores.per_element,
                "per_spacegroup": scores.per_spacegroup,
                **leakage.columns(),
            },
        )
    return StabilityEvaluation(
        evaluation_id,
        source,
        threshold,
        scores.metrics,
        scores.element_table(),
        paired[PER_MATERIAL_COLUMNS],
        leakage,
    )
