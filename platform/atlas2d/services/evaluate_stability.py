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
from atlas2d.queries.leakage import training_overlap
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
    exclude_trained: bool = False,
) -> StabilityEvaluation:
    """Compare a model's stability results with DFT's on the materials that have both.

    Args:
        threshold: stable means e_above_hull ≤ threshold (eV/atom).
        allow_leakage: evaluate even materials in a train split of the model or an
            ancestor (``services.leakage``); the evaluation is stored flagged.
        exclude_trained: leave those materials out instead (their count is stored in
            the parameters as ``excluded_trained``): a model that relaxed its own
            training materials (the end members of its alloys, say) is scored on the
            others.

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
        excluded = 0
        if exclude_trained:
            overlap = training_overlap(session, model.id, list(paired["material_key"]))
            trained = {s.material_key for s in overlap.leaked}
            excluded = int(paired["material_key"].isin(trained).sum())
            paired = paired[~paired["material_key"].isin(trained)].reset_index(drop=True)
            if paired.empty:
                raise InvalidInput(
                    f"Every material with stability results from both DFT and {source} is "
                    "in a train split of the model or an ancestor: nothing is left to score."
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
                    "excluded_trained": excluded,
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
