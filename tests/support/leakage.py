"""A two-generation lineage for the leakage guard's tests, without training: synthetic
layers, two training sets split differently (``create_training_set``, the real one), a
parent model version on one and a child fine-tuned from it on the other (registry rows;
no model file is ever loaded), and ML relaxation rows standing for ``atlas2d relax``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.io.readers import ReadOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_paths
from atlas2d.services.relax import RelaxRequest, relaxation_parameters
from atlas2d.services.trainsets import create_training_set
from tests.support.synthetic import alexandria_document, synthetic_trajectories

PARENT_SET = "parent-set"
CHILD_SET = "child-set"
PARENT = "parent:1"
CHILD = "child:1"

ML_ENERGY_OFFSET_EV_PER_ATOM = 0.01
"""Every stand-in ML relaxation ends this far above its DFT energy."""


@dataclass(frozen=True)
class Lineage:
    """The registry ids of the parent and of the child fine-tuned from it."""

    parent_id: int
    child_id: int


def ingest_layers(
    sessions: sessionmaker[Session], folder: Path, prefix: str, n_materials: int, seed: int
) -> list[str]:
    """Ingest ``n_materials`` three-atom layers keyed ``{prefix}-…`` (binaries of ten
    metal-chalcogen pairs, so formulas repeat: polymorphs); returns their keys."""
    trajectories = synthetic_trajectories(n_materials, 4, 3, seed=seed, key_prefix=prefix)
    path = folder / f"{prefix}.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    ingest_paths(sessions, [path], ReadOptions())
    return [t.material_key for t in trajectories]


def register_model(
    session: Session, name: str, training_set: str, parent_id: int | None = None
) -> int:
    """A ready version 1 of ``name`` trained on ``training_set``; its id."""
    return session.execute(
        text(
            "INSERT INTO model_versions (name, version, architecture, training_set_id,"
            " parent_id, hyperparameters, artifact_path, artifact_sha256, metrics,"
            " training_curve, environment, status, finished_at)"
            " SELECT :name, 1, 'm3gnet', id, :parent, '{}', 'x.model', repeat('0', 64),"
            " '{}', '[]', '{}', 'ready', now() FROM training_sets WHERE name = :set"
            " RETURNING id"
        ),
        {"name": name, "set": training_set, "parent": parent_id},
    ).scalar_one()


def default_parameters(model: str) -> dict[str, Any]:
    """The relaxation parameters ``evaluate`` looks for when given none."""
    return relaxation_parameters(RelaxRequest(model))


def add_ml_relaxations(
    session: Session, model_version_id: int, keys: list[str], parameters: dict[str, Any]
) -> None:
    """The model's relaxation of each material (its DFT one, energy shifted up by
    :data:`ML_ENERGY_OFFSET_EV_PER_ATOM`, area by 1 %), as ``relax`` would store it."""
    session.execute(
        text(
            "INSERT INTO relaxations (material_id, method, model_version_id, sequence,"
            " parameters, n_sites, species, pbc, n_steps, converged, final_energy,"
            " final_energy_per_atom, final_area_per_atom, info, content_hash)"
            " SELECT r.material_id, 'ml', :model, 0, CAST(:parameters AS jsonb), r.n_sites,"
            " r.species, r.pbc, 3, true, r.final_energy + :offset * r.n_sites,"
            " r.final_energy_per_atom + :offset, r.final_area_per_atom * 1.01, '{}',"
            " encode(sha256(convert_to('ml ' || :model || ' ' || r.id, 'UTF8')), 'hex')"
            " FROM relaxations r JOIN materials m ON m.id = r.material_id"
            " WHERE r.method = 'dft' AND m.key = ANY(:keys)"
        ),
        {
            "model": model_version_id,
            "parameters": json.dumps(parameters),
            "offset": ML_ENERGY_OFFSET_EV_PER_ATOM,
            "keys": keys,
        },
    )


def splits_of(session: Session, training_set: str) -> dict[str, str]:
    """{material key: split} of a stored set, read from its membership table (the
    tests' oracle, independent of ``model_training_materials``)."""
    rows = session.execute(
        text(
            "SELECT DISTINCT m.key, t.split FROM training_set_relaxations t"
            " JOIN training_sets s ON s.id = t.training_set_id"
            " JOIN relaxations r ON r.id = t.relaxation_id"
            " JOIN materials m ON m.id = r.material_id WHERE s.name = :set"
        ),
        {"set": training_set},
    ).all()
    return {key: split for key, split in rows}


def make_lineage(sessions: sessionmaker[Session], folder: Path, prefix: str = "leak") -> Lineage:
    """Sixty layers; ``parent-set`` over all of them 40:30:30 and ``child-set`` 40:20:40
    (another seed); ``parent:1`` on the first, ``child:1`` fine-tuned from it on the
    second.

    Which material lands where depends on the material ids (the split shuffles them),
    which depend on what the database held before; at sixty materials every overlap the
    tests need (the child's test split with the parent's train, val and test splits) is
    there for all but about one id assignment in 10⁵.
    """
    ingest_layers(sessions, folder, prefix, 60, seed=5)
    for name, split, seed in (
        (PARENT_SET, (40.0, 30.0, 30.0), 1),
        (CHILD_SET, (40.0, 20.0, 40.0), 2),
    ):
        create_training_set(sessions, name, SelectionParameters(ecut=1e6, split=split, seed=seed))
    with sessions.begin() as session:
        parent_id = register_model(session, "parent", PARENT_SET)
        child_id = register_model(session, "child", CHILD_SET, parent_id)
    return Lineage(parent_id, child_id)
