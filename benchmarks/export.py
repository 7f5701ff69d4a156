"""`trainset export --format mace` throughput, in one process: the binary COPY reader
and the export's frames built from its batches (`queries.training_sets.split_frame_batches`,
`services.trainsets._export_frames`) against the row reader and per-frame building
they replaced (`tests/support/row_reader.py`), alternating, same database, same run; the files of the
two are checked byte-identical.

    python benchmarks/export.py [--relaxations 2000] [--steps 25] [--repeats 3]

Rule `all`, split 80:10:10 over seeded synthetic layers of 3–20 atoms: relaxations ×
steps frames. Wall time and CPU time of this process (the server's share is not in it).
Last line: one JSON object with frames, before_frames_per_s, after_frames_per_s (best
wall of the repeats), before_cpu_frames_per_s, after_cpu_frames_per_s (best CPU),
read_frames_per_s (the new reader alone, best wall), ratio (after ÷ before, wall) and
the lists of every repeat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

# This folder (for _common) and the repository root (for tests.support).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from tests.support.row_reader import reference_export_frames

from _common import fresh_database, ingest_synthetic, machine, workdir
from atlas2d.db.session import make_sessions
from atlas2d.queries import training_sets
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services import trainsets
from atlas2d.services.trainsets import create_training_set, export_training_set


def _export(sessions, out: Path) -> tuple[int, float, float, str]:  # type: ignore[no-untyped-def]
    """(frames, wall s, CPU s, sha256 of the three files) of one MACE export."""
    wall, cpu = time.perf_counter(), time.process_time()
    written = export_training_set(sessions, "bench", "mace", out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha256()
    for split in sorted(written):
        digest.update(written[split][0].read_bytes())
    return sum(n for _, n in written.values()), wall, cpu, digest.hexdigest()


def _read(sessions) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """(frames, wall s) of reading the train split with the new reader alone."""
    with sessions.begin() as session:
        set_id = training_sets.training_set_row(session, "bench").id  # type: ignore[union-attr]
        wall = time.perf_counter()
        n = sum(1 for _ in training_sets.split_frames(session, set_id, "train"))
        return n, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relaxations", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")

    scratch = workdir()
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    frames = ingest_synthetic(sessions, args.relaxations, args.steps)
    create_training_set(sessions, "bench", SelectionParameters(rule="all", split=(80, 10, 10)))
    print(f"{frames:,} frames ingested; set 'bench': rule all, 80:10:10")

    runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": [], "read": []}
    digests = set()
    with tempfile.TemporaryDirectory(dir=scratch) as out:
        for repeat in range(args.repeats):
            with mock.patch.object(trainsets, "_export_frames", reference_export_frames):
                n, wall, cpu, digest = _export(sessions, Path(out) / f"before{repeat}")
            runs["before"].append((wall, cpu))
            digests.add(digest)
            n, wall, cpu, digest = _export(sessions, Path(out) / f"after{repeat}")
            runs["after"].append((wall, cpu))
            digests.add(digest)
            read_n, read_wall = _read(sessions)
            runs["read"].append((read_wall, read_wall))
            print(
                f"repeat {repeat + 1}: before {n / runs['before'][-1][0]:,.0f} frames/s"
                f" ({n / runs['before'][-1][1]:,.0f} CPU), after {n / wall:,.0f} frames/s"
                f" ({n / cpu:,.0f} CPU); the reader alone {read_n / read_wall:,.0f} frames/s"
            )
    if len(digests) != 1:
        raise SystemExit("the two readers' MACE files differ")
    print("the MACE files of both readers are byte-identical")

    def best(name: str, index: int, count: int) -> int:
        return round(count / min(run[index] for run in runs[name]))

    result = {
        "frames": n,
        "before_frames_per_s": best("before", 0, n),
        "after_frames_per_s": best("after", 0, n),
        "before_cpu_frames_per_s": best("before", 1, n),
        "after_cpu_frames_per_s": best("after", 1, n),
        "read_frames_per_s": best("read", 0, read_n),
        "ratio": round(best("after", 0, n) / best("before", 0, n), 2),
        "before_s": [round(wall, 2) for wall, _ in runs["before"]],
        "after_s": [round(wall, 2) for wall, _ in runs["after"]],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
