"""`atlas2d audit model` over a lineage of three versions, each trained on a training set
of a million frames: the audit against its dominant part done alone (`trainset verify`
of the three sets), in the same run.

    python benchmarks/audit.py [--relaxations 40000] [--steps 25]

The three versions (root, fine-tuned child, fine-tuned grandchild) are registered in
SQL with a 5 MB artifact file each and stored predictions on their val and test splits
(the labels plus noise), as training leaves them: the audit re-hashes the artifacts,
recomputes the metrics from those predictions and verifies every training set (its
selection re-run and every frame's digest recomputed). No model is trained.

Last line: one JSON object with frames, frames_per_set, predictions, audit_s,
verify_s (the three verifies alone), ratio (audit ÷ verify) and the verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import text

# This folder (for _common) and the repository root (for tests.support: synthetic data
# is test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from tests.support.synthetic import synthetic_trajectories

from _common import fresh_database, machine, stop_embedded_servers, timer, workdir
from atlas2d.db.session import make_sessions
from atlas2d.io.records import ParsedFile
from atlas2d.queries import model_versions as registry_queries
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.audit_model import audit_model
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.predictions import split_errors
from atlas2d.services.trainsets import create_training_set, verify_training_set

BATCH = 5000
ARTIFACT_BYTES = 5 * 2**20
LINEAGE = (
    ("bench-root", SelectionParameters(rule="all", seed=0)),
    ("bench-child", SelectionParameters(rule="all", seed=1, split=(80, 10, 10))),
    ("bench-grandchild", SelectionParameters(rule="all", seed=2, group_by="formula")),
)


def ingest_synthetic(sessions, relaxations: int, steps: int) -> int:  # type: ignore[no-untyped-def]
    """Ingest ``relaxations`` synthetic layers of 3-20 atoms; returns frames written."""
    frames = 0
    for start in range(0, relaxations, BATCH):
        batch = synthetic_trajectories(
            min(BATCH, relaxations - start), steps, (3, 20), seed=start, key_prefix=f"b{start}"
        )
        frames += ingest_parsed(
            sessions, ParsedFile(f"batch-{start}", "records", "", "benchmark", trajectories=batch)
        ).frames
    return frames


def register_version(  # type: ignore[no-untyped-def]
    sessions, name: str, training_set_id: int, parent_id: int | None, artifacts: Path, seed: int
) -> int:
    """A ready version with an artifact file and val/test predictions (labels + noise)."""
    data = np.random.default_rng(seed).bytes(ARTIFACT_BYTES)
    path = artifacts / f"{name}.bin"
    path.write_bytes(data)
    with sessions.begin() as session:
        model_id, _ = registry_queries.insert_training_version(
            session, name, "m3gnet", training_set_id, parent_id, {"seed": seed}, {"seed": seed}
        )
        session.execute(
            text(
                "INSERT INTO frame_predictions (model_version_id, frame_id, n_sites, energy,"
                " forces, stress)"
                " SELECT :model, f.id, f.n_sites, f.energy + 0.01 * f.n_sites * (random() - 0.5),"
                " f.forces, f.stress"
                " FROM training_set_frames t JOIN frames f ON f.id = t.frame_id"
                " WHERE t.training_set_id = :set AND t.split IN ('val', 'test')"
            ),
            {"model": model_id, "set": training_set_id},
        )
        metrics = {
            split: split_errors(session, model_id, training_set_id, split)
            for split in ("val", "test")
        }
        registry_queries.finish_version(
            session,
            model_id,
            status="ready",
            artifact_path=str(path),
            artifact_sha256=hashlib.sha256(data).hexdigest(),
            metrics=metrics,
        )
    return model_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaxations", type=int, default=40_000)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()

    scratch = workdir()
    print(f"machine: {machine()}")
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    with timer() as ingest_s:
        n_frames = ingest_synthetic(sessions, args.relaxations, args.steps)
    print(
        f"data: {args.relaxations:,} relaxations x {args.steps} steps (3-20 atoms) ="
        f" {n_frames:,} frames, ingested in {ingest_s[0]:.1f} s"
    )
    artifacts = scratch / "artifacts"
    artifacts.mkdir()
    parent_id = None
    with timer() as setup_s:
        for seed, (name, params) in enumerate(LINEAGE):
            summary = create_training_set(sessions, name, params)
            with sessions.begin() as session:
                set_id = session.execute(
                    text("SELECT id FROM training_sets WHERE name = :n"), {"n": name}
                ).scalar_one()
            parent_id = register_version(sessions, name, set_id, parent_id, artifacts, seed)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")  # what a maintained database looks like
        predictions = connection.exec_driver_sql(
            "SELECT count(*) FROM frame_predictions"
        ).scalar_one()
    print(
        f"lineage: {len(LINEAGE)} versions, each on a set of {summary.n_frames:,} frames;"
        f" {predictions:,} stored predictions; set up in {setup_s[0]:.1f} s"
    )

    with timer() as verify_s:
        for name, _ in LINEAGE:
            report = verify_training_set(sessions, name)
            assert report.reproduced, name
    print(f"trainset verify of the {len(LINEAGE)} sets (baseline): {verify_s[0]:.1f} s")
    with timer() as audit_s:
        audit = audit_model(sessions, LINEAGE[-1][0], artifacts)
    print(
        f"audit model {LINEAGE[-1][0]}: {audit_s[0]:.1f} s, verdict {audit.verdict}"
        f" ({audit_s[0] / verify_s[0]:.2f}x the verifies alone)"
    )
    stop_embedded_servers(scratch)
    print(
        json.dumps(
            {
                "frames": n_frames,
                "frames_per_set": summary.n_frames,
                "predictions": predictions,
                "audit_s": round(audit_s[0], 2),
                "verify_s": round(verify_s[0], 2),
                "ratio": round(audit_s[0] / verify_s[0], 2),
                "verdict": audit.verdict,
            }
        )
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
