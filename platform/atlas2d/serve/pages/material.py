"""What a material's page shows: its row, stability per energy source, DFT and ML
relaxations (the ML ones with their errors against DFT), the energy against step of
its last DFT relaxation, its structure, and the training sets holding it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from ase import Atoms
from sqlalchemy import select
from sqlalchemy.orm import Session

from atlas2d.db.models import EnergyEntry
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries import audits_material
from atlas2d.queries.frames import final_structures
from atlas2d.queries.materials import MaterialRow, material_row
from atlas2d.queries.tabular import query_frame
from atlas2d.vocabulary import DFT

ML_ERRORS_SQL = """
SELECT model_name || ':' || model_version AS model, relaxation_id, converged, n_steps,
       ml_energy_per_atom AS ml_energy_per_atom_ev,
       1000 * energy_error_per_atom AS energy_error_mev_per_atom,
       ml_area_per_atom AS ml_area_per_atom_a2,
       area_error_per_atom AS area_error_a2_per_atom
FROM relaxation_errors WHERE material_key = :key
ORDER BY model_name, model_version, relaxation_id
"""
"""Each ML relaxation of a material against its last DFT relaxation's final frame."""


@dataclass(frozen=True)
class MaterialPage:
    """A material's page.

    Attributes:
        stability: per energy source (DFT first); columns with units
            (``audits_material.material_stability``).
        dft_relaxations, training_sets: ``audits_material``'s frames.
        ml_relaxations: :data:`ML_ERRORS_SQL`'s rows (errors = ML − DFT).
        structure: the final frame of the last DFT relaxation, else the latest energy
            entry's structure; None without either.
        structure_from: where ``structure`` came from, in words.
        steps, energies_ev_per_atom: (F,) the last DFT relaxation's trajectory.
    """

    material: MaterialRow
    stability: pd.DataFrame
    dft_relaxations: pd.DataFrame
    ml_relaxations: pd.DataFrame
    training_sets: pd.DataFrame
    structure: Atoms | None
    structure_from: str
    steps: np.ndarray
    energies_ev_per_atom: np.ndarray


def _entry_structure(session: Session, material_id: int) -> Atoms | None:
    row = session.execute(
        select(EnergyEntry.species, EnergyEntry.cell, EnergyEntry.positions)
        .where(EnergyEntry.material_id == material_id)
        .order_by(EnergyEntry.id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    return Atoms(numbers=row.species, positions=row.positions, cell=row.cell, pbc=True)


def material_page(session: Session, key: str) -> MaterialPage:
    """The page of the material with this key.

    Raises:
        InvalidInput: the key holds a NUL character.
        NotFound: no material has this key.
    """
    if "\x00" in key:
        # PostgreSQL text cannot hold NUL: the driver would refuse the parameter.
        raise InvalidInput(
            "A material key holds no NUL character; search for it on the front page."
        )
    material = material_row(session, key)
    if material is None:
        raise NotFound(f"No material has the key {key!r}; search for it on the front page.")
    dft = audits_material.material_relaxations(session, material.id, DFT)
    structure, structure_from = None, "no structure stored"
    steps = energies = np.empty(0)
    if not dft.empty:
        last = int(dft["relaxation_id"].iloc[-1])
        structure = final_structures(session, [last]).get(last)
        structure_from = f"final frame of DFT relaxation {last}"
        trajectory = query_frame(
            session,
            "SELECT step, energy_per_atom FROM frames WHERE relaxation_id = :id ORDER BY step",
            {"id": last},
        )
        steps = trajectory["step"].to_numpy(dtype=float)
        energies = trajectory["energy_per_atom"].to_numpy(dtype=float)
    if structure is None:
        structure = _entry_structure(session, material.id)
        if structure is not None:
            structure_from = "its convex-hull energy entry"
    return MaterialPage(
        material=material,
        stability=audits_material.material_stability(session, material.id),
        dft_relaxations=dft,
        ml_relaxations=query_frame(session, ML_ERRORS_SQL, {"key": key}),
        training_sets=audits_material.material_training_sets(session, material.id),
        structure=structure,
        structure_from=structure_from,
        steps=steps,
        energies_ev_per_atom=energies,
    )
