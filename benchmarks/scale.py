"""The thesis-sized dataset end to end, through the installed `atlas2d` command.

    python benchmarks/scale.py [--materials 90000] [--files 30] [--keep]

Generates ~90,000 synthetic 2D layers of 3-20 atoms relaxing over 10-60 steps (mean
35, ≈ 3.2 million frames) as Alexandria geometry-optimisation JSON files, every third
bz2-compressed, plus one file of elemental references, and runs in fresh `atlas2d`
processes: `ingest` of the folder; `trainset create` with ecut 1e6 (three frames per
relaxation, the thesis's training-set rule at its coarsest) and with ecut 0.01;
`trainset verify` of the first, right after its create; `trainset export --format mace`
of it; `hull update`; `materials list` and a few `sql` queries. Each step reports its
wall time, throughput and the peak RSS of its atlas2d process (the process's own
``ru_maxrss``, read by a wrapper that waits for it), and the database size per frame.

Last line: one JSON object with materials, frames, ingest_s, ingest_frames_per_s,
peak_rss_mb (largest atlas2d process), db_bytes_per_frame, select_s (both creates),
verify_s, export_frames_per_s, hull_s, total_s and the per-step details.
"""

from __future__ import annotations

import argparse
import atexit
import bz2
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec
import numpy as np

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the installed console script are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.synthetic import alexandria_document, synthetic_trajectory

from _common import machine, stop_embedded_servers, workdir
from atlas2d.db.embedded import embedded_url
from atlas2d.db.migrate import upgrade
from atlas2d.db.session import make_engine

STEPS = (10, 60)
SITES = (3, 20)
REFERENCE_ELEMENTS = (16, 22, 34, 40, 41, 42, 52, 72, 73, 74, 78)
"""The elements of tests.support.synthetic's layers: one elemental reference each."""

# Runs a command and writes its peak RSS (KiB, Linux ru_maxrss) to a file: a fresh
# wrapper per step, so RUSAGE_CHILDREN holds that step's atlas2d process alone.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def write_part(path: Path, first: int, count: int, seed: int, compress: bool) -> int:
    """Write materials ``first``…``first + count - 1`` as one Alexandria file, one
    material at a time (nothing holds the file); returns its frames."""
    rng = np.random.default_rng(seed)
    frames = 0
    with bz2.open(path, "wb") if compress else path.open("wb") as handle:
        handle.write(b"{")
        for i in range(first, first + count):
            key = f"scale-{i:07d}"
            n_steps = int(rng.integers(STEPS[0], STEPS[1] + 1))
            n_sites = int(rng.integers(SITES[0], SITES[1] + 1))
            trajectory = synthetic_trajectory(rng, key, n_steps, n_sites)
            frames += n_steps
            runs = alexandria_document([trajectory])[key]
            separator = b"," if i > first else b""
            handle.write(separator + msgspec.json.encode(key) + b":" + msgspec.json.encode(runs))
        handle.write(b"}")
    return frames


def write_references(path: Path) -> int:
    """One elemental layer per element of the synthetic compounds, below their energies
    per atom, so that ``hull update`` has a reference for every element."""
    rng = np.random.default_rng(7)
    trajectories = []
    for z in REFERENCE_ELEMENTS:
        trajectory = synthetic_trajectory(rng, f"ref-{z}", 12, 3)
        trajectory.species = np.full(3, z)
        trajectory.energies = trajectory.energies - 3.0 * 3
        trajectories.append(trajectory)
    path.write_bytes(msgspec.json.encode(alexandria_document(trajectories)))
    return sum(t.n_frames for t in trajectories)


def generate(folder: Path, materials: int, files: int) -> int:
    """The dataset under ``folder``; returns its frames."""
    folder.mkdir(parents=True)
    per_file = -(-materials // files)
    jobs = []
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        for part in range(files):
            first = part * per_file
            count = min(per_file, materials - first)
            if count <= 0:
                break
            compress = part % 3 == 2
            name = f"part-{part:02d}.json" + (".bz2" if compress else "")
            jobs.append(pool.submit(write_part, folder / name, first, count, part, compress))
        frames = sum(job.result() for job in jobs)
    return frames + write_references(folder / "references.json")


def run_step(home: Path, scratch: Path, *args: str) -> dict[str, object]:
    """``atlas2d ARGS`` in a fresh process; its wall time (s), peak RSS (MB) and output."""
    rss_file = scratch / "rss.txt"
    command = [sys.executable, "-c", _WRAPPER, str(rss_file), atlas2d_script(), *args]
    start = time.perf_counter()
    done = subprocess.run(
        command,
        env=user_environment(ATLAS2D_HOME=str(home)),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"atlas2d {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return {
        "s": round(wall, 2),
        "peak_rss_mb": round(int(rss_file.read_text()) / 1024, 1),
        "stdout": done.stdout,
    }


def database_bytes(engine) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar())


QUERIES = {
    "frames_per_chemsys": "SELECT m.chemsys, count(*) AS frames FROM frames f JOIN relaxations"
    " r ON r.id = f.relaxation_id JOIN materials m ON m.id = r.material_id GROUP BY 1",
    "stable_layers": "SELECT count(*) AS stable FROM stable_compounds",
    "largest_forces": "SELECT relaxation_id, step, max_force FROM frames"
    " ORDER BY max_force DESC LIMIT 20",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=90_000)
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    scratch = workdir()
    if not args.keep:
        atexit.register(shutil.rmtree, scratch, True)
    home = scratch / "home"
    # The embedded server under ATLAS2D_HOME, as a user's commands would find it; stopped
    # however the benchmark ends (atexit runs in reverse: before the folder goes).
    engine = make_engine(embedded_url(home / "pgdata"))
    atexit.register(stop_embedded_servers, home)
    atexit.register(engine.dispose)
    upgrade(engine)
    print(f"machine: {machine()}")

    data = scratch / "data"
    generation_start = time.perf_counter()
    frames = generate(data, args.materials, args.files)
    data_bytes = sum(p.stat().st_size for p in data.iterdir())
    print(
        f"data: {args.materials:,} materials, {frames:,} frames in {len(list(data.iterdir()))}"
        f" files ({data_bytes / 1e9:.2f} GB on disk), generated in"
        f" {time.perf_counter() - generation_start:.0f} s",
        flush=True,
    )
    empty_bytes = database_bytes(engine)

    steps: dict[str, dict[str, object]] = {}
    total_start = time.perf_counter()

    def step(name: str, *command: str) -> dict[str, object]:
        result = run_step(home, scratch, *command)
        steps[name] = result
        last = [line for line in str(result["stdout"]).splitlines() if line.strip()][-1:]
        print(
            f"{name}: {result['s']} s, peak RSS {result['peak_rss_mb']} MB"
            + (f"  | {last[0].strip()[:110]}" if last else ""),
            flush=True,
        )
        return result

    step("ingest", "ingest", str(data))
    db_bytes = database_bytes(engine) - empty_bytes
    step("create_ecut_1e6", "trainset", "create", "coarse", "--ecut", "1e6")
    step("verify_ecut_1e6", "trainset", "verify", "coarse")
    step("create_ecut_0.01", "trainset", "create", "fine", "--ecut", "0.01")
    step(
        "export_mace",
        "trainset",
        "export",
        "coarse",
        "--format",
        "mace",
        "--out",
        str(scratch / "export"),
    )
    exported = sum(
        sum(1 for line in path.open() if line[:1].isdigit() and line.strip().isdigit())
        for path in (scratch / "export").glob("*.xyz")
    )
    step("hull_update", "hull", "update")
    step("materials_list", "materials", "list", "--limit", "1000")
    for name, query in QUERIES.items():
        step(f"sql_{name}", "sql", query, "--format", "csv", "--limit", "100000")
    total_s = time.perf_counter() - total_start

    print("\n| step | wall s | throughput | peak RSS MB |\n|---|---:|---:|---:|")
    rates = {
        "ingest": (frames, "frames"),
        "export_mace": (exported, "frames"),
    }
    for name, result in steps.items():
        count, unit = rates.get(name, (0, ""))
        rate = f"{count / float(result['s']):,.0f} {unit}/s" if count else ""
        print(f"| {name} | {result['s']} | {rate} | {result['peak_rss_mb']} |")
    print(f"database: {db_bytes / 1e9:.2f} GB after ingest, {db_bytes / frames:,.0f} bytes/frame")

    def seconds(name: str) -> float:
        return float(steps[name]["s"])  # type: ignore[arg-type]

    figures = {
        "materials": args.materials,
        "frames": frames,
        "files": len(list(data.iterdir())),
        "data_gb": round(data_bytes / 1e9, 3),
        "ingest_s": seconds("ingest"),
        "ingest_frames_per_s": round(frames / seconds("ingest")),
        "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in steps.values()),  # type: ignore[arg-type]
        "db_bytes_per_frame": round(db_bytes / frames),
        "select_s": round(seconds("create_ecut_1e6") + seconds("create_ecut_0.01"), 2),
        "create_ecut_1e6_s": seconds("create_ecut_1e6"),
        "create_ecut_0_01_s": seconds("create_ecut_0.01"),
        "verify_s": seconds("verify_ecut_1e6"),
        "export_frames": exported,
        "export_s": seconds("export_mace"),
        "export_frames_per_s": round(exported / seconds("export_mace")),
        "hull_s": seconds("hull_update"),
        "materials_list_s": seconds("materials_list"),
        "sql_s": round(sum(seconds(f"sql_{name}") for name in QUERIES), 2),
        "total_s": round(total_s, 1),
        "peak_rss_mb_per_step": {name: r["peak_rss_mb"] for name, r in steps.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
