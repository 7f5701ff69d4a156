"""The interface every force-field adapter implements: an ASE calculator for one
structure and a batch API for many.

Units everywhere: energies eV (total), forces eV/Å, stress eV/Å³ with ASE's sign
(σ = (1/V) ∂E/∂ε, positive = tensile), full 3×3.

Structures are always evaluated as 3D periodic. Layers are stored with the vacuum
along c and were labelled (DFT) and trained as 3D-periodic cells; a layer flagged
``pbc = (T, T, F)`` would make MACE replace c by a fictitious long vector
(``mace/data/neighborhood.py``) and divide its strain derivative by the wrong volume.
The vacuum keeps the periodic images apart, as in the DFT run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress


@dataclass
class Predictions:
    """A batch of predictions, in the order of the structures given.

    Attributes:
        energies: shape (B,), eV (total).
        forces: B arrays of shape (n_i, 3), eV/Å.
        stresses: shape (B, 3, 3), eV/Å³, ASE sign.
    """

    energies: np.ndarray
    forces: list[np.ndarray]
    stresses: np.ndarray


def zero_out_of_plane(stress: np.ndarray) -> np.ndarray:
    """A copy of (…, 3, 3) stresses with the components that have a z index set to zero
    (a layer's cell relaxes in-plane only: c and the vacuum stay as they are)."""
    in_plane = np.array(stress, dtype=np.float64)
    in_plane[..., 2, :] = 0.0
    in_plane[..., :, 2] = 0.0
    return in_plane


def as_periodic(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` (no calculator) flagged periodic along a, b and c."""
    periodic = Atoms(
        numbers=atoms.get_atomic_numbers(),
        positions=atoms.get_positions(),
        cell=atoms.get_cell(),
        pbc=True,
    )
    return periodic


class ForceField(ABC):
    """A loaded model version: ``calculator()`` for ASE, ``predict()`` for batches."""

    architecture: ClassVar[str]
    cutoff: float
    """Neighbour cutoff radius (Å)."""
    element_symbols: tuple[str, ...]
    """The elements the model knows."""
    device: str = "cpu"
    """The torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``)."""

    @abstractmethod
    def framework_calculator(self) -> Calculator:
        """The framework's own ASE calculator, with stress in eV/Å³ (ASE sign)."""

    @abstractmethod
    def predict(self, structures: Sequence[Atoms], batch_size: int = 32) -> Predictions:
        """Energies, forces and stresses of many structures, ``batch_size`` per model call."""

    def calculator(self, in_plane_stress: bool = False) -> PeriodicCalculator:
        """An ASE calculator that evaluates every structure as 3D periodic.

        Args:
            in_plane_stress: report the stress with its z-index components zeroed (what
                the optimiser of a 2D layer sees, so c and the vacuum do not relax);
                the full stress stays in ``calculator.full_stress``.
        """
        return PeriodicCalculator(self.framework_calculator(), in_plane_stress)

    def check_fine_tuning(self, elements: Sequence[str], freeze: int) -> None:
        """Raise ValueError unless this model can be fine-tuned on data with ``elements``
        with its first ``freeze`` layers kept fixed. The base checks the elements; an
        adapter whose layers can be frozen here also checks ``freeze``."""
        unknown = sorted(set(elements) - set(self.element_symbols))
        if unknown:
            raise ValueError(
                f"The parent model knows {', '.join(self.element_symbols)}; the training set "
                f"also has {', '.join(unknown)}. Fine-tune on data within the parent's elements "
                "or train from scratch."
            )

    def check_elements(self, structures: Sequence[Atoms]) -> None:
        """Raise ValueError naming the elements the model was not trained on."""
        known = set(self.element_symbols)
        unknown = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()} - known)
        if unknown:
            raise ValueError(
                f"The {self.architecture} model knows {', '.join(self.element_symbols)}; "
                f"it cannot evaluate {', '.join(unknown)}."
            )


class PeriodicCalculator(Calculator):
    """Delegates to a framework calculator on a 3D-periodic copy of the structure."""

    def __init__(self, inner: Calculator, in_plane_stress: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Per instance: ASE declares it an instance attribute (a list), not a class constant.
        self.implemented_properties = ["energy", "free_energy", "forces", "stress"]
        self.inner = inner
        self.in_plane_stress = in_plane_stress
        self.full_stress: np.ndarray | None = None
        """The last stress before masking, shape (3, 3), eV/Å³."""

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        periodic = as_periodic(self.atoms)
        periodic.calc = self.inner
        energy = float(periodic.get_potential_energy())
        stress = np.asarray(periodic.get_stress(voigt=False), dtype=np.float64)
        self.full_stress = stress
        if self.in_plane_stress:
            stress = zero_out_of_plane(stress)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(periodic.get_forces(), dtype=np.float64),
            "stress": full_3x3_to_voigt_6_stress(stress),
        }
