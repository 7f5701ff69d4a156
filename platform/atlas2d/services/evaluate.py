"""How far a model's relaxations are from DFT: the thesis's Table 4.1 figures (energy
and area after relaxation), per element and per space group, stored in ``evaluations``
and, on request, written as a report folder (Markdown and PNG plots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.metrics import score_relaxations, spacegroup_labels, table_records
from atlas2d.analysis.reports import write_relaxation_report
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries import evaluations as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.services import models as registry
from atlas2d.services.leakage import Leakage, check_leakage
from atlas2d.services.relax import RelaxRequest, relaxation_parameters


@dataclass
class RelaxationEvaluation:
    """A stored evaluation of a model's relaxations against DFT.

    ``per_material`` has one row per material (DFT and ML energy per atom in eV/atom,
    areas in Å²/atom); ``per_element`` and ``per_spacegroup`` the figures per group;
    ``leakage`` the materials the model or an ancestor trained or validated on.
    """

    id: int
    model: str
    training_set: str | None
    split: str | None
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    per_element: pd.DataFrame
    per_spacegroup: pd.DataFrame
    per_material: pd.DataFrame
    report_dir: Path | None = None
    leakage: Leakage = field(default_factory=Leakage)


def evaluate_relaxations(
    sessions: sessionmaker[Session],
    model_ref: str,
    training_set: str | None,
    split: str | None,
    request: RelaxRequest | None = None,
    report_dir: Path | None = None,
    allow_leakage: bool = False,
) -> RelaxationEvaluation:
    """Compare a model's stored relaxations (made with ``request``'s parameters) with each
    material's DFT-relaxed final frame, store the evaluation, optionally write a report.

    Args:
        allow_leakage: evaluate even materials in a train split of the model or an
            ancestor (``services.leakage``); the evaluation is stored flagged.

    Raises:
        NotFound: no such model or training set. InvalidInput: nothing relaxed yet, or
        (without ``allow_leakage``) leaked materials; nothing is stored.
    """
    parameters = relaxation_parameters(request or RelaxRequest(model_ref))
    with sessions.begin() as session:
        model = registry.resolve(session, model_ref)
        training_set_id = None
        if training_set is not None:
            row = trainset_queries.training_set_row(session, training_set)
            if row is None:
                raise NotFound(
                    f"No training set is named {training_set!r}; `atlas2d trainset list`."
                )
            training_set_id = row.id
        errors = queries.relaxation_errors(session, model.id, parameters, training_set_id, split)
        if errors.empty:
            where = f" on {training_set}/{split}" if training_set else ""
            raise InvalidInput(
                f"Model {model.label} has no stored relaxations{where} with these "
                f"parameters ({parameters}); run `atlas2d relax` first."
            )
        leakage = check_leakage(session, model, list(errors["material_key"]), allow_leakage)
        errors["spacegroup"] = spacegroup_labels(errors["spacegroup_number"])
        scores = score_relaxations(errors)
        evaluation_id = queries.insert_evaluation(
            session,
            {
                "model_version_id": model.id,
                "training_set_id": training_set_id,
                "split": split,
                "kind": "relaxation",
                "parameters": {
                    "relaxation": parameters,
                    "materials": sorted(errors["material_key"]),
                },
                "metrics": scores.metrics,
                "per_element": table_records(scores.per_element, "element"),
                "per_spacegroup": table_records(scores.per_spacegroup, "spacegroup"),
                **leakage.columns(),
            },
        )
    evaluation = RelaxationEvaluation(
        id=evaluation_id,
        model=model.label,
        training_set=training_set,
        split=split,
        parameters=parameters,
        metrics=scores.metrics,
        per_element=scores.per_element,
        per_spacegroup=scores.per_spacegroup,
        per_material=errors[
            [
                "material_key",
                "formula",
                "spacegroup",
                "converged",
                "n_steps",
                "dft_energy_per_atom",
                "ml_energy_per_atom",
                "dft_area_per_atom",
                "ml_area_per_atom",
            ]
        ],
        leakage=leakage,
    )
    if report_dir is not None:
        evaluation.report_dir = write_relaxation_report(evaluation, report_dir)
    return evaluation
