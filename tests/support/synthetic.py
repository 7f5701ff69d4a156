"""Synthetic 2D relaxation trajectories for tests and benchmarks (seeded, in memory).

Each trajectory is a hexagonal layer (vacuum along c) relaxing towards a minimum:
energies decrease towards a plateau, forces decay, the stress is small and in-plane.
The numbers are realistic in size, not physics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atlas2d.analysis.units import vasp_kbar_from_ev_a3
from atlas2d.io.records import Trajectory

# (metal, chalcogen) pairs of common transition-metal dichalcogenides.
_PAIRS = [
    (42, 16),
    (74, 16),
    (42, 34),
    (74, 34),
    (41, 16),
    (73, 16),
    (22, 16),
    (40, 16),
    (72, 34),
    (78, 52),
]


def synthetic_trajectory(
    rng: np.random.Generator, key: str, n_steps: int, n_sites: int, sequence: int = 0
) -> Trajectory:
    """One layer of ``n_sites`` atoms relaxing over ``n_steps`` steps (units: eV, Å, eV/Å³)."""
    metal, chalcogen = _PAIRS[rng.integers(len(_PAIRS))]
    species = np.where(np.arange(n_sites) % 3 == 0, metal, chalcogen)
    lattice = 3.2 * np.sqrt(max(1, n_sites // 3))
    cell = np.array(
        [[lattice, 0.0, 0.0], [-lattice / 2, lattice * np.sqrt(3) / 2, 0.0], [0.0, 0.0, 20.0]]
    )
    frac = rng.random((n_sites, 3))
    frac[:, 2] = 0.5 + 0.08 * (rng.random(n_sites) - 0.5)  # a layer ~1.6 Å thick
    progress = np.exp(-np.arange(n_steps) / max(1.0, n_steps / 4))[:, None, None]  # (F, 1, 1)
    strain = 1.0 + 0.03 * progress  # relaxes from 3 % strain
    cells = cell[None] * np.concatenate([strain, strain, np.ones_like(strain)], axis=2)
    displacement = 0.15 * rng.standard_normal((1, n_sites, 3)) * progress
    positions = np.einsum("ni,fij->fnj", frac, cells) + displacement
    e_min = -4.0 - 3.0 * rng.random()
    energies = n_sites * (e_min + 0.3 * progress[:, 0, 0] + 1e-4 * rng.standard_normal(n_steps))
    forces = 2.0 * rng.standard_normal(
        (n_steps, n_sites, 3)
    ) * progress + 0.01 * rng.standard_normal((n_steps, n_sites, 3))
    stresses = 0.01 * rng.standard_normal((n_steps, 3, 3)) * progress
    stresses = (stresses + np.transpose(stresses, (0, 2, 1))) / 2
    stresses[:, 2, :] = stresses[:, :, 2] = 0.0
    return Trajectory(
        material_key=key,
        species=species,
        cells=cells,
        positions=positions,
        energies=energies,
        forces=forces,
        stresses=stresses,
        parameters={"functional": "PBE", "ENMAX": 520.0},
        record=f"mat_id {key}, trajectory {sequence}",
        sequence=sequence,
    )


def synthetic_trajectories(
    n_materials: int,
    n_steps: int | tuple[int, int],
    n_sites: int | tuple[int, int],
    seed: int = 0,
    key_prefix: str = "syn",
) -> list[Trajectory]:
    """``n_materials`` trajectories keyed ``{key_prefix}-000000``…; sizes fixed or drawn
    from (low, high) ranges."""
    rng = np.random.default_rng(seed)

    def draw(value: int | tuple[int, int]) -> int:
        return value if isinstance(value, int) else int(rng.integers(value[0], value[1] + 1))

    return [
        synthetic_trajectory(rng, f"{key_prefix}-{i:06d}", draw(n_steps), draw(n_sites))
        for i in range(n_materials)
    ]


def alexandria_document(trajectories: list[Trajectory]) -> dict[str, Any]:
    """The trajectories as an Alexandria geometry-optimisation JSON document
    (pymatgen Structure dicts; stress in kBar with VASP's sign)."""
    from ase.data import chemical_symbols

    document: dict[str, list[dict[str, Any]]] = {}
    for traj in trajectories:
        symbols = [chemical_symbols[int(z)] for z in traj.species]
        steps = []
        for f in range(traj.n_frames):
            cell = traj.cells[f]
            frac = np.linalg.solve(cell.T, traj.positions[f].T).T
            sites = [
                {
                    "species": [{"element": s, "occu": 1}],
                    "abc": frac[i].tolist(),
                    "xyz": traj.positions[f, i].tolist(),
                    "label": s,
                    "properties": {},
                }
                for i, s in enumerate(symbols)
            ]
            step: dict[str, Any] = {
                "structure": {
                    "@module": "pymatgen.core.structure",
                    "@class": "Structure",
                    "lattice": {"matrix": cell.tolist(), "pbc": [True, True, True]},
                    "sites": sites,
                },
                "energy": float(traj.energies[f]),
                "forces": traj.forces[f].tolist(),
            }
            if traj.stresses is not None:
                step["stress"] = vasp_kbar_from_ev_a3(traj.stresses[f]).tolist()
            steps.append(step)
        document.setdefault(traj.material_key, []).append({**traj.parameters, "steps": steps})
    return document
