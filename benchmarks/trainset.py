"""Training-set selection over a million frames: `trainset create` against the same
selection done in pandas on frames read from the database, plus the export throughput.

    python benchmarks/trainset.py [--relaxations 40000] [--steps 25] [--repeats 3]

Last line: one JSON object with frames, selected, selection_s (the selection alone, as
`trainset create --dry-run` runs it: what the baseline computes), create_s (selection,
content hash and storing; ecut 0.01, medians of the repeats; create_first_s is the first
run), create_fallback_s (ecut 1e6), export_frames_per_s, baseline_s (median), ratio
(baseline ÷ create) and ratio_selection (baseline ÷ selection).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the device-wait census are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import fresh_database, ingest_synthetic, machine, stop_embedded_servers, timer, workdir
from atlas2d.analysis.splits import assign_splits
from atlas2d.analysis.units import KBAR_PER_EV_PER_A3
from atlas2d.db.session import make_sessions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.trainset_export import export_training_set
from atlas2d.services.trainsets import create_training_set, preview_training_set


def pandas_selection(engine, params: SelectionParameters) -> int:  # type: ignore[no-untyped-def]
    """The baseline: read every frame's scalars with pandas, select in Python."""
    frames = pd.read_sql(
        "SELECT f.id, f.relaxation_id, f.step, f.energy_per_atom, f.n_sites, f.max_force,"
        " f.max_abs_stress, f.has_isolated_atom, r.material_id"
        " FROM frames f JOIN relaxations r ON r.id = f.relaxation_id WHERE r.method = 'dft'",
        engine,
    )
    frames = frames.sort_values(["relaxation_id", "step"], kind="stable")
    by_run = frames.groupby("relaxation_id", sort=False)
    i = by_run.cumcount()
    n = by_run["step"].transform("size")
    change = (frames["energy_per_atom"] - by_run["energy_per_atom"].shift(-1)).abs()
    qualifies = (i < n - 1) & (change > params.ecut)
    any_qualifies = qualifies.groupby(frames["relaxation_id"]).transform("any")
    fallback = ~any_qualifies & ((i == 0) | (i == (n - 1) // 2) | (i == n - 1))
    kept = frames[qualifies | fallback]
    offending = (
        (kept["n_sites"] > params.max_sites)
        | kept["has_isolated_atom"]
        | (kept["energy_per_atom"] > params.max_energy_per_atom)
        | (kept["energy_per_atom"] < params.min_energy_per_atom)
        | (kept["max_force"] > params.max_force)
        | (kept["max_abs_stress"].fillna(0) * KBAR_PER_EV_PER_A3 > params.max_stress_kbar)
    )
    bad_materials = set(kept.loc[offending, "material_id"])
    survivors = kept[~kept["material_id"].isin(bad_materials)]
    splits = assign_splits(
        [str(m) for m in survivors["material_id"].unique()], params.split, params.seed
    )
    survivors = survivors.assign(split=survivors["material_id"].astype(str).map(splits))
    return len(survivors)


def _runs(times: list[float]) -> str:
    """ "0.41 s (median of 3: 0.45, 0.41, 0.40 s)"."""
    listed = ", ".join(f"{t:.2f}" for t in times)
    return f"{statistics.median(times):.2f} s (median of {len(times)}: {listed} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaxations", type=int, default=40_000)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of create and of the baseline (medians)"
    )
    args = parser.parse_args()

    scratch = workdir()
    print(f"machine: {machine()}")
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    with timer() as ingest_s:
        n_frames = ingest_synthetic(sessions, args.relaxations, args.steps)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")  # what a maintained database looks like
    print(
        f"data: {args.relaxations} relaxations x {args.steps} steps (3-20 atoms) = {n_frames:,} frames, ingested in {ingest_s[0]:.1f} s"
    )

    params = SelectionParameters(ecut=0.01)
    selection_times = []
    for _ in range(args.repeats):
        with timer() as selection_s:
            preview = preview_training_set(sessions, "bench-preview", params)
        selection_times.append(selection_s[0])
    print(
        f"selection (rule, filters, splits, counts; `trainset create --dry-run`), ecut 0.01 eV/atom:"
        f" {_runs(selection_times)}, {preview.n_frames:,} frames"
    )
    create_times = []
    for k in range(args.repeats):
        with timer() as create_s:
            summary = create_training_set(sessions, f"bench-ecut-{k}", params)
        create_times.append(create_s[0])
    print(
        f"trainset create, ecut 0.01 eV/atom: {_runs(create_times)}, {summary.n_frames:,} frames selected"
    )
    with timer() as fallback_s:
        fallback = create_training_set(sessions, "bench-fallback", SelectionParameters(ecut=1e6))
    print(
        f"trainset create, ecut 1e6: {fallback_s[0]:.2f} s, {fallback.n_frames:,} frames selected"
    )

    baseline_times = []
    for _ in range(args.repeats):
        with timer() as baseline_s:
            baseline_selected = pandas_selection(engine, params)
        baseline_times.append(baseline_s[0])
    print(
        f"pandas baseline, ecut 0.01: {_runs(baseline_times)}, {baseline_selected:,} frames selected"
    )
    assert baseline_selected == summary.n_frames == preview.n_frames, (
        baseline_selected,
        summary.n_frames,
        preview.n_frames,
    )

    with tempfile.TemporaryDirectory() as out, timer() as export_s:
        written = export_training_set(sessions, "bench-fallback", "extxyz", Path(out))
    exported = sum(count for _, count in written.values())
    print(
        f"export (extxyz) of {exported:,} frames: {export_s[0]:.1f} s, {exported / export_s[0]:,.0f} frames/s"
    )

    stop_embedded_servers(scratch)
    print(
        json.dumps(
            {
                "frames": n_frames,
                "selected": summary.n_frames,
                "selection_s": round(statistics.median(selection_times), 3),
                "create_s": round(statistics.median(create_times), 3),
                "create_first_s": round(create_times[0], 3),
                "create_fallback_s": round(fallback_s[0], 3),
                "selected_fallback": fallback.n_frames,
                "export_frames_per_s": round(exported / export_s[0]),
                "baseline_s": round(statistics.median(baseline_times), 3),
                "ratio": round(
                    statistics.median(baseline_times) / statistics.median(create_times), 1
                ),
                "ratio_selection": round(
                    statistics.median(baseline_times) / statistics.median(selection_times), 1
                ),
            }
        )
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
