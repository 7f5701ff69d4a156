"""Alloy formation energies per substitutional site (``atlas2d alloys formation``).

For one system (``Mo-W-S``) and one energy source, every stored MX2 layer of the system
(alloys and the end-member polymorphs) gets E_F = E(alloy) − [x·E(AX2) + (1−x)·E(BX2)]
per metal site (``analysis.alloys`` has the conventions), with the end members the
lowest-energy-per-atom AX2 and BX2 layers *of the same source*:

* ``dft``: raw DFT energies (``queries.alloys.DFT_ALLOY_ENERGIES_SQL``);
* a force field ``NAME[:VERSION]``: the energies of its ML relaxations, end members
  relaxed by that model too;
* a cluster expansion (``atlas2d alloys fit-ce``): its prediction of E_F
  (``services.cluster_expansion``), against DFT's end members.

The rows are stored in ``formation_energies`` (one per material and source, replaced on
every run, rows of materials that lost their energy dropped) in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from ase.data import chemical_symbols
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloys as numerics
from atlas2d.analysis.alloys import AlloySystem, EndMember
from atlas2d.errors import NotFound
from atlas2d.queries import alloys as queries
from atlas2d.queries.alloys import FORMATION_COLUMNS, LayerEnergy
from atlas2d.services.models import resolve
from atlas2d.vocabulary import CLUSTER_EXPANSION, DFT


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


def _rows(
    session: Session, system: AlloySystem, energy: str, artifacts_dir: Path | None
) -> tuple[str, list[dict[str, Any]]]:
    chemsys = [system.chemsys, *system.end_member_chemsys()]
    if energy == DFT:
        layers = dft_layers(session, system)
        ends = end_members(system, layers, DFT, how_to_add(DFT))
        return DFT, formation_rows(system, layers, ends, DFT, None)
    model = resolve(session, energy)
    if model.architecture == CLUSTER_EXPANSION:
        from atlas2d.services.cluster_expansion import predicted_rows

        if artifacts_dir is None:
            raise ValueError("a cluster expansion needs the artifacts folder")
        return model.label, predicted_rows(session, system, model, artifacts_dir)
    layers = system_layers(system, queries.ml_layer_energies(session, model.id, chemsys))
    ends = end_members(system, layers, f"model {model.label}", how_to_add(model.label))
    alloys = [s for s in layers if 0.0 < s.composition.x < 1.0]
    if not alloys:
        raise NotFound(
            f"Model {model.label} has relaxed no {system.label} alloy: run `atlas2d relax "
            f"--model {model.label} --chemsys {system.chemsys} --dimensionality 2`."
        )
    return model.label, formation_rows(system, layers, ends, model.label, model.id)


def compute_formation_energies(
    sessions: sessionmaker[Session],
    system_text: str,
    energy: str,
    artifacts_dir: Path | None = None,
) -> pd.DataFrame:
    """Compute, store and return a system's formation energies from one energy source.

    Args:
        system_text: ``Mo-W-S`` (elements in any order).
        energy: ``dft``, a force field or a cluster expansion (``NAME[:VERSION]``).
        artifacts_dir: ``$ATLAS2D_HOME/artifacts``, where a cluster expansion's file is.

    Returns:
        :data:`queries.alloys.FORMATION_COLUMNS`, one row per layer, by x (A-rich first).

    Raises:
        InvalidInput: a bad system. NotFound: an unknown model, a missing end member
            or no alloy with an energy. Nothing is written then.
    """
    system = numerics.parse_system(system_text)
    with sessions.begin() as session:
        source, rows = _rows(session, system, energy, artifacts_dir)
        queries.upsert_formation_energies(session, rows)
        queries.delete_formation_energies(
            session,
            system.label,
            source,
            [int(r["material_id"]) for r in rows],
        )
        table = queries.formation_table(session, [system.label], [source])
    return table.loc[:, list(FORMATION_COLUMNS)]
