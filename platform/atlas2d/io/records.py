"""Plain records every reader produces and the ingest service consumes.

Units are the stored canonical ones: eV, Å, eV/Å, eV/Å³ (ASE sign). Readers convert
at the edge; nothing downstream converts again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Trajectory:
    """One geometry optimisation as read from a file.

    Attributes:
        material_key: external key of the material (e.g. Alexandria ``mat_id``).
        species: (N,) atomic numbers.
        cells: (F, 3, 3) lattice vectors as rows, Å.
        positions: (F, N, 3) Cartesian positions, Å.
        energies: (F,) total energies, eV.
        forces: (F, N, 3) forces, eV/Å.
        stresses: (F, 3, 3) stress, eV/Å³, ASE sign; None when the file has none.
        parameters: calculation settings (INCAR tags, functional, …).
        record: how error messages name this trajectory ("mat_id agm001, trajectory 2").
        sequence: index among the material's successive relaxations in the file.
        converged: whether the optimisation reached its criterion, None when unknown.
    """

    material_key: str
    species: np.ndarray
    cells: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    stresses: np.ndarray | None
    parameters: dict[str, Any] = field(default_factory=dict)
    record: str = ""
    sequence: int = 0
    converged: bool | None = None
    method: str = "dft"
    pbc: tuple[bool, bool, bool] = (True, True, True)
    wall_time_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.energies)

    @property
    def n_sites(self) -> int:
        return len(self.species)


@dataclass
class EnergyEntryRecord:
    """A final DFT energy entry from a convex-hull file (pymatgen ComputedStructureEntry).

    Attributes:
        material_key: external key (``data.mat_id``).
        species: (N,) atomic numbers.
        cell: (3, 3) lattice vectors as rows, Å.
        positions: (N, 3) Cartesian positions, Å.
        energy: uncorrected total energy, eV.
        correction: energy correction, eV (corrected energy = energy + correction).
        data: the entry's ``data`` dict as published.
    """

    material_key: str
    species: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    energy: float
    correction: float
    data: dict[str, Any] = field(default_factory=dict)
    record: str = ""


@dataclass
class MaterialRecord:
    """What a file says about a material beyond its structures (all optional)."""

    key: str
    dimensionality: int | None = None
    prototype: str | None = None
    spacegroup_number: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedFile:
    """Everything one file (or in-memory batch) brings, validated and in canonical units.

    ``label_ticket`` is the active-learning ticket found next to a VASP file (see
    ``io.vasp_inputs``): the run labels that campaign's candidate.
    """

    path: str
    format: str
    sha256: str
    parser: str
    options: dict[str, Any] = field(default_factory=dict)
    trajectories: list[Trajectory] = field(default_factory=list)
    entries: list[EnergyEntryRecord] = field(default_factory=list)
    materials: dict[str, MaterialRecord] = field(default_factory=dict)
    label_ticket: dict[str, Any] | None = None
    """The label ticket in a VASP file's folder (``io.vasp_inputs.LabelTicket`` as JSON):
    the active-learning candidate the calculation labels."""

    def material(self, key: str) -> MaterialRecord:
        """The material record for ``key``, created empty on first use."""
        if key not in self.materials:
            self.materials[key] = MaterialRecord(key=key)
        return self.materials[key]


@dataclass
class ExportFrame:
    """One training frame on its way out (canonical units: eV, Å, eV/Å, eV/Å³ ASE sign).

    Attributes:
        species: (N,) atomic numbers.
        cell: (3, 3) lattice vectors as rows, Å.
        positions: (N, 3) Cartesian positions, Å.
        energy: total energy, eV.
        forces: (N, 3) eV/Å.
        stress: (3, 3) eV/Å³, ASE sign, or None. For 2D layers the components with a z
            index are already zeroed by the caller.
        info: identifiers that trace the frame back to the database: material_key,
            relaxation_id, frame_id, step, split (and anything else worth keeping).
    """

    species: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)
    pbc: tuple[bool, bool, bool] = (True, True, True)


@dataclass(frozen=True)
class ExportBatch:
    """Consecutive training frames on their way out, column-wise (B frames, Σn atoms;
    units and signs as in ``ExportFrame``).

    Attributes:
        species: (Σn,) atomic numbers (int64).
        bounds: (B + 1,) frame i's atoms are rows ``bounds[i]:bounds[i + 1]``.
        cells: (B, 3, 3) lattice vectors as rows, Å.
        positions: (Σn, 3) Å. forces: (Σn, 3) eV/Å. energies: (B,) eV.
        stresses: (B, 3, 3) eV/Å³, ASE sign; only the frames where ``has_stress`` is
            True have one (the other rows are ignored).
        has_stress: (B,) bools.
        info: one column of B values per identifier key, as ``ExportFrame.info``.
        pbc: (B,) periodic flags (a, b, c).
    """

    species: np.ndarray
    bounds: np.ndarray
    cells: np.ndarray
    positions: np.ndarray
    forces: np.ndarray
    energies: np.ndarray
    stresses: np.ndarray
    has_stress: np.ndarray
    info: dict[str, list[Any]]
    pbc: list[tuple[bool, bool, bool]]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def frame(self, i: int) -> ExportFrame:
        """Frame ``i`` of the batch; its arrays are views of the batch's."""
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        return ExportFrame(
            species=self.species[a:b],
            cell=self.cells[i],
            positions=self.positions[a:b],
            energy=float(self.energies[i]),
            forces=self.forces[a:b],
            stress=self.stresses[i] if self.has_stress[i] else None,
            info={key: column[i] for key, column in self.info.items()},
            pbc=self.pbc[i],
        )
