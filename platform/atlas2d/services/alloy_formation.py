"""``atlas2d alloys formation``: compute, store and return a system's formation energies
from one energy source (``services.alloys`` has the rules): DFT, a force field's
relaxations, or a cluster expansion's predictions (``services.cluster_expansion``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloys as numerics
from atlas2d.analysis.alloys import AlloySystem
from atlas2d.errors import NotFound
from atlas2d.queries import alloys as queries
from atlas2d.queries.alloys import FORMATION_COLUMNS
from atlas2d.services.alloys import (
    dft_layers,
    end_members,
    formation_rows,
    how_to_add,
    system_layers,
)
from atlas2d.services.cluster_expansion import load_expansion, predicted_rows
from atlas2d.services.models import resolve
from atlas2d.vocabulary import CLUSTER_EXPANSION, DFT


def _rows(
    session: Session, system: AlloySystem, energy: str, expansion: Any
) -> tuple[str, list[dict[str, Any]]]:
    """(energy source, formation_energies rows); ``expansion`` is the loaded cluster
    expansion when ``energy`` names one, else None."""
    chemsys = [system.chemsys, *system.end_member_chemsys()]
    if energy == DFT:
        layers = dft_layers(session, system)
        ends = end_members(system, layers, DFT, how_to_add(DFT))
        return DFT, formation_rows(system, layers, ends, DFT, None)
    model = resolve(session, energy)
    if model.architecture == CLUSTER_EXPANSION:
        return model.label, predicted_rows(session, system, model, expansion)
    layers = system_layers(system, queries.ml_layer_energies(session, model.id, chemsys))
    ends = end_members(system, layers, f"model {model.label}", how_to_add(model.label))
    alloys = [s for s in layers if 0.0 < s.composition.x < 1.0]
    if not alloys:
        raise NotFound(
            f"Model {model.label} has relaxed no {system.label} alloy: run `atlas2d relax "
            f"--model {model.label} --chemsys {system.chemsys} --dimensionality 2`."
        )
    return model.label, formation_rows(system, layers, ends, model.label, model.id)


def _expansion(sessions: sessionmaker[Session], energy: str, artifacts_dir: Path | None) -> Any:
    """The cluster expansion ``energy`` names, loaded (its file checked, fetched from
    the database if need be) before the transaction that stores its predictions; None
    for ``dft`` or a force field."""
    if energy == DFT:
        return None
    with sessions.begin() as session:
        model = resolve(session, energy)
    if model.architecture != CLUSTER_EXPANSION:
        return None
    if artifacts_dir is None:
        raise ValueError("a cluster expansion needs the artifacts folder")
    return load_expansion(sessions, model, artifacts_dir)


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
    expansion = _expansion(sessions, energy, artifacts_dir)
    with sessions.begin() as session:
        source, rows = _rows(session, system, energy, expansion)
        queries.upsert_formation_energies(session, rows)
        queries.delete_formation_energies(
            session,
            system.label,
            source,
            [int(r["material_id"]) for r in rows],
        )
        table = queries.formation_table(session, [system.label], [source])
    return table.loc[:, list(FORMATION_COLUMNS)]
