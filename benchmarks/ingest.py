"""Ingest throughput: atlas2d's service path and `atlas2d ingest` of an Alexandria
file, against writing the same frames into an ase.db (SQLite) in the same run.

    python benchmarks/ingest.py [--materials 2000] [--steps 30] [--sites 12]

Last line: one JSON object with frames, atlas2d_frames_per_s (service path),
file_frames_per_s (end to end from a file), asedb_frames_per_s and ratio
(service path ÷ ase.db).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import msgspec

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the device-wait census are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from tests.support.synthetic import alexandria_document, synthetic_trajectories

from _common import fresh_database, machine, stop_embedded_servers, timer, workdir
from atlas2d.db.session import make_sessions
from atlas2d.io.records import ParsedFile
from atlas2d.services.ingest import ingest_parsed


def write_asedb(trajectories, path: Path) -> None:  # type: ignore[no-untyped-def]
    """The baseline: every frame into an ase.db SQLite file, in one transaction."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    with connect(path) as db:
        for traj in trajectories:
            for f in range(traj.n_frames):
                atoms = Atoms(
                    numbers=traj.species, positions=traj.positions[f], cell=traj.cells[f], pbc=True
                )
                atoms.calc = SinglePointCalculator(
                    atoms, energy=traj.energies[f], forces=traj.forces[f], stress=traj.stresses[f]
                )
                db.write(atoms, material_key=traj.material_key, step=f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sites", type=int, default=12)
    args = parser.parse_args()

    scratch = workdir()
    trajectories = synthetic_trajectories(args.materials, args.steps, args.sites, seed=1)
    n_frames = sum(t.n_frames for t in trajectories)
    print(f"machine: {machine()}")
    print(
        f"data: {args.materials} relaxations x {args.steps} steps x {args.sites} atoms = {n_frames} frames"
    )

    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    # Warm-up: imports and first-use costs of a process are paid once, not per frame.
    warmup = synthetic_trajectories(50, args.steps, args.sites, seed=2, key_prefix="warmup")
    ingest_parsed(
        sessions,
        ParsedFile(
            path="warmup",
            format="records",
            sha256="",
            parser="benchmarks/ingest.py",
            trajectories=warmup,
        ),
    )
    # Median of three runs (fresh keys each time): single runs vary by ±20 % here.
    service_runs = []
    for run in range(3):
        trajectories_run = synthetic_trajectories(
            args.materials, args.steps, args.sites, seed=1, key_prefix=f"run{run}"
        )
        parsed = ParsedFile(
            path=f"benchmark-{run}",
            format="records",
            sha256="",
            parser="benchmarks/ingest.py",
            trajectories=trajectories_run,
        )
        with timer() as elapsed:
            result = ingest_parsed(sessions, parsed)
        assert result.frames == n_frames, result
        service_runs.append(elapsed[0])
    service_s = [statistics.median(service_runs)]
    print(
        f"service path: {service_s[0]:.2f} s (median of {', '.join(f'{t:.2f}' for t in service_runs)}), "
        f"{n_frames / service_s[0]:,.0f} frames/s"
    )

    json_path = scratch / "alexandria.json"
    json_path.write_bytes(msgspec.json.encode(alexandria_document(trajectories)))
    file_url, _ = fresh_database(scratch)
    env = {**os.environ, "ATLAS2D_DATABASE_URL": file_url}
    with timer() as file_s:
        subprocess.run(
            ["atlas2d", "ingest", str(json_path)], check=True, env=env, stdout=subprocess.DEVNULL
        )
    size_mb = json_path.stat().st_size / 1e6
    print(
        f"atlas2d ingest of a {size_mb:.0f} MB Alexandria JSON: {file_s[0]:.2f} s, {n_frames / file_s[0]:,.0f} frames/s"
    )

    with timer() as asedb_s:
        write_asedb(trajectories, scratch / "baseline.db")
    print(f"ase.db baseline: {asedb_s[0]:.2f} s, {n_frames / asedb_s[0]:,.0f} frames/s")

    stop_embedded_servers(scratch)
    figures = {
        "frames": n_frames,
        "atlas2d_frames_per_s": round(n_frames / service_s[0]),
        "file_frames_per_s": round(n_frames / file_s[0]),
        "asedb_frames_per_s": round(n_frames / asedb_s[0]),
        "ratio": round(asedb_s[0] / service_s[0], 1),
        "service_s": round(service_s[0], 3),
        "file_s": round(file_s[0], 3),
        "asedb_s": round(asedb_s[0], 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
