"""Alloy formation energies per substitutional site: the rules, shared by
``atlas2d alloys formation`` (``services.alloy_formation``), enumeration and cluster
expansions.

For one system (``Mo-W-S``) and one energy source, every stored MX2 layer of the system
(alloys and the end-member polymorphs) gets E_F = E(alloy) − [x·E(AX2) + (1−x)·E(BX2)]
per metal site (``analysis.alloys`` has the conventions), with the end members the
lowest-energy-per-atom AX2 and BX2 layers *of the same source*:

* ``dft``: raw DFT energies (``queries.alloys.DFT_ALLOY_ENERGIES_SQL``);
* a force field ``NAME[:VERSION]``: the energies of its ML relaxations, end members
  relaxed by that model too;
* a cluster expansion (``atlas2d alloys fit-ce``): its prediction of E_F
  (``services.cluster_expansion``), against DFT's end members.

``services.alloy_formation`` stores the rows in ``formation_energies`` (one per material,
system and source, replaced on every run, rows of materials that lost their energy
dropped) in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ase.data import chemical_symbols
from sqlalchemy.orm import Session

from atlas2d.analysis import alloys as numerics
from atlas2d.analysis.alloys import AlloySystem, EndMember
from atlas2d.errors import NotFound
from atlas2d.queries import alloys as queries
from atlas2d.queries.alloys import LayerEnergy
from atlas2d.vocabulary import DFT


@dataclass(frozen=True)
class SystemLayer:
    """A stored layer of an alloy system, its composition and one source's energy."""

    layer: LayerEnergy
    composition: numerics.AlloyComposition

    @property
    def energy_per_atom_ev(self) -> float:
        return self.layer.energy_ev / len(self.layer.species)


def system_layers(system: AlloySystem, layers: list[LayerEnergy]) -> list[SystemLayer]:
    """The layers that are MX2 structures of ``system`` (end members included)."""
    found = []
    for layer in layers:
        symbols = [chemical_symbols[z] for z in layer.species]
        composition = numerics.composition(symbols, system)
        if composition is not None:
            found.append(SystemLayer(layer, composition))
    return found


@dataclass(frozen=True)
class EndMembers:
    """The AX2 and BX2 layers a source's formation energies are taken against."""

    a: EndMember
    b: EndMember
    a_id: int
    b_id: int


def end_members(
    system: AlloySystem, layers: list[SystemLayer], source: str, how_to_add: str
) -> EndMembers:
    """The lowest-energy-per-atom AX2 and BX2 among ``layers``.

    Args:
        source: how messages name the energy source.
        how_to_add: the sentence that tells how to give the source a missing end member
            (``{formula}`` is filled in).

    Raises:
        NotFound: one or both end members have no energy in this source.
    """
    chosen: list[tuple[EndMember, int] | None] = []
    for x in (1.0, 0.0):
        candidates = [s for s in layers if s.composition.x == x]
        best = numerics.lowest_energy(
            [EndMember(s.layer.key, s.energy_per_atom_ev) for s in candidates]
        )
        ids = {s.layer.key: s.layer.material_id for s in candidates}
        chosen.append(None if best is None else (best, ids[best.key]))
    missing = [
        formula
        for formula, found in zip(system.end_member_formulas, chosen, strict=True)
        if found is None
    ]
    if missing:
        names = " and ".join(missing)
        raise NotFound(
            f"Alloy system {system.label} has no {source} energy for its end member "
            f"{names}: {how_to_add.format(formula=missing[0])}"
        )
    (a, a_id), (b, b_id) = chosen  # type: ignore[misc]
    return EndMembers(a, b, a_id, b_id)


def how_to_add(source: str) -> str:
    """How to give ``source`` a missing end member (``{formula}`` left to fill in)."""
    if source == DFT:
        return (
            "ingest a DFT relaxation or hull entry of a {formula} layer (`atlas2d ingest`), "
            "or label one (`atlas2d label`)."
        )
    return (
        f"relax the end members with the model too: `atlas2d relax --model {source} "
        "--formula {formula} --dimensionality 2`."
    )


def formation_rows(
    system: AlloySystem,
    layers: list[SystemLayer],
    ends: EndMembers,
    energy_source: str,
    model_version_id: int | None,
) -> list[dict[str, Any]]:
    """``formation_energies`` rows of every layer from its total energy."""
    rows = []
    for item in layers:
        composition = item.composition
        e_f = numerics.formation_energy_mev_per_site(
            item.layer.energy_ev, composition.n_metal_sites, composition.x, ends.a, ends.b
        )
        rows.append(
            {
                "material_id": item.layer.material_id,
                "energy_source": energy_source,
                "model_version_id": model_version_id,
                "system": system.label,
                "x": composition.x,
                "n_metal_sites": composition.n_metal_sites,
                "formation_energy_mev_per_site": e_f,
                "formation_energy_mev_per_atom": numerics.per_atom(e_f),
                "end_member_a_id": ends.a_id,
                "end_member_b_id": ends.b_id,
                "alloy_energy_ev": item.layer.energy_ev,
            }
        )
    return rows


def dft_layers(session: Session, system: AlloySystem) -> list[SystemLayer]:
    """The system's layers with their DFT energies."""
    chemsys = [system.chemsys, *system.end_member_chemsys()]
    return system_layers(system, queries.dft_layer_energies(session, chemsys))
