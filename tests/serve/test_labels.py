"""How the pages name space groups and metrics (no database)."""

from __future__ import annotations

import math

import pytest

from atlas2d.serve.pages.labels import metric_rows, spacegroup_label


@pytest.mark.parametrize(
    ("number", "label"),
    [
        (164, "P-3m1 (164)"),  # 1T-MoS2
        (187, "P-6m2 (187)"),  # 2H-MoS2
        (2, "P-1 (2)"),
        (11, "P2₁/m (11)"),  # the screw axis as a subscript
        (194.0, "P6₃/mmc (194)"),  # a frame's float column
        (None, ""),
        (math.nan, ""),
    ],
)
def test_spacegroup_label(number: float | None, label: str) -> None:
    assert spacegroup_label(number) == label


def test_metric_rows_fixed_order_units_and_converged_share() -> None:
    metrics = {
        "area_r2": 0.92,
        "energy_r2": 0.94,
        "n_converged": 56,
        "n_materials": 57,
        "convergence_rate": 56 / 57,
        "energy_mae_mev_per_atom": 141.8,
        "area_mae_a2_per_atom": 0.16,
        "custom": 3,
        "per_element": {"Mo": 1},
    }
    rows = metric_rows(metrics, str)
    assert rows == [
        ("materials", "57"),
        ("converged", "56/57 (98%)"),
        ("E MAE (meV/atom)", "141.8"),
        ("E R²", "0.94"),
        ("area MAE (Å²/atom)", "0.16"),
        ("area R²", "0.92"),
        ("custom", "3"),
    ]


def test_metric_rows_rate_alone_is_a_percentage() -> None:
    assert metric_rows({"convergence_rate": 1.0}, str) == [("converged", "100%")]
    assert metric_rows({}, str) == []
