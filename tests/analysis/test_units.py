"""Unit and sign conversions, checked against ASE's constants."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from atlas2d.analysis.units import (
    KBAR_PER_EV_PER_A3,
    StressUnit,
    stress_to_ev_a3,
    vasp_kbar_from_ev_a3,
    voigt_to_matrix,
)


def test_vasp_kbar_becomes_ev_per_a3_with_the_sign_flipped() -> None:
    # VASP: +10 kBar is compressive; ASE: compressive is negative. 1 kBar = 0.1 GPa.
    assert stress_to_ev_a3(np.array(10.0), StressUnit.VASP_KBAR) == pytest.approx(-1.0 * units.GPa)
    assert KBAR_PER_EV_PER_A3 == pytest.approx(1602.1766, rel=1e-7)


def test_vasp_conversion_round_trips() -> None:
    stress = np.arange(9.0).reshape(3, 3) - 4.0
    assert np.allclose(vasp_kbar_from_ev_a3(stress_to_ev_a3(stress, StressUnit.VASP_KBAR)), stress)


def test_gpa_and_ev_per_a3() -> None:
    assert stress_to_ev_a3(np.array(1.0), StressUnit.GPA) == pytest.approx(units.GPa)
    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    converted = stress_to_ev_a3(values, StressUnit.EV_A3)
    assert np.array_equal(converted, values) and converted is not values


def test_voigt_order_matches_ase() -> None:
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert np.array_equal(voigt_to_matrix(voigt), voigt_6_to_full_3x3_stress(voigt))
    matrices = voigt_to_matrix(np.stack([voigt, 2 * voigt]))
    assert matrices.shape == (2, 3, 3)
    assert np.array_equal(full_3x3_to_voigt_6_stress(matrices[1]), 2 * voigt)
