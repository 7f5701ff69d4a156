"""Convex hulls per energy source, per chemical system, incrementally; stable lists.

An energy source is ``dft`` or a model version (``NAME:VERSION``):

- ``dft``: every material with a DFT energy (2D layers and 3D bulk references alike):
  its convex-hull entry's corrected energy when it has one, else its last converged
  DFT relaxation's final energy (``queries.stability.DFT_ENERGIES_SQL``).
- a model: the ML-relaxed energy of each material it relaxed (plus that material's
  DFT energy correction per atom, so both sides use one convention), placed against
  the DFT hull of all *other* materials, as Matbench Discovery does.

One hull per chemical system that occurs (:mod:`atlas2d.analysis.stability`). A run
recomputes only the systems that contain a material whose energy is newer than the
previous run's watermarks, unless asked for all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from ase.data import chemical_symbols
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.hull import MissingTerminal
from atlas2d.analysis.stability import (
    ZERO_TOLERANCE_EV_PER_ATOM,
    MaterialStability,
    Watermarks,
    dft_energy_table,
    dft_stability,
    model_energy_table,
    model_stability,
    systems_to_recompute,
    touched_systems,
    watermarks,
)
from atlas2d.errors import InvalidInput
from atlas2d.queries import stability as queries
from atlas2d.queries.materials import normalise_chemsys
from atlas2d.services.models import resolve
from atlas2d.vocabulary import DFT

SOLE_REFERENCE = "its DFT entry is the only reference of its element"
"""Why a model's material is skipped when no hull is left without its DFT entry."""


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

    Raises:
        InvalidInput: ``chemsys`` names no element, the model relaxed no material, or
            no system with energies lies within ``chemsys``.
    """
    started = time.perf_counter()
    chemsys = tuple(_checked_chemsys(c) for c in chemsys)
    with sessions.begin() as session:
        energy_source, model_version_id = _energy_source(session, energy)
        dft_frame = queries.dft_energies(session)
        model_frame = (
            None if model_version_id is None else queries.ml_energies(session, model_version_id)
        )
        previous = queries.last_hull_run(session, energy_source)
        # What was on the DFT hull when the last run of this source saw its energies: the
        # stored DFT results, unless a model's run (the DFT rows may be newer than it) or
        # a --chemsys run since the last full one (it rewrote rows, kept watermarks).
        previously_stable = None
        if previous is not None and model_version_id is None and not previous.chemsys:
            previously_stable = queries.dft_stable_material_ids(session)
    if model_frame is not None and model_frame.empty:
        raise InvalidInput(
            f"Model {energy_source} has relaxed no material: run `atlas2d relax --model "
            f"{energy_source} …` first."
        )
    dft = dft_energy_table(dft_frame)
    model = None if model_frame is None else model_energy_table(dft_frame, model_frame)
    placed = dft if model is None else model
    touched = None
    if previous is not None and not recompute_all:
        touched = touched_systems(dft, model, previous.watermarks, previously_stable)
    incremental = touched is not None
    targets = systems_to_recompute(placed.by_system, chemsys, touched)
    if chemsys and not targets and not incremental:
        raise InvalidInput(
            f"No chemical system with {energy_source} energies lies within --chemsys "
            f"{', '.join(chemsys)}; `atlas2d materials list` shows what is stored."
        )

    results: list[MaterialStability] = []
    recomputed: list[int] = []
    skipped: dict[str, list[str]] = {}
    for done, system in enumerate(targets, 1):
        recomputed.extend(placed.material_ids_of(system))
        try:
            outcome = (
                dft_stability(dft, system) if model is None else model_stability(dft, model, system)
            )
        except MissingTerminal as missing:
            elements = [system.split("-")[i] for i in missing.missing]
            reason = f"no DFT elemental reference for {', '.join(elements)}"
            skipped.setdefault(reason, []).extend(placed.keys_of(system))
        else:
            results.extend(outcome.materials)
            if outcome.sole_references:
                skipped.setdefault(SOLE_REFERENCE, []).extend(outcome.sole_references)
        if progress is not None:
            progress(done, len(targets))

    stable = sum(1 for result in results if result.stable)
    if not targets:
        return HullUpdate(
            energy_source, None, incremental, 0, 0, 0, {}, time.perf_counter() - started
        )
    marks = watermarks(dft, model)
    if chemsys:  # keep the previous watermarks (zeros: none): the next run sees it all
        marks = (
            previous.watermarks
            if previous is not None
            else Watermarks(ml_relaxation_id=None if model is None else 0)
        )
    with sessions.begin() as session:
        run_id = queries.insert_hull_run(
            session,
            energy_source=energy_source,
            model_version_id=model_version_id,
            parameters={
                "chemsys": list(chemsys),
                "all": recompute_all,
                "incremental": incremental,
                "dft_energy": queries.DFT_ENERGY_RULE,
                "ml_energy": None if model is None else queries.ML_ENERGY_RULE,
                "zero_tolerance_ev_per_atom": ZERO_TOLERANCE_EV_PER_ATOM,
            },
            watermarks=marks,
            counts={
                "chemsys_recomputed": len(targets),
                "materials_written": len(results),
                "stable": stable,
                "skipped": {k: len(v) for k, v in skipped.items()},
            },
            wall_time_s=time.perf_counter() - started,
        )
        queries.replace_stability(
            session,
            energy_source,
            model_version_id,
            run_id,
            None if recompute_all and not chemsys else recomputed,
            results,
        )
    return HullUpdate(
        energy_source,
        run_id,
        incremental,
        len(targets),
        len(results),
        stable,
        skipped,
        time.perf_counter() - started,
    )


def _energy_source(session: Session, energy: str) -> tuple[str, int | None]:
    """(``dft``, None), or the ``NAME:VERSION`` label and id of the model version
    ``energy`` names."""
    if energy == DFT:
        return DFT, None
    row = resolve(session, energy)
    return row.label, row.id


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
