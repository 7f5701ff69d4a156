"""A committed database for active-learning tests: the bundled dataset, a training set
over it and a tiny M3GNet trained on it for one epoch (it knows every element there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ase import Atoms
from ase.build import mx2
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.demo import DATA_DIR
from atlas2d.io.readers import ReadOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_paths
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainsets import create_training_set

BASE_SET = "al-base"
START_MODEL = "al-start"


@dataclass
class CampaignDatabase:
    """A migrated database (``url``) with the starting model ``al-start:1``."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    artifacts_dir: Path
    home: Path


def make_campaign_database(url: str, root: Path) -> CampaignDatabase:
    """Fill the migrated database at ``url``; model files go under ``root/artifacts``."""
    from atlas2d.db.session import make_engine, make_sessions
    from tests.conftest import tiny_options

    engine = make_engine(url)
    sessions = make_sessions(engine)
    ingest_paths(sessions, sorted(DATA_DIR.glob("*.json.xz")), ReadOptions())
    create_training_set(
        sessions, BASE_SET, SelectionParameters(ecut=0.05, split=(60.0, 20.0, 20.0), seed=3)
    )
    train_model(
        sessions,
        TrainRequest(START_MODEL, BASE_SET, tiny_options("m3gnet", epochs=1)),
        root / "artifacts",
    )
    return CampaignDatabase(url, engine, sessions, root / "artifacts", root)


def candidate_layers() -> list[Atoms]:
    """Twelve transition-metal dichalcogenide layers, 2H and 1T, some strained, each
    with a ``material_key``: candidates for a ``file:`` campaign."""
    layers = []
    for formula, a in (("MoS2", 3.18), ("WS2", 3.19), ("MoSe2", 3.32), ("WSe2", 3.32)):
        for kind, scale in (("2H", 1.0), ("1T", 1.0), ("2H", 1.05)):
            atoms = mx2(formula, kind=kind, a=a * scale, thickness=3.19, vacuum=8.0)
            atoms.pbc = True
            atoms.info["material_key"] = f"cand-{formula}-{kind}-{scale:.2f}"
            layers.append(atoms)
    return layers
