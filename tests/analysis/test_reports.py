"""Relaxation scores per group and the report tables, on hand-made frames (no database)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from atlas2d.analysis.metrics import score_relaxations, spacegroup_labels, table_records
from atlas2d.analysis.reports import (
    comparison_table,
    markdown_table,
    readable_group_table,
    thesis_table,
)


def _errors() -> pd.DataFrame:
    """Three materials: MoS2 (10 meV/atom off), WS2 (30), MoSe2 (20, not converged)."""
    frame = pd.DataFrame(
        {
            "material_key": ["mos2", "ws2", "mose2"],
            "formula": ["MoS2", "WS2", "MoSe2"],
            "elements": [["Mo", "S"], ["S", "W"], ["Mo", "Se"]],
            "spacegroup_number": [187, 187, None],
            "converged": [True, True, False],
            "n_steps": [10, 12, 1000],
            "dft_energy_per_atom": [-7.0, -8.0, -6.0],
            "ml_energy_per_atom": [-7.01, -7.97, -6.02],
            "dft_area_per_atom": [3.0, 3.1, 3.2],
            "ml_area_per_atom": [3.01, 3.1, 3.18],
        }
    )
    frame["spacegroup"] = spacegroup_labels(frame["spacegroup_number"])
    return frame


def test_a_material_counts_for_every_element_it_contains() -> None:
    scores = score_relaxations(_errors())
    by_element = scores.per_element.set_index("element")
    assert by_element.loc["Mo", "n_materials"] == 2
    assert by_element.loc["Mo", "energy_mae_mev_per_atom"] == pytest.approx(15.0)
    assert by_element.loc["S", "energy_mae_mev_per_atom"] == pytest.approx(20.0)
    assert by_element.loc["W", "energy_mae_mev_per_atom"] == pytest.approx(30.0)
    assert by_element.loc["Se", "convergence_rate"] == 0.0
    # Largest energy MAE first, as the report lists them.
    order = list(scores.per_element["element"])
    assert (order[0], order[-1]) == ("W", "Mo")  # S and Se tie at 20 meV/atom
    assert scores.metrics["n_materials"] == 3
    assert scores.metrics["energy_mae_mev_per_atom"] == pytest.approx(20.0)
    assert scores.metrics["area_mae_x100"] == pytest.approx(1.0)


def test_a_missing_space_group_is_its_own_group() -> None:
    scores = score_relaxations(_errors())
    groups = scores.per_spacegroup.set_index("spacegroup")
    assert sorted(groups.index) == ["187", "unknown"]
    assert groups.loc["187", "n_materials"] == 2
    assert groups.loc["unknown", "energy_mae_mev_per_atom"] == pytest.approx(20.0)


def test_records_are_json_ready() -> None:
    table = pd.DataFrame({"element": ["Mo", "S"], "mae": [1.5, float("nan")]})
    assert table_records(table, "element") == {"Mo": {"mae": 1.5}, "S": {"mae": None}}


@dataclass
class _Evaluation:
    model: str
    metrics: dict[str, Any]
    training_set: str = "set"
    split: str = "test"
    per_material: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class _Stability:
    model: str
    per_material: pd.DataFrame


def test_thesis_table_has_units_in_its_headers_and_markdown_rounds() -> None:
    evaluation = _Evaluation("m:1", score_relaxations(_errors()).metrics)
    table = thesis_table([evaluation])
    assert list(table.columns)[:3] == ["model", "E MAE (meV/atom)", "E median (meV/atom)"]
    text = markdown_table(table)
    lines = text.splitlines()
    assert lines[0].startswith("| model | E MAE (meV/atom) |")
    assert "| m:1 | 20 | 20 |" in lines[2]
    assert markdown_table(pd.DataFrame({"x": [math.nan, None, 1 / 3]})).splitlines()[2:] == [
        "| – |",
        "| – |",
        "| 0.3333 |",
    ]


def test_comparison_scores_stability_on_the_evaluated_materials_only() -> None:
    errors = _errors()
    evaluation = _Evaluation("m:1", score_relaxations(errors).metrics, per_material=errors.iloc[:2])
    # A third material the evaluation did not relax is a false "stable" call: left out.
    stability = _Stability(
        "m:1",
        pd.DataFrame(
            {
                "material_key": ["mos2", "ws2", "mose2"],
                "dft_hull_distance": [-0.01, 0.2, 0.3],
                "ml_e_above_hull": [-0.02, 0.1, -0.1],
            }
        ),
    )
    (row,) = comparison_table([evaluation], [stability]).to_dict("records")
    assert row["model"] == "m:1" and row["materials"] == "set/test" and row["n"] == 3
    assert row["converged"] == "2/3"  # MoSe2 did not converge: a count, not a fraction
    assert row["stable F1"] == pytest.approx(1.0)
    assert row["E_hull MAE (meV/atom)"] == pytest.approx(np.mean([10.0, 100.0]))


def test_tables_for_people_count_converged_relaxations_and_carry_units() -> None:
    """`converged` reads "n/M", not a rate of 1; per-element headers carry units."""
    errors = _errors()
    evaluation = _Evaluation("m:1", score_relaxations(errors).metrics)
    table = thesis_table([evaluation])
    n = len(errors)
    n_converged = int(errors["converged"].sum())
    assert table.loc[0, "converged"] == f"{n_converged}/{n}"
    assert table.loc[0, "materials"] == n
    groups = pd.DataFrame(
        {
            "element": ["Mo", "S"],
            "n_materials": [4, 3],
            "convergence_rate": [0.75, 1.0],
            "energy_mae_mev_per_atom": [12.5, 3.0],
            "energy_median_ae_mev_per_atom": [10.0, 2.0],
            "area_mae_x100": [1.5, 0.5],
            "area_median_ae_x100": [1.0, 0.25],
        }
    )
    readable = readable_group_table(groups, "element")
    assert list(readable.columns) == [
        "element",
        "materials",
        "converged",
        "E MAE (meV/atom)",
        "E median (meV/atom)",
        "area MAE ×100 (Å²/atom)",
        "area median ×100 (Å²/atom)",
    ]
    assert list(readable["converged"]) == ["3/4", "3/3"]
    assert list(readable["E MAE (meV/atom)"]) == [12.5, 3.0]
