"""`atlas2d audit model` over a lineage of three versions trained on a million frames.

    python benchmarks/audit.py [--relaxations 40000] [--steps 25] [--repeats 2]

The data is the training-set benchmark's (synthetic relaxations, 3–20 atoms), one
training set of every frame (rule ``all``, 90:5:5). Three versions are registered on it,
each fine-tuned from the one before, as training would leave them: a model file (random
bytes: nothing here loads it, so no ``--reproduce``), the val and test predictions
stored (the labels plus an offset) and the metrics computed from them. The audit then
verifies the set once, re-hashes three files, recomputes the metrics and counts what was
made downstream. Baseline: ``trainset verify`` of the same set alone.

Last line: one JSON object with frames, training_set_frames, audit_s (median),
audit_runs_s, verify_s (median) and verify_share (verify ÷ audit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import text

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import fresh_database, ingest_synthetic, machine, stop_embedded_servers, timer, workdir
from atlas2d.db.session import make_sessions
from atlas2d.mlff.artifacts import sha256_of_file
from atlas2d.queries import model_versions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.audit_model import audit_model
from atlas2d.services.predictions import split_errors
from atlas2d.services.trainsets import create_training_set, verify_training_set

EVALUATED = ("val", "test")
STORE_PREDICTIONS = """
INSERT INTO frame_predictions (model_version_id, frame_id, n_sites, energy, forces, stress)
SELECT :model, f.id, f.n_sites, f.energy + 0.01 * f.n_sites, f.forces, f.stress
FROM training_set_frames t JOIN frames f ON f.id = t.frame_id
WHERE t.training_set_id = :set AND t.split = :split
"""
"""A version's stored predictions on a split: the labels, 10 meV/atom too high."""


def register_chain(sessions, training_set_id: int, artifacts_dir: Path, n: int) -> str:  # type: ignore[no-untyped-def]
    """``n`` ready versions ``bench-0:1`` ← ``bench-1:1`` ← …; the reference of the last."""
    parent = None
    rng = np.random.default_rng(0)
    for k in range(n):
        with sessions.begin() as session:
            model_id, _ = model_versions.insert_training_version(
                session, f"bench-{k}", "m3gnet", training_set_id, parent, {}, {"seed": k}
            )
        artifact = artifacts_dir / f"bench-{k}.pt"
        artifact.write_bytes(rng.bytes(2 << 20))
        metrics = {}
        for split in EVALUATED:
            with sessions.begin() as session:
                session.execute(
                    text(STORE_PREDICTIONS),
                    {"model": model_id, "set": training_set_id, "split": split},
                )
                metrics[split] = split_errors(session, model_id, training_set_id, split)
        with sessions.begin() as session:
            model_versions.finish_version(
                session,
                model_id,
                status="ready",
                artifact_path=artifact.name,
                artifact_sha256=sha256_of_file(artifact),
                metrics={**metrics, "epochs_run": 1, "stopped_by": "epochs", "train_seconds": 0.0},
            )
        parent = model_id
    return f"bench-{n - 1}:1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaxations", type=int, default=40_000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=2, help="audits and verifies (medians)")
    args = parser.parse_args()

    scratch = workdir()
    print(f"machine: {machine()}")
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    with timer() as ingest_s:
        n_frames = ingest_synthetic(sessions, args.relaxations, args.steps)
    print(f"data: {n_frames:,} frames, ingested in {ingest_s[0]:.1f} s")
    summary = create_training_set(sessions, "bench-all", SelectionParameters(rule="all"))
    with sessions.begin() as session:
        training_set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = 'bench-all'")
        ).scalar_one()
    artifacts_dir = scratch / "artifacts"
    artifacts_dir.mkdir()
    with timer() as register_s:
        ref = register_chain(sessions, training_set_id, artifacts_dir, 3)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")  # what a maintained database looks like
    print(
        f"training set: {summary.n_frames:,} frames; 3 versions registered with their "
        f"val and test predictions in {register_s[0]:.1f} s"
    )

    verify_times = []
    for _ in range(args.repeats):
        with timer() as verify_s:
            assert verify_training_set(sessions, "bench-all").reproduced
        verify_times.append(verify_s[0])
    audit_times = []
    for _ in range(args.repeats):
        with timer() as audit_s:
            audit = audit_model(sessions, ref, artifacts_dir)
        assert audit.verdict == "pass" and len(audit.lineage) == 3, audit.reasons
        audit_times.append(audit_s[0])
    verify = statistics.median(verify_times)
    audited = statistics.median(audit_times)
    print(f"trainset verify: {', '.join(f'{t:.1f}' for t in verify_times)} s")
    print(
        f"audit model {ref} (3 versions, one set verified, {len(audit.metrics)} metrics "
        f"recomputed): {', '.join(f'{t:.1f}' for t in audit_times)} s"
    )
    stop_embedded_servers(scratch)
    print(
        json.dumps(
            {
                "frames": n_frames,
                "training_set_frames": summary.n_frames,
                "audit_s": round(audited, 2),
                "audit_runs_s": [round(t, 2) for t in audit_times],
                "verify_s": round(verify, 2),
                "verify_share": round(verify / audited, 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
