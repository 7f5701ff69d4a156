"""Convex hulls per energy source, per chemical system, incrementally; stable lists.

An energy source is ``dft`` or a model version (``NAME:VERSION``):

- ``dft``: every material with a DFT energy (2D layers and 3D bulk references alike):
  its convex-hull entry's corrected energy when it has one, else its last converged
  DFT relaxation's final energy (``queries.stability.DFT_ENERGIES_SQL``).
- a model: the ML-relaxed energy of each material it relaxed (plus that material's
  DFT energy correction per atom, so both sides use one convention), placed against
  the DFT hull of all *other* materials, as Matbench Discovery does.

One hull per chemical system that occurs, built from the entries whose elements are a
subset of it (a hull over every element at once would be a qhull problem in dozens of
dimensions). A run recomputes only the systems that contain a material whose energy is
newer than the previous run's watermarks, unless asked for all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from ase.data import chemical_symbols
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.hull import MissingTerminal, build_hull, hull_without
from atlas2d.errors import InvalidInput
from atlas2d.queries import stability as queries
from atlas2d.queries.materials import normalise_chemsys
from atlas2d.services.models import label, resolve

DFT = "dft"
ZERO_TOL = 1e-9
"""|e_above_hull| below this (eV/atom) is rounding: stored as 0 for DFT."""
DFT_ENERGY_RULE = "energy entry (energy + correction), else the last converged DFT relaxation"
ML_ENERGY_RULE = (
    "latest converged ML relaxation (else the latest) + the material's DFT correction per atom"
)


@dataclass
class HullUpdate:
    """What one ``hull update`` did.

    Attributes:
        skipped: {reason: material keys} of materials with no result.
    """

    energy_source: str
    hull_run: int | None
    incremental: bool
    chemsys_recomputed: int
    materials_written: int
    stable: int
    skipped: dict[str, list[str]] = field(default_factory=dict)
    wall_time_s: float = 0.0


@dataclass
class _Block:
    """The entries of one chemical system: atom fractions (n, k) in the order of
    ``elements`` (alphabetical), energies (n,) eV/atom, and their rows in the frame."""

    elements: tuple[str, ...]
    fractions: np.ndarray
    energies: np.ndarray
    rows: np.ndarray


def _compositions(frame: pd.DataFrame) -> tuple[list[str], list[np.ndarray]]:
    """Each row's chemical system (from its species) and atom fractions in that order."""
    systems, fractions = [], []
    for species in frame["species"]:
        numbers, counts = np.unique(np.asarray(species), return_counts=True)
        symbols = [chemical_symbols[z] for z in numbers]
        order = np.argsort(symbols)
        systems.append("-".join(symbols[i] for i in order))
        fractions.append(counts[order] / counts.sum())
    return systems, fractions


def _blocks(
    systems: list[str], fractions: list[np.ndarray], energies: np.ndarray
) -> dict[str, _Block]:
    """The rows grouped by chemical system (``systems``, ``fractions`` from
    :func:`_compositions`; ``energies`` (n,) eV/atom)."""
    grouped: dict[str, list[int]] = {}
    for row, system in enumerate(systems):
        grouped.setdefault(system, []).append(row)
    return {
        system: _Block(
            tuple(system.split("-")),
            np.array([fractions[r] for r in rows]),
            energies[rows],
            np.array(rows),
        )
        for system, rows in grouped.items()
    }


def _subsystems(elements: tuple[str, ...]) -> Iterator[str]:
    for size in range(1, len(elements) + 1):
        for subset in combinations(elements, size):
            yield "-".join(subset)


def _gather(
    blocks: dict[str, _Block], elements: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractions (n, k), energies (n,) and frame rows (n,) of every entry whose elements
    are a subset of ``elements``."""
    column = {e: i for i, e in enumerate(elements)}
    parts = [blocks[s] for s in _subsystems(elements) if s in blocks]
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
        np.concatenate([p.energies for p in parts]),
        np.concatenate([p.rows for p in parts]),
    )


def _decomposition(
    names: tuple[np.ndarray, np.ndarray], rows: np.ndarray, weights: np.ndarray
) -> list[dict[str, Any]]:
    """[{material_key, formula, fraction}] of the phases with a positive weight, largest
    first; ``names`` are the DFT frame's keys and formulas."""
    keys, formulas = names
    return [
        {"material_key": keys[r], "formula": formulas[r], "fraction": round(float(w), 9)}
        for r, w in sorted(zip(rows.tolist(), weights.tolist(), strict=True), key=lambda x: -x[1])
        if w > 0
    ]


def _touched_systems(
    dft: pd.DataFrame,
    dft_systems: list[str],
    ml: pd.DataFrame | None,
    ml_systems: list[str],
    blocks: dict[str, _Block],
    watermarks: dict[str, int],
    previously_stable: set[int] | None,
) -> tuple[set[str], set[str]]:
    """Systems with energies newer than the watermarks, and among them those whose hull
    changed: a new energy changes the hull of every system containing its own only when
    it is on its own system's hull now, or its material was on the DFT hull before (an
    energy that went up). ``previously_stable`` None: that earlier state is not known,
    so every new DFT energy counts as changing its hull. Model energies never shape a
    hull (it is DFT's)."""
    newer = np.flatnonzero(
        (dft["entry_id"].fillna(-1) > watermarks.get("energy_entry_id", 0))
        | (dft["relaxation_id"].fillna(-1) > watermarks.get("dft_relaxation_id", 0))
    )
    systems = [dft_systems[row] for row in newer]
    material_ids = dft["material_id"].to_numpy()
    hull_vertices: dict[str, set[int]] = {}
    shaping = set()
    for row, system in zip(newer.tolist(), systems, strict=True):
        if system not in hull_vertices:
            fractions, energies, rows = _gather(blocks, tuple(system.split("-")))
            try:
                hull_vertices[system] = set(rows[build_hull(fractions, energies).vertices].tolist())
            except MissingTerminal:
                hull_vertices[system] = set(rows.tolist())  # unknown: assume it shapes
        if (
            previously_stable is None
            or row in hull_vertices[system]
            or int(material_ids[row]) in previously_stable
        ):
            shaping.add(system)
    touched = set(systems)
    if ml is not None:
        newer_ml = np.flatnonzero(ml["relaxation_id"] > watermarks.get("ml_relaxation_id", 0))
        touched |= {ml_systems[row] for row in newer_ml}
    return touched, shaping


def _watermarks(dft: pd.DataFrame, ml: pd.DataFrame | None) -> dict[str, int]:
    def largest(series: pd.Series) -> int:
        return int(series.max()) if series.notna().any() else 0

    marks = {
        "energy_entry_id": largest(dft["entry_id"]),
        "dft_relaxation_id": largest(dft["relaxation_id"]),
    }
    if ml is not None:
        marks["ml_relaxation_id"] = largest(ml["relaxation_id"])
    return marks


class _Writer:
    """Collects stability rows and skips for one run."""

    def __init__(self, energy_source: str, model_version_id: int | None) -> None:
        self.energy_source = energy_source
        self.model_version_id = model_version_id
        self.rows: list[tuple[Any, ...]] = []
        self.recomputed: list[int] = []
        self.skipped: dict[str, list[str]] = {}

    def skip(self, reason: str, keys: list[str]) -> None:
        self.skipped.setdefault(reason, []).extend(keys)

    def add(self, material_id: int, energy: float, formation: float, e_above: float,
            distance: float, decomposition: list[dict[str, Any]]) -> None:  # fmt: skip
        self.rows.append((material_id, self.energy_source, self.model_version_id, None,
                          energy, formation, e_above, distance, decomposition))  # fmt: skip


def _dft_system(
    writer: _Writer,
    frame: pd.DataFrame,
    names: tuple[np.ndarray, np.ndarray],
    blocks: dict[str, _Block],
    system: str,
) -> None:
    """Stability of the DFT materials of one system against the DFT hull."""
    own = blocks[system]
    fractions, energies, rows = _gather(blocks, own.elements)
    hull = build_hull(fractions, energies)  # MissingTerminal handled by the caller
    offset = len(rows) - len(own.rows)  # _subsystems yields the system itself last
    assert (rows[offset:] == own.rows).all()
    index = np.arange(offset, offset + len(own.rows))
    e_above = own.energies - hull.energies(own.fractions)
    e_above = np.where(np.abs(e_above) < ZERO_TOL, 0.0, e_above)
    formation = hull.formation_energies(own.fractions, own.energies)
    decomposed, weights = hull.decompositions(own.fractions)
    vertices = set(hull.vertices.tolist())
    ids = frame["material_id"].to_numpy()
    for i, position in enumerate(index):
        if position not in vertices:
            decomposition = _decomposition(names, rows[decomposed[i]], weights[i])
            distance = e_above[i]
        else:
            e_above[i] = 0.0
            decomposition = _decomposition(names, own.rows[i : i + 1], np.ones(1))
            without = hull_without(fractions, energies, int(position))
            # The only pure entry of its element has no other phase to compete with.
            distance = 0.0 if without is None else float(
                own.energies[i] - without[0].energies(own.fractions[i : i + 1])[0]
            )  # fmt: skip
        writer.add(int(ids[own.rows[i]]), float(own.energies[i]), float(formation[i]),
                   float(e_above[i]), float(distance), decomposition)  # fmt: skip


def _ml_system(
    writer: _Writer,
    dft: pd.DataFrame,
    names: tuple[np.ndarray, np.ndarray],
    blocks: dict[str, _Block],
    candidates: _Block,
    ml: pd.DataFrame,
) -> None:
    """A model's energies of one system's materials against the DFT hull of the others."""
    fractions, energies, rows = _gather(blocks, candidates.elements)
    hull = build_hull(fractions, energies)
    vertex_of = {int(dft["material_id"].iat[rows[v]]): int(v) for v in hull.vertices}
    for i, row in enumerate(candidates.rows):
        material_id = int(ml["material_id"].iat[row])
        x, energy = candidates.fractions[i : i + 1], float(candidates.energies[i])
        used, used_rows = hull, rows
        if material_id in vertex_of:  # its own DFT energy shapes the hull: leave it out
            without = hull_without(fractions, energies, vertex_of[material_id])
            if without is None:
                writer.skip("its DFT entry is the only reference of its element", [ml["key"].iat[row]])  # fmt: skip
                continue
            used, kept = without
            used_rows = rows[kept]
        decomposed, weights = used.decompositions(x)
        e_above = energy - float(used.energies(x)[0])
        writer.add(material_id, energy, float(used.formation_energies(x, np.array([energy]))[0]),
                   e_above, e_above, _decomposition(names, used_rows[decomposed[0]], weights[0]))  # fmt: skip


def _checked_chemsys(chemsys: str) -> str:
    """``S-Mo`` → ``Mo-S``; refuses what is not a dash-separated list of elements."""
    elements = (normalise_chemsys(chemsys) or "").split("-")
    unknown = [e for e in elements if e not in chemical_symbols[1:]]
    if unknown:
        raise InvalidInput(
            f"--chemsys {chemsys!r}: {', '.join(repr(e) for e in unknown)} is not an element; "
            "write a chemical system as elements joined by '-', e.g. Mo-S."
        )
    return "-".join(elements)


def _targets(
    occurring: set[str],
    chemsys: tuple[str, ...],
    touched: tuple[set[str], set[str]] | None,
) -> list[str]:
    """Occurring systems to recompute: within the --chemsys filter (subsystems of any
    given system); when incremental, the touched systems and every system containing a
    system whose hull changed."""
    wanted = set(occurring)
    if chemsys:
        allowed = {sub for c in chemsys for sub in _subsystems(tuple(c.split("-")))}
        wanted &= allowed
    if touched is not None:
        own, shaping = touched
        wanted = {
            s
            for s in wanted
            if s in own or any(sub in shaping for sub in _subsystems(tuple(s.split("-"))))
        }
    return sorted(wanted)


def update_hull(
    sessions: sessionmaker[Session],
    energy: str = DFT,
    chemsys: tuple[str, ...] = (),
    recompute_all: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> HullUpdate:
    """Recompute the convex hulls of one energy source and store each material's stability.

    Args:
        energy: ``dft`` or a model reference (``NAME`` or ``NAME:VERSION``).
        chemsys: only these chemical systems and their subsystems (e.g. ``Mo-S`` also
            recomputes ``Mo`` and ``S``); a restricted run keeps the previous watermarks
            so the next full incremental run still sees everything new.
        recompute_all: every system, not only those touched since the last run.
        progress: called with (systems done, systems to do).
    """
    started = time.perf_counter()
    chemsys = tuple(_checked_chemsys(c) for c in chemsys)
    with sessions.begin() as session:
        energy_source, model_version_id = _energy_source(session, energy)
        dft = queries.dft_energies(session)
        ml = None if model_version_id is None else queries.ml_energies(session, model_version_id)
        previous = queries.last_hull_run(session, energy_source)
        # What was on the DFT hull when the last run of this source saw its energies: the
        # stored DFT results, unless a model's run (the DFT rows may be newer than it) or
        # a --chemsys run since the last full one (it rewrote rows, kept watermarks).
        previously_stable = None
        if previous and model_version_id is None and not previous["parameters"]["chemsys"]:
            previously_stable = queries.dft_stable_material_ids(session)
    if ml is not None and ml.empty:
        raise InvalidInput(
            f"Model {energy_source} has relaxed no material: run `atlas2d relax --model "
            f"{energy_source} …` first."
        )
    dft_systems, dft_fractions = _compositions(dft)
    blocks = _blocks(dft_systems, dft_fractions, dft["energy_per_atom"].to_numpy(dtype=float))
    names = (dft["key"].to_numpy(), dft["formula"].to_numpy())
    candidates: dict[str, _Block] = {}
    ml_systems: list[str] = []
    if ml is not None:
        correction = dict(zip(dft["material_id"], dft["correction_per_atom"], strict=True))
        ml_energies = ml["energy_per_atom"].to_numpy(dtype=float) + np.array(
            [correction.get(m, 0.0) for m in ml["material_id"]]
        )
        ml_systems, ml_fractions = _compositions(ml)
        candidates = _blocks(ml_systems, ml_fractions, ml_energies)
    occurring = set(candidates if ml is not None else blocks)
    incremental = previous is not None and not recompute_all
    touched = None
    if incremental:
        touched = _touched_systems(
            dft, dft_systems, ml, ml_systems, blocks, previous["watermarks"], previously_stable
        )
    targets = _targets(occurring, chemsys, touched)
    if chemsys and not targets and not incremental:
        raise InvalidInput(
            f"No chemical system with {energy_source} energies lies within --chemsys "
            f"{', '.join(chemsys)}; `atlas2d materials list` shows what is stored."
        )

    writer = _Writer(energy_source, model_version_id)
    source_frame, source_blocks = (dft, blocks) if ml is None else (ml, candidates)
    for done, system in enumerate(targets, 1):
        own = source_blocks[system]
        material_ids = source_frame["material_id"].to_numpy()[own.rows]
        writer.recomputed.extend(int(m) for m in material_ids)
        try:
            if ml is None:
                _dft_system(writer, dft, names, blocks, system)
            else:
                _ml_system(writer, dft, names, blocks, own, ml)
        except MissingTerminal as missing:
            elements = [tuple(system.split("-"))[i] for i in missing.missing]
            reason = f"no DFT elemental reference for {', '.join(elements)}"
            writer.skip(reason, source_frame["key"].to_numpy()[own.rows].tolist())
        if progress is not None:
            progress(done, len(targets))

    stable = sum(1 for r in writer.rows if r[6] <= 0.0)
    if not targets:
        return HullUpdate(energy_source, None, incremental, 0, 0, 0, {},
                          time.perf_counter() - started)  # fmt: skip
    watermarks = _watermarks(dft, ml)
    if chemsys:
        watermarks = previous["watermarks"] if previous else {k: 0 for k in watermarks}
    with sessions.begin() as session:
        run_id = queries.insert_hull_run(
            session,
            {
                "energy_source": energy_source,
                "model_version_id": model_version_id,
                "parameters": {
                    "chemsys": list(chemsys),
                    "all": recompute_all,
                    "incremental": incremental,
                    "dft_energy": DFT_ENERGY_RULE,
                    "ml_energy": None if ml is None else ML_ENERGY_RULE,
                    "zero_tolerance_ev_per_atom": ZERO_TOL,
                },
                "watermarks": watermarks,
                "counts": {
                    "chemsys_recomputed": len(targets),
                    "materials_written": len(writer.rows),
                    "stable": stable,
                    "skipped": {k: len(v) for k, v in writer.skipped.items()},
                },
                "wall_time_s": time.perf_counter() - started,
            },
        )
        queries.replace_stability(
            session,
            energy_source,
            None if recompute_all and not chemsys else writer.recomputed,
            ((*r[:3], run_id, *r[4:]) for r in writer.rows),
        )
    return HullUpdate(
        energy_source,
        run_id,
        incremental,
        len(targets),
        len(writer.rows),
        stable,
        writer.skipped,
        time.perf_counter() - started,
    )


def _energy_source(session: Session, energy: str) -> tuple[str, int | None]:
    """(``dft``, None), or the ``NAME:VERSION`` label and id of the model version
    ``energy`` names."""
    if energy == DFT:
        return DFT, None
    row = resolve(session, energy)
    return label(row), int(row["id"])


def stable_list(
    sessions: sessionmaker[Session],
    energy: str = DFT,
    max_ehull_ev: float = 0.0,
    dimensionality: int | None = None,
    chemsys: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Materials with e_above_hull ≤ ``max_ehull_ev`` (eV/atom) by one energy source.

    Columns: material_key, formula, chemsys, spacegroup, e_above_hull_mev_per_atom,
    formation_energy_ev_per_atom, energy_source, hull_run.
    """
    with sessions.begin() as session:
        return queries.stable_materials(
            session,
            _energy_source(session, energy)[0],
            max_ehull_ev,
            dimensionality,
            [normalise_chemsys(c) or "" for c in chemsys],
        )
