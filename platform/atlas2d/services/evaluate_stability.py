"""How well a model predicts stability: its hull results against DFT's, stored in
``evaluations`` (kind ``stability``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.metrics import stability_metrics
from atlas2d.errors import InvalidInput
from atlas2d.queries import evaluations as evaluation_queries
from atlas2d.queries import stability as queries
from atlas2d.services import models as registry

PER_MATERIAL_COLUMNS = [
    "material_key",
    "formula",
    "dft_e_above_hull",
    "dft_hull_distance",
    "ml_e_above_hull",
]
GROUP_COLUMNS = ["n_materials", "precision", "recall", "f1", "e_above_hull_mae_mev_per_atom"]


@dataclass
class StabilityEvaluation:
    """A stored stability evaluation; ``per_material`` has both sides in eV/atom."""

    id: int
    model: str
    threshold_ev_per_atom: float
    metrics: dict[str, Any]
    per_element: pd.DataFrame
    per_material: pd.DataFrame


def _metrics(frame: pd.DataFrame, threshold: float) -> dict[str, Any]:
    return stability_metrics(
        frame["dft_hull_distance"].to_numpy(float),
        frame["ml_e_above_hull"].to_numpy(float),
        threshold,
    )


def evaluate_stability(
    sessions: sessionmaker[Session], model_ref: str, threshold: float = 0.0
) -> StabilityEvaluation:
    """Compare a model's stability results with DFT's on the materials that have both.

    Args:
        threshold: stable means e_above_hull ≤ threshold (eV/atom).

    Raises:
        InvalidInput: no material has both results (run ``atlas2d hull update`` for DFT
        and for the model first).
    """
    with sessions.begin() as session:
        model = registry.resolve(session, model_ref)
        source = registry.label(model)
        paired = queries.paired_stability(session, source)
        if paired.empty:
            raise InvalidInput(
                f"No material has stability results from both DFT and {source}: run "
                f"`atlas2d hull update` and `atlas2d hull update --energy {source}` first."
            )
        metrics = _metrics(paired, threshold)
        rows = [
            {"element": element, **_metrics(group, threshold)}
            for element, group in paired.explode("elements").groupby("elements", sort=True)
        ]
        per_element = pd.DataFrame(rows)[["element", *GROUP_COLUMNS]]
        per_spacegroup = {
            str(int(group_key)) if pd.notna(group_key) else "unknown": _metrics(group, threshold)
            for group_key, group in paired.groupby("spacegroup", dropna=False)
        }
        evaluation_id = evaluation_queries.insert_evaluation(
            session,
            {
                "model_version_id": model["id"],
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
                "metrics": metrics,
                "per_element": {r.pop("element"): r for r in rows},
                "per_spacegroup": per_spacegroup,
            },
        )
    return StabilityEvaluation(
        evaluation_id,
        source,
        threshold,
        metrics,
        per_element.sort_values("e_above_hull_mae_mev_per_atom", ascending=False),
        paired[PER_MATERIAL_COLUMNS],
    )
