"""A committed database holding the demo dataset's alloy layers (Mo-W-S, Mo-Nb-S and
S-Ta-Ti with their end members, every polymorph), for the alloy tests."""

from __future__ import annotations

import json
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

DEMO_DATA = Path(__file__).resolve().parents[2] / "platform" / "atlas2d" / "demo" / "data"
ALLOY_ELEMENTS = ({"Mo", "W", "S"}, {"Mo", "Nb", "S"}, {"Ta", "Ti", "S"})


@dataclass
class AlloyDatabase:
    """A migrated database with the demo's alloy layers ingested (committed)."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    artifacts_dir: Path


def _elements(structure: dict[str, Any]) -> set[str]:
    return {species["element"] for site in structure["sites"] for species in site["species"]}


def _wanted(elements: set[str]) -> bool:
    return any(elements <= allowed for allowed in ALLOY_ELEMENTS) and len(elements) > 1


def write_alloy_files(folder: Path) -> list[Path]:
    """The demo's relaxation and hull files cut down to the alloy systems' layers."""
    relaxations = json.loads(
        lzma.decompress((DEMO_DATA / "demo_2d_relaxations.json.xz").read_bytes())
    )
    kept = {
        key: trajectories
        for key, trajectories in relaxations.items()
        if _wanted(_elements(trajectories[0]["steps"][0]["structure"]))
    }
    hull = json.loads(lzma.decompress((DEMO_DATA / "demo_convex_hull.json.xz").read_bytes()))
    entries = [e for e in hull["entries"] if e["data"].get("mat_id") in kept]
    paths = [folder / "alloy_relaxations.json", folder / "alloy_hull.json"]
    paths[0].write_text(json.dumps(kept))
    paths[1].write_text(json.dumps({"entries": entries}))
    return paths


def make_alloy_database(url: str, root: Path) -> AlloyDatabase:
    """Ingest the alloy layers into the migrated database at ``url``."""
    from atlas2d.db.session import make_engine, make_sessions
    from atlas2d.io.readers import ReadOptions
    from atlas2d.services.ingest import ingest_paths

    engine = make_engine(url)
    sessions = make_sessions(engine)
    ingest_paths(sessions, write_alloy_files(root), ReadOptions())
    return AlloyDatabase(url, engine, sessions, root / "artifacts")
