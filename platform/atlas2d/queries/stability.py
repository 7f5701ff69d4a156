"""Energies for convex hulls, hull runs and stability rows. Functions take ``session``
first and never commit. Energies are eV/atom."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from atlas2d.analysis.stability import MaterialStability, Phase, Watermarks
from atlas2d.db.models import HullRun
from atlas2d.db.session import driver_connection
from atlas2d.queries.tabular import query_frame
from atlas2d.vocabulary import DFT

DFT_ENERGIES_SQL = """
WITH entries AS (
    SELECT DISTINCT ON (material_id)
           material_id, id, species, (energy + correction) / n_sites AS energy_per_atom,
           correction / n_sites AS correction_per_atom
    FROM energy_entries
    WHERE method = :dft
    ORDER BY material_id, id DESC
), relaxed AS (
    SELECT DISTINCT ON (material_id)
           material_id, id, species, final_energy_per_atom AS energy_per_atom
    FROM relaxations
    WHERE method = :dft AND converged IS NOT FALSE
    ORDER BY material_id, converged DESC NULLS LAST, sequence DESC, id DESC
)
SELECT m.id AS material_id, m.key, m.formula, m.chemsys,
       COALESCE(e.species, r.species) AS species,
       COALESCE(e.energy_per_atom, r.energy_per_atom) AS energy_per_atom,
       COALESCE(e.correction_per_atom, 0.0) AS correction_per_atom,
       e.id AS entry_id,
       CASE WHEN e.id IS NULL THEN r.id END AS relaxation_id
FROM materials m
LEFT JOIN entries e ON e.material_id = m.id
LEFT JOIN relaxed r ON r.material_id = m.id
WHERE e.id IS NOT NULL OR r.id IS NOT NULL
"""
"""Each material's DFT energy: its latest convex-hull entry (energy + correction, the
pymatgen convention) when it has one, else the final energy of its last converged DFT
relaxation (converged unknown counts after converged; not converged does not count)."""
DFT_ENERGY_RULE = "energy entry (energy + correction), else the last converged DFT relaxation"
""":data:`DFT_ENERGIES_SQL` in words, as hull runs record it."""

ML_ENERGIES_SQL = """
SELECT DISTINCT ON (r.material_id)
       r.material_id, m.key, m.formula, m.chemsys, r.species,
       r.final_energy_per_atom AS energy_per_atom, r.id AS relaxation_id
FROM relaxations r
JOIN materials m ON m.id = r.material_id
WHERE r.method = 'ml' AND r.model_version_id = :model_version_id
  AND (CAST(:material_ids AS integer[]) IS NULL OR r.material_id = ANY(:material_ids))
ORDER BY r.material_id, r.converged DESC NULLS LAST, r.id DESC
"""
"""A model's energy for each material it relaxed: its latest converged ML relaxation
(the latest of any when none converged)."""
ML_ENERGY_RULE = (
    "latest converged ML relaxation (else the latest) + the material's DFT correction per atom"
)
""":data:`ML_ENERGIES_SQL` in words (with the correction the hull adds), as hull runs
record it."""


def dft_energies(session: Session) -> pd.DataFrame:
    """One row per material with a DFT energy: material_id, key, formula, chemsys,
    species (atomic numbers), energy_per_atom and correction_per_atom (eV/atom),
    entry_id or relaxation_id (where the energy came from)."""
    return query_frame(session, DFT_ENERGIES_SQL, {"dft": DFT})


def ml_energies(
    session: Session, model_version_id: int, material_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """One row per material a model version relaxed (of ``material_ids``, when given):
    material_id, key, formula, chemsys, species, energy_per_atom (eV/atom, uncorrected),
    relaxation_id."""
    return query_frame(
        session,
        ML_ENERGIES_SQL,
        {
            "model_version_id": model_version_id,
            "material_ids": None if material_ids is None else list(material_ids),
        },
    )


def stability_values(
    session: Session,
    energy_source: str,
    material_ids: Sequence[int],
    column: Literal["e_above_hull", "hull_distance"] = "e_above_hull",
) -> dict[int, float]:
    """{material id: e_above_hull, or the signed distance to the hull of the other
    materials} by one energy source (``dft`` or ``NAME:VERSION``), eV/atom."""
    if column not in ("e_above_hull", "hull_distance"):  # a column name, never user text
        raise ValueError(f"not a stability column: {column!r}")
    rows = session.execute(
        text(
            f"SELECT material_id, {column} FROM stability"
            " WHERE energy_source = :s AND material_id = ANY(:ids)"
        ),
        {"s": energy_source, "ids": list(material_ids)},
    )
    return dict(rows.tuples().all())


@dataclass(frozen=True)
class HullRunRecord:
    """A stored hull run, as much of it as the next run needs.

    Attributes:
        id: the run.
        watermarks: the newest energies it saw.
        chemsys: the --chemsys filter it ran with (empty: every system).
    """

    id: int
    watermarks: Watermarks
    chemsys: tuple[str, ...]


def last_hull_run(session: Session, energy_source: str) -> HullRunRecord | None:
    """The latest hull run of one energy source (``dft`` or ``NAME:VERSION``), if any."""
    row = session.execute(
        select(HullRun).where(HullRun.energy_source == energy_source).order_by(HullRun.id.desc())
    ).scalar()
    if row is None:
        return None
    marks = row.watermarks
    return HullRunRecord(
        id=row.id,
        watermarks=Watermarks(
            energy_entry_id=int(marks.get("energy_entry_id", 0)),
            dft_relaxation_id=int(marks.get("dft_relaxation_id", 0)),
            ml_relaxation_id=(
                None if marks.get("ml_relaxation_id") is None else int(marks["ml_relaxation_id"])
            ),
        ),
        chemsys=tuple(row.parameters.get("chemsys") or ()),
    )


def dft_stable_material_ids(session: Session) -> set[int]:
    """Materials on the DFT hull at the last DFT hull run."""
    return set(
        session.execute(
            text(
                "SELECT material_id FROM stability WHERE energy_source = :dft AND e_above_hull <= 0"
            ),
            {"dft": DFT},
        ).scalars()
    )


def insert_hull_run(
    session: Session,
    *,
    energy_source: str,
    model_version_id: int | None,
    parameters: dict[str, Any],
    watermarks: Watermarks,
    counts: dict[str, Any],
    wall_time_s: float,
) -> int:
    """Store one hull run; its id.

    Args:
        energy_source: ``dft`` or ``NAME:VERSION``.
        model_version_id: None for DFT.
        parameters: the filters and energy rules it ran with.
        watermarks: the newest energies it saw (a model's only for a model's run).
        counts: systems recomputed, materials written, stable, skipped.
    """
    stored_marks = {
        "energy_entry_id": watermarks.energy_entry_id,
        "dft_relaxation_id": watermarks.dft_relaxation_id,
    }
    if watermarks.ml_relaxation_id is not None:
        stored_marks["ml_relaxation_id"] = watermarks.ml_relaxation_id
    return session.execute(
        insert(HullRun)
        .values(
            energy_source=energy_source,
            model_version_id=model_version_id,
            parameters=parameters,
            watermarks=stored_marks,
            counts=counts,
            wall_time_s=wall_time_s,
        )
        .returning(HullRun.id)
    ).scalar_one()


def _decomposition_json(phases: tuple[Phase, ...]) -> str:
    return json.dumps(
        [
            {"material_key": p.material_key, "formula": p.formula, "fraction": p.fraction}
            for p in phases
        ]
    )


def replace_stability(
    session: Session,
    energy_source: str,
    model_version_id: int | None,
    hull_run_id: int,
    recomputed_material_ids: Iterable[int] | None,
    results: Iterable[MaterialStability],
) -> None:
    """Delete this source's rows for the recomputed materials (None: all of them), then
    COPY one row per result, stamped with the source and the hull run. Runs of one
    source are serialised by an advisory lock."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('atlas2d stability ' || :source))"),
        {"source": energy_source},
    )
    session.execute(
        text(
            "DELETE FROM stability WHERE energy_source = :source"
            " AND (CAST(:ids AS int[]) IS NULL OR material_id = ANY(CAST(:ids AS int[])))"
        ),
        {
            "source": energy_source,
            "ids": None if recomputed_material_ids is None else list(recomputed_material_ids),
        },
    )
    connection = driver_connection(session)
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY stability (material_id, energy_source, model_version_id, hull_run_id,"
            " energy_per_atom, formation_energy_per_atom, e_above_hull, hull_distance,"
            " decomposition) FROM STDIN"
        ) as copy,
    ):
        for result in results:
            copy.write_row(
                (
                    result.material_id,
                    energy_source,
                    model_version_id,
                    hull_run_id,
                    result.energy_per_atom_ev,
                    result.formation_energy_ev_per_atom,
                    result.e_above_hull_ev_per_atom,
                    result.distance_to_hull_ev_per_atom,
                    _decomposition_json(result.decomposition),
                )
            )


def stable_materials(
    session: Session,
    energy_source: str,
    max_ehull_ev: float,
    dimensionality: int | None = None,
    chemsys: list[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``stable_compounds(max_ehull_ev, energy_source)`` with the public column
    names, optionally one dimensionality and chemical systems (exact match)."""
    return query_frame(
        session,
        "SELECT material_key, formula, chemsys, spacegroup, e_above_hull_mev_per_atom,"
        " formation_energy_ev_per_atom, energy_source, hull_run"
        " FROM stable_compounds(:max_ehull, :source)"
        " WHERE (CAST(:dim AS int) IS NULL OR dimensionality = :dim)"
        " AND (CAST(:chemsys AS text[]) IS NULL OR chemsys = ANY(CAST(:chemsys AS text[])))",
        {
            "max_ehull": max_ehull_ev,
            "source": energy_source,
            "dim": dimensionality,
            "chemsys": chemsys or None,
        },
    )


def paired_stability(session: Session, energy_source: str) -> pd.DataFrame:
    """A model's stability next to DFT's for every material with both: material_key,
    formula, elements, spacegroup, ml_e_above_hull, dft_e_above_hull, dft_hull_distance
    (eV/atom) and the two hull runs."""
    return query_frame(
        session,
        "SELECT m.key AS material_key, m.formula, m.elements, m.spacegroup_number AS spacegroup,"
        " ml.e_above_hull AS ml_e_above_hull, d.e_above_hull AS dft_e_above_hull,"
        " d.hull_distance AS dft_hull_distance,"
        " ml.hull_run_id AS ml_hull_run, d.hull_run_id AS dft_hull_run"
        " FROM stability ml"
        " JOIN stability d ON d.material_id = ml.material_id AND d.energy_source = :dft"
        " JOIN materials m ON m.id = ml.material_id"
        " WHERE ml.energy_source = :source ORDER BY m.key",
        {"source": energy_source, "dft": DFT},
    )
