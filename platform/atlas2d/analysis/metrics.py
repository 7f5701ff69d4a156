"""Errors of direct predictions against reference labels (meV/atom, meV/Å, GPa).

Stress errors count only the components that are training targets: for a 2D layer
the in-plane ones (xx, xy, yx, yy; the z-index components are zeroed in the targets,
DESIGN.md), for bulk all nine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
