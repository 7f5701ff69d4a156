"""The points of a chemical system's convex-hull plot: every material of the system
and its subsystems with a stability row from one energy source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from atlas2d.analysis.hull import build_hull
from atlas2d.analysis.stability import subsystems
from atlas2d.queries.tabular import query_frame

MAX_HULL_POINTS = 5000
"""The most materials one hull plot draws (lowest formation energy first)."""
ON_HULL_EV_PER_ATOM = 1e-9
"""An e_above_hull at or below this is on the hull, eV/atom."""


@dataclass(frozen=True)
class HullPoints:
    """One system's hull plot, n points: the stored materials, then an elemental
    reference at formation energy 0 for each element.

    Attributes:
        elements: (k,) the system's elements, alphabetical; k is 2 or 3.
        fractions: (n, k) atom fractions. formation_energies: (n,) eV/atom.
        e_above_hull: (n,) eV/atom (the stored values; 0 for the references).
        on_hull: (n,) bool. facets: (f, k) indices of each hull facet's points.
        marked: index of the page's material; marked_formula: its formula.
    """

    energy_source: str
    elements: tuple[str, ...]
    fractions: np.ndarray
    formation_energies: np.ndarray
    e_above_hull: np.ndarray
    on_hull: np.ndarray
    facets: np.ndarray
    marked: int
    marked_formula: str


def hull_points(
    session: Session, material_key: str, chemsys: str, energy_source: str
) -> HullPoints | None:
    """The hull plot of ``chemsys`` by ``energy_source`` with ``material_key`` marked;
    None for a unary or a more than ternary system, or when the material has no
    stability row from that source."""
    from pymatgen.core import Composition

    elements = tuple(chemsys.split("-"))
    if len(elements) not in (2, 3):
        return None
    rows = query_frame(
        session,
        "SELECT m.key, m.formula, s.formation_energy_per_atom AS formation, s.e_above_hull"
        " FROM stability s JOIN materials m ON m.id = s.material_id"
        " WHERE s.energy_source = :source AND m.chemsys = ANY(:systems)"
        " ORDER BY (m.key = :key) DESC, s.formation_energy_per_atom LIMIT :limit",
        {
            "source": energy_source,
            "systems": list(subsystems(elements)),
            "key": material_key,
            "limit": MAX_HULL_POINTS,
        },
    )
    if rows.empty or rows["key"].iloc[0] != material_key:
        return None
    fractions = np.zeros((len(rows) + len(elements), len(elements)))
    for i, formula in enumerate(rows["formula"]):
        composition = Composition(formula)
        for j, element in enumerate(elements):
            fractions[i, j] = composition.get_atomic_fraction(element)
    fractions[len(rows) :] = np.eye(len(elements))
    formation = np.concatenate([rows["formation"].to_numpy(float), np.zeros(len(elements))])
    e_above_hull = np.concatenate([rows["e_above_hull"].to_numpy(float), np.zeros(len(elements))])
    return HullPoints(
        energy_source=energy_source,
        elements=elements,
        fractions=fractions,
        formation_energies=formation,
        e_above_hull=e_above_hull,
        on_hull=e_above_hull <= ON_HULL_EV_PER_ATOM,
        facets=build_hull(fractions, formation).facets,
        marked=0,
        marked_formula=str(rows["formula"].iloc[0]),
    )
