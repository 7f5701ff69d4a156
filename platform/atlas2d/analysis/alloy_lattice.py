"""The lattice of an MX2 alloy system and its symmetry-distinct configurations (icet).

The parent lattice is an ideal 1×1 MX2 layer (2H: trigonal-prismatic, 1T: octahedral
metal coordination) with the in-plane lattice constant, the metal–chalcogen height and
the cell height (vacuum included) of a stored end member, so that a distorted or
supercell end member still gives a primitive, symmetric parent. Positions are Cartesian
(Å); the out-of-plane direction is c, along z.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from atlas2d.analysis.alloys import AlloySystem
from atlas2d.vocabulary import ALLOY_PROTOTYPES, AlloyPrototype

IN_PLANE_PBC = (True, True, False)
"""Periodic in the plane only: enumeration never repeats the layer along c."""


def prototype_kind(prototype: str | None) -> AlloyPrototype | None:
    """``MX2-2H``, ``alloy-2H`` → ``2H``; ``MX2-1T`` → ``1T``; anything else None."""
    for part in (prototype or "").split("-"):
        if part in ALLOY_PROTOTYPES:
            return part  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class LayerGeometry:
    """What the parent lattice takes from a stored end member.

    Attributes:
        a: in-plane lattice constant of the 1×1 cell (Å), from the area per metal site.
        half_thickness: mean |z(X) − z(M)| (Å).
        c: cell height, vacuum included (Å).
    """

    a: float
    half_thickness: float
    c: float


def layer_geometry(atoms: Atoms, metals: set[str]) -> LayerGeometry:
    """The geometry of a stored MX2 layer (any supercell)."""
    symbols = np.array(atoms.get_chemical_symbols())
    is_metal = np.isin(symbols, sorted(metals))
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    area_per_site = float(np.linalg.norm(np.cross(cell[0], cell[1]))) / int(is_metal.sum())
    z = atoms.positions[:, 2]
    metal_z = float(z[is_metal].mean())
    return LayerGeometry(
        a=float(np.sqrt(2.0 * area_per_site / np.sqrt(3.0))),
        half_thickness=float(np.abs(z[~is_metal] - metal_z).mean()),
        c=float(np.linalg.norm(cell[2])),
    )


def ideal_layer(kind: AlloyPrototype, metal: str, chalcogen: str, geometry: LayerGeometry) -> Atoms:
    """The 1×1 MX2 layer: metal at the origin of the plane and mid-height of the cell,
    the chalcogens ± half_thickness above and below (2H: both over the same site; 1T:
    over the two different hollow sites); pbc in-plane only."""
    a, h, c = geometry.a, geometry.half_thickness, geometry.c
    cell = np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])
    bottom = (2 / 3, 1 / 3) if kind == "2H" else (1 / 3, 2 / 3)
    fractions = [(0.0, 0.0), (2 / 3, 1 / 3), bottom]
    heights = [c / 2, c / 2 + h, c / 2 - h]
    positions = [
        [*(np.array(f) @ cell[:2, :2]), z] for f, z in zip(fractions, heights, strict=True)
    ]
    return Atoms([metal, chalcogen, chalcogen], positions=positions, cell=cell, pbc=IN_PLANE_PBC)


def site_species(system: AlloySystem) -> list[list[str]]:
    """Allowed species per site of :func:`ideal_layer`: the metals on the metal site."""
    return [[system.metal_a, system.metal_b], [system.chalcogen], [system.chalcogen]]


def enumerate_alloys(parent: Atoms, system: AlloySystem, max_sites: int) -> Iterator[Atoms]:
    """Every symmetry-distinct configuration of the two metals on the parent's metal
    sublattice in supercells of 1 … ``max_sites`` metal sites (icet's
    ``enumerate_structures``, in-plane supercells only), pure end members left out.
    Each comes with pbc (True, True, True) and the parent's c (the vacuum kept)."""
    from icet.tools import enumerate_structures

    for structure in enumerate_structures(parent, range(1, max_sites + 1), site_species(system)):
        symbols = set(structure.get_chemical_symbols())
        if {system.metal_a, system.metal_b} <= symbols:
            structure.pbc = True
            yield structure
