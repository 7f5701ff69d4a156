"""Relax structures with a force field: FIRE on positions and cell, in-plane only for 2D
layers (the z-index stress components the optimiser sees are zero, so c and the vacuum
stay), full cell for bulk. Two engines give the same minima:

* :func:`relax_ase`: one structure at a time with ASE's ``FIRE`` on a
  ``FrechetCellFilter`` (the reference);
* :func:`relax_batched` (``mlff.batched``): many structures per model call with
  torch-sim's batched FIRE on the same Fréchet cell parameterisation.

Units: eV, Å, eV/Å, eV/Å³ (ASE sign). ``converged`` means every atomic force and every
cell "force" (the filter's scaled virial) is below ``fmax`` within ``max_steps``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from atlas2d.mlff.forcefield import ForceField, PeriodicCalculator
from atlas2d.vocabulary import FIRE_FMAX_EV_PER_A, FIRE_MAX_STEPS


@dataclass(frozen=True)
class RelaxSettings:
    """FIRE settings, by default the thesis's (``atlas2d.vocabulary``).

    Attributes:
        fmax: eV/Å. max_steps: optimiser steps. save_trajectory: keep every step
            (else only the final one).
    """

    fmax: float = FIRE_FMAX_EV_PER_A
    max_steps: int = FIRE_MAX_STEPS
    save_trajectory: bool = False


@dataclass
class RelaxResult:
    """One relaxed structure.

    Attributes:
        converged: reached ``fmax`` within ``max_steps``. n_steps: optimiser steps taken.
        energies: (F,) eV. cells: (F, 3, 3) Å, rows. positions, forces: (F, N, 3) Å, eV/Å.
        stresses: (F, 3, 3) eV/Å³, the model's full stress. F is 1 (the final structure)
            or, with ``save_trajectory``, every evaluated step from the start.
        wall_time_s: seconds spent on this structure (its share of a batch).
    """

    converged: bool
    n_steps: int
    energies: np.ndarray
    cells: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    stresses: np.ndarray
    wall_time_s: float
    engine: str = "ase"


def relax_ase(
    force_field: ForceField,
    structures: Sequence[Atoms],
    in_plane: Sequence[bool],
    settings: RelaxSettings = RelaxSettings(),
) -> Iterator[RelaxResult]:
    """Relax one structure after the other with ASE's FIRE (the reference engine).

    Args:
        structures: starting structures (not modified).
        in_plane: per structure, True for a 2D layer (cell relaxes in-plane only).

    Yields:
        One :class:`RelaxResult` per structure, in order.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    force_field.check_elements(structures)
    for start, layer in zip(structures, in_plane, strict=True):
        began = time.perf_counter()
        atoms = start.copy()
        atoms.calc = calculator = force_field.calculator(in_plane_stress=layer)
        steps: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        def record(
            atoms: Atoms = atoms,
            calculator: PeriodicCalculator = calculator,
            steps: list = steps,
        ) -> None:
            energy = float(atoms.get_potential_energy())  # computes, and sets full_stress
            stress = calculator.full_stress
            assert stress is not None
            steps.append(
                (
                    energy,
                    atoms.cell.array.copy(),
                    atoms.positions.copy(),
                    atoms.get_forces().copy(),
                    stress.copy(),
                )
            )

        optimizer = FIRE(FrechetCellFilter(atoms), logfile=None)
        if settings.save_trajectory:
            optimizer.attach(record, interval=1)
        converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
        if (
            not settings.save_trajectory
            or not steps
            or steps[-1][0] != atoms.get_potential_energy()
        ):
            record()
        if not settings.save_trajectory:
            steps = steps[-1:]
        energies, cells, positions, forces, stresses = (
            np.array(v) for v in zip(*steps, strict=True)
        )
        yield RelaxResult(
            converged=converged,
            n_steps=int(optimizer.nsteps),
            energies=energies,
            cells=cells,
            positions=positions,
            forces=forces,
            stresses=stresses,
            wall_time_s=time.perf_counter() - began,
            engine="ase",
        )
