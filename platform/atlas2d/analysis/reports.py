"""Tables and report folders of relaxation evaluations: the thesis's Table 4.1 columns,
Markdown tables, and a folder with ``report.md`` and its parity plots and
periodic-table maps (plots need the ``plot`` extra, matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from atlas2d.analysis.metrics import stability_metrics

THESIS_COLUMNS = [
    ("energy_mae_mev_per_atom", "E MAE (meV/atom)"),
    ("energy_median_ae_mev_per_atom", "E median (meV/atom)"),
    ("energy_r2", "E R²"),
    ("area_mae_x100", "area MAE ×100 (Å²/atom)"),
    ("area_median_ae_x100", "area median ×100 (Å²/atom)"),
    ("area_r2", "area R²"),
]
"""(metric key, column header with its unit) of the thesis's Table 4.1; then
``converged`` ("n/M") and ``materials``."""

GROUP_COLUMNS = [
    ("n_materials", "materials"),
    ("energy_mae_mev_per_atom", "E MAE (meV/atom)"),
    ("energy_median_ae_mev_per_atom", "E median (meV/atom)"),
    ("area_mae_x100", "area MAE ×100 (Å²/atom)"),
    ("area_median_ae_x100", "area median ×100 (Å²/atom)"),
]
"""(column of a per-element or per-space-group table, header with its unit)."""


def converged_text(n_converged: Any, n_materials: Any) -> str | None:
    """``"19/19"``: converged relaxations of all, or None when a count is missing."""
    if n_converged is None or n_materials is None:
        return None
    return f"{int(n_converged)}/{int(n_materials)}"


class ModelMetrics(Protocol):
    """A model's label (``NAME:VERSION``) and its relaxation metrics."""

    model: str
    metrics: dict[str, Any]


class LeakageNotes(Protocol):
    """What an evaluation's materials share with the model's training, as text."""

    def notes(self, n_materials: int) -> list[str]:
        """One line per kind found (leaked, ancestor val); none when held out."""
        ...


class RelaxationReport(ModelMetrics, Protocol):
    """What a relaxation report shows: an evaluation, its groups and per-material rows
    (``per_material``: dft/ml energy per atom in eV/atom and area per atom in Å²/atom)
    and its leakage."""

    id: int
    training_set: str | None
    split: str | None
    parameters: dict[str, Any]
    per_element: pd.DataFrame
    per_spacegroup: pd.DataFrame
    per_material: pd.DataFrame

    @property
    def leakage(self) -> LeakageNotes: ...


class StabilityReport(Protocol):
    """A model's stability results beside DFT's (``per_material``: material_key,
    dft_hull_distance and ml_e_above_hull in eV/atom)."""

    model: str
    per_material: pd.DataFrame


def thesis_table(evaluations: Sequence[ModelMetrics]) -> pd.DataFrame:
    """One row per model with the thesis's Table 4.1 columns (units in the headers)."""
    return pd.DataFrame(
        [
            {
                "model": e.model,
                **{label: e.metrics.get(key) for key, label in THESIS_COLUMNS},
                "converged": converged_text(
                    e.metrics.get("n_converged"), e.metrics.get("n_materials")
                ),
                "materials": e.metrics.get("n_materials"),
            }
            for e in evaluations
        ]
    )


def readable_group_table(groups: pd.DataFrame, group: str) -> pd.DataFrame:
    """A per-element or per-space-group table (``RELAXATION_GROUP_COLUMNS`` by
    ``group``) for people: headers with units, ``converged`` as "n/M"."""
    table = pd.DataFrame({group: groups[group]})
    for column, label in GROUP_COLUMNS:
        table[label] = groups[column]
    converged = (groups["convergence_rate"] * groups["n_materials"]).round()
    table.insert(
        2,
        "converged",
        [converged_text(c, n) for c, n in zip(converged, groups["n_materials"], strict=True)],
    )
    return table


def settings_text(settings: dict[str, Any]) -> str:
    """Settings as ``name value`` pairs joined by commas (units are in the names), e.g.
    ``optimizer FIRE, fmax_ev_per_a 0.1, max_steps 1000``: readable in a report, unlike
    a Python dict."""
    return ", ".join(f"{name} {value}" for name, value in settings.items())


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


def write_relaxation_report(evaluation: RelaxationReport, out_dir: Path) -> Path:
    """``report.md``, parity plots of energy and area, periodic-table heatmaps of the
    per-element energy and area MAE, in ``out_dir`` (created); returns ``out_dir``."""
    from atlas2d.analysis import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    data = evaluation.per_material
    m = evaluation.metrics
    name = evaluation.model
    plots.parity_plot(
        data["dft_energy_per_atom"],
        data["ml_energy_per_atom"],
        out_dir / "parity_energy.png",
        title=f"{name}: relaxed energy per atom",
        unit="eV/atom",
        mae=m["energy_mae_mev_per_atom"],
        mae_unit="meV/atom",
    )
    plots.parity_plot(
        data["dft_area_per_atom"],
        data["ml_area_per_atom"],
        out_dir / "parity_area.png",
        title=f"{name}: relaxed area per atom",
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
    leakage = "".join(f"\n**{line}.**\n" for line in evaluation.leakage.notes(len(data)))
    text = f"""# Relaxation evaluation of {evaluation.model} ({scope})

Evaluation {evaluation.id}. Relaxation: {settings_text(evaluation.parameters)}. Reference: each
material's DFT-relaxed final frame. A material counts for every element it contains.
{leakage}
{markdown_table(thesis_table([evaluation]))}

Energy MAE {m["energy_mae_mev_per_atom"]:.4g} meV/atom, area MAE {m["area_mae_a2_per_atom"]:.4g} Å²/atom
(×100: {m["area_mae_x100"]:.4g}), {m["n_converged"]} of {m["n_materials"]} relaxations converged.

![energy parity](parity_energy.png) ![area parity](parity_area.png)

## Per element

![energy MAE per element](elements_energy_mae.png)

![area MAE per element](elements_area_mae.png)

{markdown_table(readable_group_table(evaluation.per_element, "element"))}

## Per space group

{markdown_table(readable_group_table(evaluation.per_spacegroup, "spacegroup"))}
"""
    (out_dir / "report.md").write_text(text, encoding="utf-8")
    return out_dir


def comparison_table(
    evaluations: Sequence[RelaxationReport], stability: Sequence[StabilityReport]
) -> pd.DataFrame:
    """One row per (model, evaluated set): the thesis's relaxation figures, and the
    stability figures on the same materials (Matbench Discovery's metrics), units in
    the headers."""
    by_model = {s.model: s.per_material for s in stability}
    rows = []
    for e in evaluations:
        m = e.metrics
        paired = by_model.get(e.model)
        s: dict[str, Any] = {}
        if paired is not None:
            same = paired[paired["material_key"].isin(e.per_material["material_key"])]
            s = stability_metrics(
                same["dft_hull_distance"].to_numpy(float), same["ml_e_above_hull"].to_numpy(float)
            )
        rows.append(
            {
                "model": e.model,
                "materials": f"{e.training_set}/{e.split}",
                "n": m["n_materials"],
                "converged": f"{m['n_converged']}/{m['n_materials']}",
                "E MAE (meV/atom)": m["energy_mae_mev_per_atom"],
                "E median (meV/atom)": m["energy_median_ae_mev_per_atom"],
                "area MAE ×100 (Å²/atom)": m["area_mae_x100"],
                "E_hull MAE (meV/atom)": s.get("e_above_hull_mae_mev_per_atom"),
                "stable F1": s.get("f1"),
                "DAF": s.get("daf"),
            }
        )
    return pd.DataFrame(rows)
