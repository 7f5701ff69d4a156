"""How far a model's relaxations are from DFT: the thesis's Table 4.1 figures (energy
and area after relaxation), per element and per space group, stored in ``evaluations``
and, on request, written as a report folder (Markdown and PNG plots)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.metrics import relaxation_metrics
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries import evaluations as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.services import models as registry
from atlas2d.services.relax import RelaxRequest, relaxation_parameters

GROUP_COLUMNS = [
    "n_materials",
    "convergence_rate",
    "energy_mae_mev_per_atom",
    "energy_median_ae_mev_per_atom",
    "area_mae_x100",
    "area_median_ae_x100",
]


@dataclass
class RelaxationEvaluation:
    """A stored evaluation of a model's relaxations against DFT.

    ``per_material`` has one row per material (DFT and ML energy per atom in eV/atom,
    areas in Å²/atom); ``per_element`` and ``per_spacegroup`` the figures per group.
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


def _metrics(frame: pd.DataFrame) -> dict[str, Any]:
    return relaxation_metrics(
        frame["dft_energy_per_atom"].to_numpy(float),
        frame["ml_energy_per_atom"].to_numpy(float),
        frame["dft_area_per_atom"].to_numpy(float),
        frame["ml_area_per_atom"].to_numpy(float),
        frame["converged"].fillna(False).to_numpy(bool),
    )


def _grouped(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = [{column: key, **_metrics(group)} for key, group in frame.groupby(column, sort=True)]
    table = pd.DataFrame(
        rows, columns=[column, *GROUP_COLUMNS, "n_converged", "energy_r2", "area_r2"]
    )
    return table[[column, *GROUP_COLUMNS]].sort_values("energy_mae_mev_per_atom", ascending=False)


def _records(table: pd.DataFrame, key: str) -> dict[str, Any]:
    return {
        str(row[key]): {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in row.items()
            if k != key
        }
        for row in table.to_dict("records")
    }


def evaluate_relaxations(
    sessions: sessionmaker[Session],
    model_ref: str,
    training_set: str | None,
    split: str | None,
    request: RelaxRequest | None = None,
    report_dir: Path | None = None,
) -> RelaxationEvaluation:
    """Compare a model's stored relaxations (made with ``request``'s parameters) with each
    material's DFT-relaxed final frame, store the evaluation, optionally write a report.

    Raises:
        NotFound: no such model or training set. InvalidInput: nothing relaxed yet.
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
        metrics = _metrics(errors)
        by_element = _grouped(
            errors.explode("elements").rename(columns={"elements": "element"}), "element"
        )
        errors["spacegroup"] = errors["spacegroup_number"].map(
            lambda n: "unknown" if pd.isna(n) else str(int(n))
        )
        by_spacegroup = _grouped(errors, "spacegroup")
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
                "metrics": metrics,
                "per_element": _records(by_element, "element"),
                "per_spacegroup": _records(by_spacegroup, "spacegroup"),
            },
        )
    evaluation = RelaxationEvaluation(
        id=evaluation_id,
        model=model.label,
        training_set=training_set,
        split=split,
        parameters=parameters,
        metrics=metrics,
        per_element=by_element,
        per_spacegroup=by_spacegroup,
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
    )
    if report_dir is not None:
        evaluation.report_dir = write_report(evaluation, report_dir)
    return evaluation


THESIS_COLUMNS = [
    ("energy_mae_mev_per_atom", "E MAE (meV/atom)"),
    ("energy_median_ae_mev_per_atom", "E median (meV/atom)"),
    ("energy_r2", "E R²"),
    ("area_mae_x100", "area MAE ×100 (Å²/atom)"),
    ("area_median_ae_x100", "area median ×100 (Å²/atom)"),
    ("area_r2", "area R²"),
    ("convergence_rate", "converged"),
    ("n_materials", "materials"),
]


def thesis_table(evaluations: list[RelaxationEvaluation]) -> pd.DataFrame:
    """One row per model with the thesis's Table 4.1 columns (units in the headers)."""
    return pd.DataFrame(
        [
            {"model": e.model, **{label: e.metrics.get(key) for key, label in THESIS_COLUMNS}}
            for e in evaluations
        ]
    )


def markdown_table(table: pd.DataFrame) -> str:
    """A Markdown table of a DataFrame (floats to 4 significant digits, missing as –)."""

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "–"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def write_report(evaluation: RelaxationEvaluation, out_dir: Path) -> Path:
    """``report.md``, parity plots of energy and area, periodic-table heatmaps of the
    per-element energy and area MAE. Needs the ``plot`` extra (matplotlib)."""
    from atlas2d.analysis import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    data = evaluation.per_material
    m = evaluation.metrics
    name = evaluation.model
    plots.parity_plot(
        data["dft_energy_per_atom"],
        data["ml_energy_per_atom"],
        out_dir / "parity_energy.png",
        title=f"{name}: relaxed energy (MAE in meV/atom)",
        unit="eV/atom",
        mae=m["energy_mae_mev_per_atom"],
    )
    plots.parity_plot(
        data["dft_area_per_atom"],
        data["ml_area_per_atom"],
        out_dir / "parity_area.png",
        title=f"{name}: relaxed area (MAE in Å²/atom)",
        unit="Å²/atom",
        mae=m["area_mae_a2_per_atom"],
    )
    per_element = evaluation.per_element.set_index("element")
    plots.periodic_table_heatmap(
        per_element["energy_mae_mev_per_atom"].to_dict(),
        out_dir / "elements_energy_mae.png",
        title=f"{name}: energy MAE after relaxation per element",
        unit="meV/atom",
    )
    plots.periodic_table_heatmap(
        per_element["area_mae_x100"].to_dict(),
        out_dir / "elements_area_mae.png",
        title=f"{name}: area MAE ×100 after relaxation per element",
        unit="Å²/atom × 100",
    )
    scope = (
        f"{evaluation.training_set}/{evaluation.split}"
        if evaluation.training_set
        else "selected materials"
    )
    text = f"""# Relaxation evaluation of {evaluation.model} ({scope})

Evaluation {evaluation.id}. Relaxation: {evaluation.parameters}. Reference: each
material's DFT-relaxed final frame. A material counts for every element it contains.

{markdown_table(thesis_table([evaluation]))}

Energy MAE {m["energy_mae_mev_per_atom"]:.4g} meV/atom, area MAE {m["area_mae_a2_per_atom"]:.4g} Å²/atom
(×100: {m["area_mae_x100"]:.4g}), {m["n_converged"]} of {m["n_materials"]} relaxations converged.

![energy parity](parity_energy.png) ![area parity](parity_area.png)

## Per element

![energy MAE per element](elements_energy_mae.png)

![area MAE per element](elements_area_mae.png)

{markdown_table(evaluation.per_element)}

## Per space group

{markdown_table(evaluation.per_spacegroup)}
"""
    (out_dir / "report.md").write_text(text, encoding="utf-8")
    return out_dir
