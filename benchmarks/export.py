"""`trainset export --format mace` throughput: the export as it is (`export_training_set`:
batches formatted through one template, read ahead by a thread, several processes on a
large set) against the frame-by-frame writer it replaced (`write_mace_extxyz` over the
set's frames, in one process), alternating, same database, same run; the files of the
two are checked byte-identical.

    python benchmarks/export.py [--relaxations 2000] [--steps 25] [--repeats 3] [--processes N]

Rule `all`, split 80:10:10 over seeded synthetic layers of 3–20 atoms: relaxations ×
steps frames. Three ways, wall time, best of the repeats: `before` (frame by frame),
`one_process` (the export with `processes=1`) and `after` (the export with its default
processes, one per CPU, or `--processes`).
Last line: one JSON object with frames, processes, before_frames_per_s,
one_process_frames_per_s, after_frames_per_s, ratio (after ÷ before) and the lists of
every repeat's seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# This folder (for _common) and the repository root (for tests.support).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import fresh_database, ingest_synthetic, machine, workdir
from atlas2d.db.session import make_sessions
from atlas2d.io.exporters import write_mace_extxyz
from atlas2d.queries import training_sets
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services import trainset_export
from atlas2d.services.trainsets import create_training_set
from atlas2d.vocabulary import SPLITS


def _frame_by_frame(sessions, out: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """The MACE files written frame by frame, as before this change."""
    out.mkdir(parents=True)
    paths = []
    with sessions.begin() as session:
        set_id = training_sets.training_set_row(session, "bench").id  # type: ignore[union-attr]
        for split in SPLITS:
            path = out / f"{split}.xyz"
            write_mace_extxyz(trainset_export._export_frames(session, set_id, "bench", split), path)
            paths.append(path)
    return paths


def _timed(write: Callable[[Path], list[Path]], out: Path) -> tuple[float, str]:
    """(wall s, sha256 of the three files) of one export."""
    wall = time.perf_counter()
    paths = write(out)
    wall = time.perf_counter() - wall
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.read_bytes())
    return wall, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relaxations", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(f"machine: {machine()}")

    scratch = workdir()
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    frames = ingest_synthetic(sessions, args.relaxations, args.steps)
    create_training_set(sessions, "bench", SelectionParameters(rule="all", split=(80, 10, 10)))
    print(f"{frames:,} frames ingested; set 'bench': rule all, 80:10:10")

    def export(processes: int) -> Callable[[Path], list[Path]]:
        def write(out: Path) -> list[Path]:
            written = trainset_export.export_training_set(sessions, "bench", "mace", out, processes)
            return [path for path, _ in written.values()]

        return write

    ways = {
        "before": lambda out: _frame_by_frame(sessions, out),
        "one_process": export(1),
        "after": export(args.processes),
    }
    runs: dict[str, list[float]] = {name: [] for name in ways}
    digests = set()
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        for repeat in range(args.repeats):
            for name, write in ways.items():
                wall, digest = _timed(write, Path(out) / f"{name}{repeat}")
                runs[name].append(wall)
                digests.add(digest)
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(f"{name} {frames / runs[name][-1]:,.0f} frames/s" for name in ways)
            )
    if len(digests) != 1:
        raise SystemExit("the MACE files differ")
    print("the MACE files of the three ways are byte-identical")

    def best(name: str) -> int:
        return round(frames / min(runs[name]))

    result = {
        "frames": frames,
        "processes": args.processes,
        "before_frames_per_s": best("before"),
        "one_process_frames_per_s": best("one_process"),
        "after_frames_per_s": best("after"),
        "ratio": round(best("after") / best("before"), 2),
        **{f"{name}_s": [round(wall, 2) for wall in runs[name]] for name in ways},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
