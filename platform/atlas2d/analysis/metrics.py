"""Errors of direct predictions against reference labels (meV/atom, meV/Å, GPa).

Stress errors count only the components that are training targets: for a 2D layer
the in-plane ones (xx, xy, yx, yy; the z-index components are zeroed in the targets,
so that a layer's cell relaxes in-plane only), for bulk all nine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atlas2d.analysis.units import GPA_PER_EV_PER_A3, MEV_PER_EV

IN_PLANE = np.zeros((3, 3), dtype=bool)
IN_PLANE[:2, :2] = True


@dataclass
class LabelledPrediction:
    """One frame's labels and a model's prediction (eV, eV/Å, eV/Å³ with ASE's sign).

    Attributes:
        n_sites: atoms. dimensionality: 2 for layers, 3 for bulk, None unknown (bulk).
        energy, predicted_energy: total energies (eV).
        forces, predicted_forces: shape (n_sites, 3), eV/Å.
        stress, predicted_stress: shape (3, 3), eV/Å³; stress None when not labelled.
    """

    n_sites: int
    dimensionality: int | None
    energy: float
    predicted_energy: float
    forces: np.ndarray
    predicted_forces: np.ndarray
    stress: np.ndarray | None
    predicted_stress: np.ndarray | None


def direct_errors(frames: Sequence[LabelledPrediction]) -> dict[str, float | int | None]:
    """MAE and RMSE of energy per atom (meV/atom), force components (meV/Å) and stress
    target components (GPa) over ``frames``.

    Returns:
        ``n_frames``, ``energy_mae_mev_per_atom``, ``energy_rmse_mev_per_atom``,
        ``force_mae_mev_per_a``, ``force_rmse_mev_per_a``, ``stress_mae_gpa`` and
        ``stress_rmse_gpa`` (None when no frame has a stress label); NaN-free.
    """
    if not frames:
        return {"n_frames": 0}
    energy_errors = np.array(
        [(f.predicted_energy - f.energy) / f.n_sites for f in frames], dtype=np.float64
    )
    force_errors = np.concatenate(
        [(np.asarray(f.predicted_forces) - np.asarray(f.forces)).ravel() for f in frames]
    )
    stress_errors = [
        (np.asarray(f.predicted_stress) - np.asarray(f.stress))[
            IN_PLANE if f.dimensionality == 2 else np.ones((3, 3), dtype=bool)
        ]
        for f in frames
        if f.stress is not None and f.predicted_stress is not None
    ]
    stress = np.concatenate(stress_errors) * GPA_PER_EV_PER_A3 if stress_errors else None
    return {
        "n_frames": len(frames),
        "energy_mae_mev_per_atom": float(np.abs(energy_errors).mean() * MEV_PER_EV),
        "energy_rmse_mev_per_atom": float(np.sqrt((energy_errors**2).mean()) * MEV_PER_EV),
        "force_mae_mev_per_a": float(np.abs(force_errors).mean() * MEV_PER_EV),
        "force_rmse_mev_per_a": float(np.sqrt((force_errors**2).mean()) * MEV_PER_EV),
        "stress_mae_gpa": None if stress is None else float(np.abs(stress).mean()),
        "stress_rmse_gpa": None if stress is None else float(np.sqrt((stress**2).mean())),
    }


AREA_SCALE = 100.0
"""The thesis reports area errors ×100 (Å²/atom × 100)."""


def r_squared(reference: np.ndarray, predicted: np.ndarray) -> float | None:
    """Coefficient of determination of ``predicted`` against ``reference`` (None for
    fewer than two points or a constant reference)."""
    reference = np.asarray(reference, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if reference.size < 2:
        return None
    total = float(((reference - reference.mean()) ** 2).sum())
    if total == 0.0:
        return None
    return 1.0 - float(((predicted - reference) ** 2).sum()) / total


def relaxation_metrics(
    dft_energy: np.ndarray,
    ml_energy: np.ndarray,
    dft_area: np.ndarray,
    ml_area: np.ndarray,
    converged: np.ndarray,
) -> dict[str, float | int | None]:
    """The thesis's relaxation figures (its Table 4.1) over materials.

    Args:
        dft_energy, ml_energy: relaxed energies per atom (eV/atom), shape (M,).
        dft_area, ml_area: relaxed areas per atom (Å²/atom), shape (M,).
        converged: whether each ML relaxation converged, shape (M,).

    Returns:
        ``n_materials``, ``n_converged``, ``convergence_rate``, energy MAE and median
        absolute error (meV/atom) and R², area MAE and median (Å²/atom, and ×100 as the
        thesis shows them) and R².
    """
    energy_errors = np.abs(np.asarray(ml_energy) - np.asarray(dft_energy)) * MEV_PER_EV
    area_errors = np.abs(np.asarray(ml_area) - np.asarray(dft_area))
    n = int(energy_errors.size)
    if n == 0:
        return {"n_materials": 0}
    return {
        "n_materials": n,
        "n_converged": int(np.sum(converged)),
        "convergence_rate": float(np.mean(converged)),
        "energy_mae_mev_per_atom": float(energy_errors.mean()),
        "energy_median_ae_mev_per_atom": float(np.median(energy_errors)),
        "energy_r2": r_squared(dft_energy, ml_energy),
        "area_mae_a2_per_atom": float(area_errors.mean()),
        "area_median_ae_a2_per_atom": float(np.median(area_errors)),
        "area_mae_x100": float(area_errors.mean() * AREA_SCALE),
        "area_median_ae_x100": float(np.median(area_errors) * AREA_SCALE),
        "area_r2": r_squared(dft_area, ml_area),
    }


RELAXATION_GROUP_COLUMNS = [
    "n_materials",
    "convergence_rate",
    "energy_mae_mev_per_atom",
    "energy_median_ae_mev_per_atom",
    "area_mae_x100",
    "area_median_ae_x100",
]
"""The relaxation figures shown per element and per space group."""


@dataclass(frozen=True)
class RelaxationScores:
    """A model's relaxations against DFT, overall and per group.

    Attributes:
        metrics: :func:`relaxation_metrics` over every material.
        per_element: element and :data:`RELAXATION_GROUP_COLUMNS`, one row per element
            (a material counts for every element it contains), largest energy MAE first.
        per_spacegroup: ``spacegroup`` (number, or ``unknown``) and the same columns.
    """

    metrics: dict[str, Any]
    per_element: pd.DataFrame
    per_spacegroup: pd.DataFrame


def _frame_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    return relaxation_metrics(
        frame["dft_energy_per_atom"].to_numpy(float),
        frame["ml_energy_per_atom"].to_numpy(float),
        frame["dft_area_per_atom"].to_numpy(float),
        frame["ml_area_per_atom"].to_numpy(float),
        frame["converged"].fillna(False).to_numpy(bool),
    )


def _grouped(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = [
        {column: key, **_frame_metrics(group)} for key, group in frame.groupby(column, sort=True)
    ]
    table = pd.DataFrame(
        rows, columns=[column, *RELAXATION_GROUP_COLUMNS, "n_converged", "energy_r2", "area_r2"]
    )
    return table[[column, *RELAXATION_GROUP_COLUMNS]].sort_values(
        "energy_mae_mev_per_atom", ascending=False
    )


def spacegroup_labels(numbers: pd.Series) -> pd.Series:
    """Space group numbers as text, ``unknown`` where missing."""
    return numbers.map(lambda n: "unknown" if pd.isna(n) else str(int(n)))


def score_relaxations(errors: pd.DataFrame) -> RelaxationScores:
    """The thesis's relaxation figures, overall, per element and per space group.

    Args:
        errors: one row per material: dft_energy_per_atom and ml_energy_per_atom
            (eV/atom), dft_area_per_atom and ml_area_per_atom (Å²/atom), converged,
            elements (list of symbols), spacegroup (text, see :func:`spacegroup_labels`).
    """
    return RelaxationScores(
        _frame_metrics(errors),
        _grouped(errors.explode("elements").rename(columns={"elements": "element"}), "element"),
        _grouped(errors, "spacegroup"),
    )


def table_records(table: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    """{row's ``key`` value: the row's other values}, non-finite floats as None (JSON)."""
    return {
        str(row[key]): {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v)
            for k, v in row.items()
            if k != key
        }
        for row in table.to_dict("records")
    }


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def stability_metrics(
    dft_distance: np.ndarray, ml_e_above_hull: np.ndarray, threshold: float = 0.0
) -> dict[str, float | int | None]:
    """How well a model classifies stability, as Matbench Discovery measures it.

    Args:
        dft_distance: DFT distance to the hull of the other materials (eV/atom), (M,).
        ml_e_above_hull: the model's e_above_hull against that same DFT hull (eV/atom), (M,).
        threshold: stable means ≤ threshold (eV/atom), on both sides.

    Returns:
        Counts (true/false positives/negatives; positive = stable), precision, recall,
        F1, accuracy, prevalence (fraction DFT-stable), discovery acceleration factor
        (precision ÷ prevalence), and MAE, RMSE (meV/atom) and R² of e_above_hull.
        Ratios with a zero denominator are None.
    """
    dft_distance = np.asarray(dft_distance, dtype=np.float64)
    ml_e_above_hull = np.asarray(ml_e_above_hull, dtype=np.float64)
    n = int(dft_distance.size)
    if n == 0:
        return {"n_materials": 0}
    actual = dft_distance <= threshold
    predicted = ml_e_above_hull <= threshold
    tp = int(np.sum(actual & predicted))
    fp = int(np.sum(~actual & predicted))
    fn = int(np.sum(actual & ~predicted))
    tn = int(np.sum(~actual & ~predicted))

    def ratio(a: float, b: float) -> float | None:
        return None if b == 0 else a / b

    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    prevalence = (tp + fn) / n
    errors = (ml_e_above_hull - dft_distance) * MEV_PER_EV
    return {
        "n_materials": n,
        "threshold_ev_per_atom": threshold,
        "true_positives": tp,
        "false_positives": fp,
        "true_negatives": tn,
        "false_negatives": fn,
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "accuracy": (tp + tn) / n,
        "prevalence": prevalence,
        "daf": None if precision is None else ratio(precision, prevalence),
        "e_above_hull_mae_mev_per_atom": float(np.abs(errors).mean()),
        "e_above_hull_rmse_mev_per_atom": float(np.sqrt((errors**2).mean())),
        "e_above_hull_r2": r_squared(dft_distance, ml_e_above_hull),
    }
