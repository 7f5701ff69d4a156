"""A small provenance graph for the audit tests, in one transaction of the test's
sessions (no training: model versions, ML relaxations, hull runs and campaign rows are
registry rows standing for what the commands would write).

    files:   a.json (materials a-000000…a-000003)   b.json (b-000000…b-000003)
    sets:    "both" (a and b, 50:25:25)               "a-only" (a, 100:0:0)
    models:  base:1 on "both"  ─ parent of ─▶  tuned:1 on "a-only"
             other:1 on "a-only" (never saw b)
    results: ML relaxations of b-000000 by base:1 and by tuned:1 (and of a-000000 by
             other:1); stability of b-000000 from DFT, base:1 and tuned:1; a campaign
             whose iteration 1, screened by tuned:1, decided about b-000001.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.models import Relaxation
from atlas2d.io.readers import ReadOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_file
from atlas2d.services.trainsets import create_training_set
from tests.support.synthetic import alexandria_document, synthetic_trajectories


@dataclass
class Provenance:
    """Ids and paths of the graph's rows."""

    a_path: Path
    b_path: Path
    models: dict[str, int]
    """``NAME:VERSION`` → model_versions.id."""
    ml_relaxations: dict[str, int]
    """``MODEL@KEY`` → relaxations.id."""


def write_layers(folder: Path, key_prefix: str, n_materials: int = 4, seed: int = 0) -> Path:
    """An Alexandria trajectory file of ``n_materials`` layers keyed ``{key_prefix}-…``."""
    trajectories = synthetic_trajectories(n_materials, 5, 3, seed=seed, key_prefix=key_prefix)
    path = folder / f"{key_prefix}.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


def _model(session: Session, name: str, training_set: str, parent_id: int | None) -> int:
    return session.execute(
        text(
            "INSERT INTO model_versions (name, version, architecture, training_set_id, parent_id,"
            " hyperparameters, artifact_path, artifact_sha256, metrics, training_curve,"
            " environment, status, finished_at)"
            " SELECT :name, 1, 'm3gnet', id, :parent, '{}', :name || '.pt', repeat('0', 64),"
            " '{}', '[]', '{}', 'ready', now() FROM training_sets WHERE name = :set RETURNING id"
        ),
        {"name": name, "set": training_set, "parent": parent_id},
    ).scalar_one()


def _material_id(session: Session, key: str) -> int:
    return session.execute(
        text("SELECT id FROM materials WHERE key = :key"), {"key": key}
    ).scalar_one()


def _ml_relaxation(session: Session, model_id: int, key: str) -> int:
    relaxation = Relaxation(
        material_id=_material_id(session, key),
        method="ml",
        model_version_id=model_id,
        sequence=0,
        parameters={"fmax": 0.1},
        n_sites=3,
        species=np.array([42, 16, 16]),
        pbc=[True, True, True],
        n_steps=12,
        converged=True,
        final_energy=-15.0,
        final_energy_per_atom=-5.0,
        final_area_per_atom=3.0,
        info={},
        content_hash=f"ml-{model_id}-{key}",
    )
    session.add(relaxation)
    session.flush()
    return relaxation.id


def _stability(session: Session, key: str, source: str, model_id: int | None, ehull: float) -> None:
    hull_run = session.execute(
        text(
            "INSERT INTO hull_runs (energy_source, model_version_id, parameters, watermarks,"
            " counts, wall_time_s) VALUES (:source, :model, '{}', '{}', '{}', 0.1) RETURNING id"
        ),
        {"source": source, "model": model_id},
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO stability (material_id, energy_source, model_version_id, hull_run_id,"
            " energy_per_atom, formation_energy_per_atom, e_above_hull, hull_distance,"
            " decomposition) VALUES (:material, :source, :model, :run, -5.0, -0.5, :ehull,"
            " :ehull, '[]')"
        ),
        {
            "material": _material_id(session, key),
            "source": source,
            "model": model_id,
            "run": hull_run,
            "ehull": ehull,
        },
    )


def _campaign(session: Session, screening_id: int, key: str, relaxation_id: int | None) -> None:
    campaign = session.execute(
        text(
            "INSERT INTO al_campaigns (name, model_version_id, parameters, status)"
            " VALUES ('hunt', :model, '{}', 'running') RETURNING id"
        ),
        {"model": screening_id},
    ).scalar_one()
    iteration = session.execute(
        text(
            "INSERT INTO al_iterations (campaign_id, index, screening_model_id, stage, status,"
            " stage_times, counts, metrics) VALUES (:campaign, 1, :model, 'label', 'running',"
            " '{}', '{}', '{}') RETURNING id"
        ),
        {"campaign": campaign, "model": screening_id},
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO al_candidates (iteration_id, material_id, ml_relaxation_id,"
            " ml_e_above_hull, passed, in_control, decision, reason, rank, label_status)"
            " VALUES (:iteration, :material, :relaxation, 0.05, true, false, 'selected',"
            " 'lowest e_above_hull', 1, 'pending')"
        ),
        {
            "iteration": iteration,
            "material": _material_id(session, key),
            "relaxation": relaxation_id,
        },
    )


def build_provenance(sessions: sessionmaker[Session], folder: Path) -> Provenance:
    """Ingest the two files, make the two sets and register the rest (see the module)."""
    a_path = write_layers(folder, "a", seed=1)
    b_path = write_layers(folder, "b", seed=2)
    for path in (a_path, b_path):
        ingest_file(sessions, path, ReadOptions())
    create_training_set(
        sessions, "both", SelectionParameters(ecut=1e6, split=(50.0, 25.0, 25.0), seed=1)
    )
    create_training_set(
        sessions,
        "a-only",
        SelectionParameters(ecut=1e6, split=(100.0, 0.0, 0.0), sources=(str(a_path),)),
    )
    with sessions.begin() as session:
        base = _model(session, "base", "both", None)
        tuned = _model(session, "tuned", "a-only", base)
        other = _model(session, "other", "a-only", None)
        relaxations = {
            "base:1@b-000000": _ml_relaxation(session, base, "b-000000"),
            "tuned:1@b-000000": _ml_relaxation(session, tuned, "b-000000"),
            "other:1@a-000000": _ml_relaxation(session, other, "a-000000"),
        }
        _stability(session, "b-000000", "dft", None, 0.0)
        _stability(session, "b-000000", "base:1", base, 0.012)
        _stability(session, "b-000000", "tuned:1", tuned, -0.003)
        _campaign(session, tuned, "b-000001", None)
    return Provenance(
        a_path,
        b_path,
        {"base:1": base, "tuned:1": tuned, "other:1": other},
        relaxations,
    )
