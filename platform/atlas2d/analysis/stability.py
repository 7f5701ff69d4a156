"""Each material's stability against the convex hulls of its chemical system.

One hull per chemical system that occurs, built from the entries whose elements are a
subset of it (a hull over every element at once would be a qhull problem in dozens of
dimensions); :mod:`atlas2d.analysis.hull` builds each one.

- DFT: every material with a DFT energy against the hull of all DFT materials.
- A model: the energy it gives a material (plus that material's DFT correction per
  atom, so both sides use one convention) against the DFT hull of all *other*
  materials, as Matbench Discovery does.

Energies are eV/atom throughout; compositions are atom fractions. The energy tables are
DataFrames with one row per material (columns named where they are read); nothing here
touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from ase.data import chemical_symbols

from atlas2d.analysis.hull import MissingTerminal, build_hull, hull_without
from atlas2d.analysis.metrics import stability_metrics

ZERO_TOLERANCE_EV_PER_ATOM = 1e-9
"""|e_above_hull| below this (eV/atom) is rounding: reported as 0 for DFT."""

SCORE_COLUMNS = ["n_materials", "precision", "recall", "f1", "e_above_hull_mae_mev_per_atom"]
"""The stability metrics shown per element."""


@dataclass(frozen=True)
class Phase:
    """One hull phase of a decomposition.

    Attributes:
        material_key: the DFT material on the hull.
        formula: its reduced formula.
        fraction: its atom fraction in the decomposition, rounded to 1e-9.
    """

    material_key: str
    formula: str
    fraction: float


@dataclass(frozen=True)
class MaterialStability:
    """One material's place relative to the hull of its chemical system (eV/atom).

    Attributes:
        material_id: the material.
        energy_per_atom_ev: the corrected energy placed against the hull.
        formation_energy_ev_per_atom: relative to the lowest-energy DFT elemental
            references.
        e_above_hull_ev_per_atom: DFT: above the hull of every DFT material (≥ 0, 0 on
            the hull). A model: against the DFT hull of all other materials (negative
            below it).
        distance_to_hull_ev_per_atom: signed distance to the DFT hull of all other
            materials: equals e_above_hull except for DFT hull vertices, where it is
            minus the energy by which the material is below the hull without it.
        decomposition: the hull phases at the material's composition, largest fraction
            first; itself alone for a DFT hull vertex.
    """

    material_id: int
    energy_per_atom_ev: float
    formation_energy_ev_per_atom: float
    e_above_hull_ev_per_atom: float
    distance_to_hull_ev_per_atom: float
    decomposition: tuple[Phase, ...]

    @property
    def stable(self) -> bool:
        """On or below the hull."""
        return self.e_above_hull_ev_per_atom <= 0.0


@dataclass(frozen=True)
class SystemStability:
    """The results for the materials of one chemical system.

    Attributes:
        materials: one result per material placed.
        sole_references: keys of materials a model placed but that have no hull to
            stand against: their DFT entry is the only pure entry of its element.
    """

    materials: list[MaterialStability]
    sole_references: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SystemEntries:
    """The entries of one chemical system.

    Attributes:
        elements: the system's elements, alphabetical.
        fractions: (n, k) atom fractions in the order of ``elements``.
        energies_ev_per_atom: (n,) corrected energies, eV/atom.
        rows: (n,) the entries' rows in their energy table.
    """

    elements: tuple[str, ...]
    fractions: np.ndarray
    energies_ev_per_atom: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class EnergyTable:
    """Materials with one energy each, grouped by chemical system.

    Attributes:
        frame: one row per material; at least material_id, key, formula and species
            (atomic numbers), plus what :func:`touched_systems` and :func:`watermarks`
            read (entry_id and relaxation_id for DFT, relaxation_id for a model).
        material_ids: (n,) ``frame["material_id"]``.
        keys: (n,) material keys.
        formulas: (n,) formulas.
        systems: (n,) each row's chemical system, e.g. ``Mo-S``.
        by_system: the rows of each chemical system that occurs.
    """

    frame: pd.DataFrame
    material_ids: np.ndarray
    keys: np.ndarray
    formulas: np.ndarray
    systems: list[str]
    by_system: dict[str, SystemEntries]

    def material_ids_of(self, system: str) -> list[int]:
        """The materials of one chemical system, in row order."""
        return [int(m) for m in self.material_ids[self.by_system[system].rows]]

    def keys_of(self, system: str) -> list[str]:
        """The keys of one chemical system's materials, in row order."""
        return self.keys[self.by_system[system].rows].tolist()


@dataclass(frozen=True)
class Watermarks:
    """The newest energies a hull run saw: the largest ids of each kind (0: none).

    Attributes:
        energy_entry_id: DFT energy entries.
        dft_relaxation_id: DFT relaxations whose final energy counted.
        ml_relaxation_id: a model's relaxations; None for a DFT run.
    """

    energy_entry_id: int = 0
    dft_relaxation_id: int = 0
    ml_relaxation_id: int | None = None


@dataclass(frozen=True)
class TouchedSystems:
    """What new energies touched since the previous run.

    Attributes:
        with_new_energies: systems with a material whose energy is newer.
        with_changed_hull: among them, those whose hull changed (a new energy on its
            system's hull, or a former hull vertex whose energy changed).
    """

    with_new_energies: set[str]
    with_changed_hull: set[str]


def compositions(
    species: Iterable[Sequence[int] | np.ndarray],
) -> tuple[list[str], list[np.ndarray]]:
    """Each structure's chemical system and atom fractions.

    Args:
        species: atomic numbers of each structure's atoms.

    Returns:
        (systems, fractions): the chemical system of each structure (``Mo-S``) and its
        atom fractions (k,) in the order of that system's elements (alphabetical).
    """
    systems, fractions = [], []
    for numbers_of_atoms in species:
        numbers, counts = np.unique(np.asarray(numbers_of_atoms), return_counts=True)
        symbols = [chemical_symbols[z] for z in numbers]
        order = np.argsort(symbols)
        systems.append("-".join(symbols[i] for i in order))
        fractions.append(counts[order] / counts.sum())
    return systems, fractions


def group_by_system(
    systems: list[str], fractions: list[np.ndarray], energies_ev_per_atom: np.ndarray
) -> dict[str, SystemEntries]:
    """Rows grouped by chemical system.

    Args:
        systems, fractions: from :func:`compositions`, one per row.
        energies_ev_per_atom: (n,) eV/atom.
    """
    grouped: dict[str, list[int]] = {}
    for row, system in enumerate(systems):
        grouped.setdefault(system, []).append(row)
    return {
        system: SystemEntries(
            tuple(system.split("-")),
            np.array([fractions[r] for r in rows]),
            energies_ev_per_atom[rows],
            np.array(rows),
        )
        for system, rows in grouped.items()
    }


def energy_table(frame: pd.DataFrame, energies_ev_per_atom: np.ndarray) -> EnergyTable:
    """A frame of materials (see :class:`EnergyTable`) with each row's energy (n,),
    eV/atom, grouped by chemical system."""
    systems, fractions = compositions(frame["species"])
    return EnergyTable(
        frame,
        frame["material_id"].to_numpy(),
        frame["key"].to_numpy(),
        frame["formula"].to_numpy(),
        systems,
        group_by_system(systems, fractions, energies_ev_per_atom),
    )


def dft_energy_table(dft: pd.DataFrame) -> EnergyTable:
    """The DFT energies (``energy_per_atom``, corrected, eV/atom) grouped by system."""
    return energy_table(dft, dft["energy_per_atom"].to_numpy(dtype=float))


def model_energy_table(dft: pd.DataFrame, model: pd.DataFrame) -> EnergyTable:
    """A model's energies grouped by system, each plus the material's DFT correction
    (:func:`corrected_model_energies`)."""
    return energy_table(model, corrected_model_energies(dft, model))


def corrected_model_energies(dft: pd.DataFrame, model: pd.DataFrame) -> np.ndarray:
    """A model's energy per atom of each material plus that material's DFT correction
    per atom (0 without one), so that it is comparable with the DFT energies.

    Args:
        dft: material_id and correction_per_atom (eV/atom) of each DFT material.
        model: material_id and energy_per_atom (eV/atom, uncorrected), m rows.

    Returns:
        (m,) eV/atom.
    """
    correction = dict(zip(dft["material_id"], dft["correction_per_atom"], strict=True))
    return model["energy_per_atom"].to_numpy(dtype=float) + np.array(
        [correction.get(m, 0.0) for m in model["material_id"]]
    )


def subsystems(elements: tuple[str, ...]) -> Iterator[str]:
    """Every non-empty subset of ``elements`` as a chemical system, smallest first; the
    system itself comes last."""
    for size in range(1, len(elements) + 1):
        for subset in combinations(elements, size):
            yield "-".join(subset)


def gather(
    by_system: dict[str, SystemEntries], elements: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every entry whose elements are a subset of ``elements`` (k of them).

    Returns:
        fractions (n, k) in the order of ``elements``, energies (n,) eV/atom, and the
        entries' rows (n,) in their energy table; the system's own entries come last.

    Raises:
        MissingTerminal: no entry at all (every element lacks a reference).
    """
    column = {e: i for i, e in enumerate(elements)}
    parts = [by_system[s] for s in subsystems(elements) if s in by_system]
    if not parts:
        raise MissingTerminal(list(range(len(elements))))
    fractions = np.zeros((sum(len(p.rows) for p in parts), len(elements)))
    start = 0
    for part in parts:
        stop = start + len(part.rows)
        fractions[start:stop, [column[e] for e in part.elements]] = part.fractions
        start = stop
    return (
        fractions,
        np.concatenate([p.energies_ev_per_atom for p in parts]),
        np.concatenate([p.rows for p in parts]),
    )


def decomposition(dft: EnergyTable, rows: np.ndarray, weights: np.ndarray) -> tuple[Phase, ...]:
    """The phases with a positive weight, largest first.

    Args:
        dft: the table the rows index.
        rows: (k,) rows of the hull phases.
        weights: (k,) their atom fractions.
    """
    return tuple(
        Phase(str(dft.keys[r]), str(dft.formulas[r]), round(float(w), 9))
        for r, w in sorted(zip(rows.tolist(), weights.tolist(), strict=True), key=lambda x: -x[1])
        if w > 0
    )


def dft_stability(dft: EnergyTable, system: str) -> SystemStability:
    """Stability of the DFT materials of one chemical system against the DFT hull.

    Raises:
        MissingTerminal: an element of the system has no pure DFT entry.
    """
    own = dft.by_system[system]
    fractions, energies, rows = gather(dft.by_system, own.elements)
    hull = build_hull(fractions, energies)
    offset = len(rows) - len(own.rows)  # subsystems() yields the system itself last
    assert (rows[offset:] == own.rows).all()
    index = np.arange(offset, offset + len(own.rows))
    e_above = own.energies_ev_per_atom - hull.energies(own.fractions)
    e_above = np.where(np.abs(e_above) < ZERO_TOLERANCE_EV_PER_ATOM, 0.0, e_above)
    formation = hull.formation_energies(own.fractions, own.energies_ev_per_atom)
    decomposed, weights = hull.decompositions(own.fractions)
    vertices = set(hull.vertices.tolist())
    results = []
    for i, position in enumerate(index):
        if position not in vertices:
            phases = decomposition(dft, rows[decomposed[i]], weights[i])
            distance = e_above[i]
        else:
            e_above[i] = 0.0
            phases = decomposition(dft, own.rows[i : i + 1], np.ones(1))
            without = hull_without(fractions, energies, int(position))
            # The only pure entry of its element has no other phase to compete with.
            if without is None:
                distance = 0.0
            else:
                hull_energy = without[0].energies(own.fractions[i : i + 1])[0]
                distance = float(own.energies_ev_per_atom[i] - hull_energy)
        results.append(
            MaterialStability(
                material_id=int(dft.material_ids[own.rows[i]]),
                energy_per_atom_ev=float(own.energies_ev_per_atom[i]),
                formation_energy_ev_per_atom=float(formation[i]),
                e_above_hull_ev_per_atom=float(e_above[i]),
                distance_to_hull_ev_per_atom=float(distance),
                decomposition=phases,
            )
        )
    return SystemStability(results)


def model_stability(dft: EnergyTable, model: EnergyTable, system: str) -> SystemStability:
    """A model's energies of one system's materials against the DFT hull of the others.

    A material whose own DFT energy is a hull vertex is placed against the hull without
    it; when that entry is its element's only pure entry, the material is listed in
    ``sole_references`` instead.

    Raises:
        MissingTerminal: an element of the system has no pure DFT entry.
    """
    candidates = model.by_system[system]
    fractions, energies, rows = gather(dft.by_system, candidates.elements)
    hull = build_hull(fractions, energies)
    vertex_of = {int(dft.material_ids[rows[v]]): int(v) for v in hull.vertices}
    results, sole_references = [], []
    for i, row in enumerate(candidates.rows):
        material_id = int(model.material_ids[row])
        x, energy = candidates.fractions[i : i + 1], float(candidates.energies_ev_per_atom[i])
        used, used_rows = hull, rows
        if material_id in vertex_of:  # its own DFT energy shapes the hull: leave it out
            without = hull_without(fractions, energies, vertex_of[material_id])
            if without is None:
                sole_references.append(str(model.keys[row]))
                continue
            used, kept = without
            used_rows = rows[kept]
        decomposed, weights = used.decompositions(x)
        e_above = energy - float(used.energies(x)[0])
        results.append(
            MaterialStability(
                material_id=material_id,
                energy_per_atom_ev=energy,
                formation_energy_ev_per_atom=float(
                    used.formation_energies(x, np.array([energy]))[0]
                ),
                e_above_hull_ev_per_atom=e_above,
                distance_to_hull_ev_per_atom=e_above,
                decomposition=decomposition(dft, used_rows[decomposed[0]], weights[0]),
            )
        )
    return SystemStability(results, sole_references)


def touched_systems(
    dft: EnergyTable,
    model: EnergyTable | None,
    since: Watermarks,
    previously_stable: set[int] | None,
) -> TouchedSystems:
    """Systems with energies newer than ``since``, and among them those whose hull
    changed.

    A new energy changes the hull of every system containing its own only when it is on
    its own system's hull now, or its material was on the DFT hull before (an energy
    that went up). Model energies never shape a hull (it is DFT's).

    Args:
        dft: the DFT energies, with entry_id and relaxation_id (None where the energy
            did not come from one).
        model: a model's energies, with relaxation_id; None for a DFT run.
        since: the previous run's watermarks.
        previously_stable: materials on the DFT hull at the previous run; None when not
            known, so every new DFT energy counts as changing its hull.
    """
    frame = dft.frame
    newer = np.flatnonzero(
        (frame["entry_id"].fillna(-1) > since.energy_entry_id)
        | (frame["relaxation_id"].fillna(-1) > since.dft_relaxation_id)
    )
    systems = [dft.systems[row] for row in newer]
    hull_vertices: dict[str, set[int]] = {}
    shaping = set()
    for row, system in zip(newer.tolist(), systems, strict=True):
        if system not in hull_vertices:
            fractions, energies, rows = gather(dft.by_system, tuple(system.split("-")))
            try:
                hull_vertices[system] = set(rows[build_hull(fractions, energies).vertices].tolist())
            except MissingTerminal:
                hull_vertices[system] = set(rows.tolist())  # unknown: assume it shapes
        if (
            previously_stable is None
            or row in hull_vertices[system]
            or int(dft.material_ids[row]) in previously_stable
        ):
            shaping.add(system)
    touched = set(systems)
    if model is not None:
        newer_model = np.flatnonzero(model.frame["relaxation_id"] > (since.ml_relaxation_id or 0))
        touched |= {model.systems[row] for row in newer_model}
    return TouchedSystems(touched, shaping)


def systems_to_recompute(
    occurring: Iterable[str], chemsys: tuple[str, ...], touched: TouchedSystems | None
) -> list[str]:
    """The occurring systems to recompute, sorted.

    Args:
        occurring: the systems with energies to place.
        chemsys: only these systems and their subsystems (empty: no restriction).
        touched: when incremental, what new energies touched: those systems and every
            system containing one whose hull changed; None: every system.
    """
    wanted = set(occurring)
    if chemsys:
        allowed = {sub for c in chemsys for sub in subsystems(tuple(c.split("-")))}
        wanted &= allowed
    if touched is not None:
        wanted = {
            s
            for s in wanted
            if s in touched.with_new_energies
            or any(sub in touched.with_changed_hull for sub in subsystems(tuple(s.split("-"))))
        }
    return sorted(wanted)


def watermarks(dft: EnergyTable, model: EnergyTable | None) -> Watermarks:
    """The largest energy-entry and relaxation ids in the tables (0 where none)."""

    def largest(series: pd.Series) -> int:
        return int(series.max()) if series.notna().any() else 0

    return Watermarks(
        energy_entry_id=largest(dft.frame["entry_id"]),
        dft_relaxation_id=largest(dft.frame["relaxation_id"]),
        ml_relaxation_id=None if model is None else largest(model.frame["relaxation_id"]),
    )


@dataclass(frozen=True)
class StabilityScores:
    """How well a model's e_above_hull classifies stability (see
    :func:`atlas2d.analysis.metrics.stability_metrics`).

    Attributes:
        metrics: over every material.
        per_element: {element: metrics} over the materials containing it, by element.
        per_spacegroup: {space group number or ``unknown``: metrics}.
    """

    metrics: dict[str, Any]
    per_element: dict[str, dict[str, Any]]
    per_spacegroup: dict[str, dict[str, Any]]

    def element_table(self) -> pd.DataFrame:
        """element and :data:`SCORE_COLUMNS`, the largest e_above_hull MAE first."""
        table = pd.DataFrame([{"element": e, **m} for e, m in self.per_element.items()])
        return table[["element", *SCORE_COLUMNS]].sort_values(
            "e_above_hull_mae_mev_per_atom", ascending=False
        )


def score_stability(paired: pd.DataFrame, threshold_ev_per_atom: float) -> StabilityScores:
    """Stability metrics of a model against DFT, overall, per element and per space group.

    Args:
        paired: one row per material with both results: dft_hull_distance and
            ml_e_above_hull (eV/atom), elements (list of symbols), spacegroup (number
            or missing).
        threshold_ev_per_atom: stable means e_above_hull ≤ threshold, on both sides.
    """

    def metrics(frame: pd.DataFrame) -> dict[str, Any]:
        return stability_metrics(
            frame["dft_hull_distance"].to_numpy(float),
            frame["ml_e_above_hull"].to_numpy(float),
            threshold_ev_per_atom,
        )

    return StabilityScores(
        metrics(paired),
        {
            str(element): metrics(group)
            for element, group in paired.explode("elements").groupby("elements", sort=True)
        },
        {
            str(int(group_key)) if pd.notna(group_key) else "unknown": metrics(group)
            for group_key, group in paired.groupby("spacegroup", dropna=False)
        },
    )
