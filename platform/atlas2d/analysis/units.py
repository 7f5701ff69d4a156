"""Unit conversions. atlas2d stores stress in eV/Å³ with ASE's sign (positive = tensile).

VASP prints stress in kBar with the opposite sign (positive = compressive), so
σ_ase [eV/Å³] = −σ_vasp [kBar] · 0.1 GPa/kBar / 160.21766 GPa per eV/Å³
              = −σ_vasp / 1602.1766.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

GPA_PER_EV_PER_A3 = 160.21766208
"""1 eV/Å³ = 160.21766208 GPa (ASE's ``units.GPa`` is its inverse)."""
KBAR_PER_GPA = 10.0
KBAR_PER_EV_PER_A3 = KBAR_PER_GPA * GPA_PER_EV_PER_A3
"""1 eV/Å³ = 1602.1766208 kBar."""
MEV_PER_EV = 1000.0
"""Errors are reported in meV (per atom, per Å): 1 eV = 1000 meV."""


class StressUnit(str, Enum):
    """How a file reports stress."""

    VASP_KBAR = "vasp-kbar"
    """kBar, VASP's sign (positive = compressive): VASP OUTCAR/vasprun, Alexandria."""
    EV_A3 = "ev-a3"
    """eV/Å³, ASE's sign (positive = tensile): ASE, extxyz, MACE."""
    GPA = "gpa"
    """GPa, ASE's sign (positive = tensile)."""


def stress_to_ev_a3(stress: np.ndarray, unit: StressUnit) -> np.ndarray:
    """Convert stress in ``unit`` to eV/Å³ with ASE's sign. Any shape; returns float64."""
    values = np.asarray(stress, dtype=np.float64)
    if unit is StressUnit.VASP_KBAR:
        return -values / KBAR_PER_EV_PER_A3
    if unit is StressUnit.GPA:
        return values / GPA_PER_EV_PER_A3
    return values.copy()


def vasp_kbar_from_ev_a3(stress_ev_a3: np.ndarray) -> np.ndarray:
    """Inverse of the VASP conversion: eV/Å³ (ASE sign) → kBar (VASP sign)."""
    return -np.asarray(stress_ev_a3, dtype=np.float64) * KBAR_PER_EV_PER_A3


def voigt_to_matrix(voigt: np.ndarray) -> np.ndarray:
    """(…, 6) Voigt stress in ASE order (xx, yy, zz, yz, xz, xy) → (…, 3, 3)."""
    v = np.asarray(voigt, dtype=np.float64)
    xx, yy, zz, yz, xz, xy = (v[..., i] for i in range(6))
    rows = [
        np.stack([xx, xy, xz], axis=-1),
        np.stack([xy, yy, yz], axis=-1),
        np.stack([xz, yz, zz], axis=-1),
    ]
    return np.stack(rows, axis=-2)
