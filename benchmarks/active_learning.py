"""Active-learning campaigns on the bundled dataset: does screening with the model find
stable materials more often than labelling at random, how well does the model predict
what it screens, and where does an iteration's time go.

    python benchmarks/active_learning.py [--iterations 3] [--budget 20] [--control 20]
        [--max-candidates 80] [--start-epochs 15] [--epochs 20] [--threshold 0.6]
        [--engine batched]

Setup (timed apart, not part of the campaign): the bundled data ingested into a fresh
database, the demo's main training set (ecut 0.01 eV/atom, 90:5:5, seed 42) and the
demo's M3GNet trained on it for ``--start-epochs`` epochs (the demo stops it by wall
time instead; epochs make the starting model the same on any machine). The campaign is
the demo's, larger: substitutions from every layer on or near the DFT hull, within the
elements the starting model knows (partial substitutions too), at most ``--max-candidates`` per
iteration, relaxed with the screening model, kept within ``--threshold`` eV/atom of its
hull, the lowest ``--budget`` labelled by the reference labeller (CHGNet, standing in
for DFT) plus ``--control`` drawn at random from every screened candidate, and the
model fine-tuned ``--epochs`` epochs on all reference data for the next iteration.

The baseline, in the same run, is the control group: enrichment = hit rate of the
selected ÷ hit rate of the control (a hit: reference e_above_hull ≤ 0). Prospective
MAE: the screening model's relaxed energy and e_above_hull against the new labels,
before it is retrained on them.

Last line: one JSON object with the machine, start_model_train_s, campaign_s and, per
iteration, the counts, hit_rate and control_hit_rate (fractions), enrichment, the
prospective and screening-model test MAEs (meV/atom), new_dft_stable, dft_hull_size and
stage_seconds (generate, relax, select, label, measure, retrain).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _common
from _common import fresh_database, machine, stop_embedded_servers, timer, workdir
from atlas2d.threads import apply_threads

threads = apply_threads()  # one thread per process unless ATLAS2D_NUM_THREADS says otherwise

import pandas as pd

from atlas2d.analysis.campaign_plots import campaign_table
from atlas2d.db.session import make_sessions
from atlas2d.demo import dataset_paths
from atlas2d.io.readers import ReadOptions
from atlas2d.queries.training_sets import (
    SelectionParameters,
    training_set_elements,
    training_set_row,
)
from atlas2d.services.campaigns import (
    CampaignRequest,
    TrainSettings,
    campaign_status,
    create_campaign,
    run_campaign,
)
from atlas2d.services.demo import demo_plan
from atlas2d.services.ingest import ingest_paths
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainsets import create_training_set
from atlas2d.vocabulary import AL_STAGES, DEFAULT_AL_THRESHOLD_EV, ENGINES

TRAINING_SET = "bench-al-base"
START_MODEL = "bench-al-start"
CAMPAIGN = "bench-al"
STAGES = [stage for stage in AL_STAGES if stage != "done"]


def rounded(value: Any, digits: int) -> float | None:
    """A figure for the JSON line: None for a missing value (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def count(value: Any) -> int | None:
    """A count for the JSON line: None for a missing value."""
    return None if rounded(value, 0) is None else int(value)


def stage_seconds(stage_times: dict[str, Any]) -> dict[str, float | None]:
    """Wall time of each stage (s) from an iteration's ``stage_times``."""
    return {stage: rounded(stage_times.get(stage, {}).get("seconds"), 1) for stage in STAGES}


def iteration_results(summary: pd.DataFrame, times: dict[int, dict[str, Any]]) -> list[dict]:
    """One JSON object per iteration from the ``al_iteration_summary`` rows and each
    iteration's stage wall times."""
    results = []
    for row in summary.sort_values("iteration").itertuples(index=False):
        results.append(
            {
                "iteration": int(row.iteration),
                "candidates": int(row.candidates),
                "passed": int(row.passed),
                "selected": int(row.selected),
                "control": int(row.control),
                "labelled": int(row.labelled),
                "hits": int(row.hits),
                "hit_rate": rounded(row.hit_rate, 3),
                "control_hit_rate": rounded(row.control_hit_rate, 3),
                "enrichment": rounded(row.enrichment, 2),
                "prospective_energy_mae_mev_per_atom": rounded(
                    row.prospective_energy_mae_mev_per_atom, 1
                ),
                "prospective_ehull_mae_mev_per_atom": rounded(
                    row.prospective_ehull_mae_mev_per_atom, 1
                ),
                "new_dft_stable": count(row.new_dft_stable),
                "dft_hull_size": count(row.dft_hull_size),
                "screening_test_energy_mae_mev_per_atom": rounded(
                    row.screening_test_energy_mae_mev_per_atom, 1
                ),
                "stage_seconds": stage_seconds(times[int(row.iteration)]),
            }
        )
    return results


def readable_table(summary: pd.DataFrame, results: list[dict]) -> str:
    """The campaign's display table with the stage wall times, one column per iteration."""
    table = campaign_table(summary).drop(columns=["screening model", "produced model"])
    for stage in STAGES:
        table[f"{stage} (s)"] = [
            "" if (s := r["stage_seconds"][stage]) is None else f"{s:.1f}" for r in results
        ]
    table = table.set_index("iteration").T
    table.columns = [f"iteration {i}" for i in table.columns]
    return table.to_string()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Active-learning campaigns on the bundled dataset (see the docstring)."
    )
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--budget", type=int, default=20, help="labels selected per iteration")
    parser.add_argument("--control", type=int, default=20, help="random labels per iteration")
    parser.add_argument(
        "--max-candidates", type=int, default=80, help="candidates generated per iteration"
    )
    parser.add_argument(
        "--start-epochs", type=int, default=15, help="epochs of the starting M3GNet"
    )
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each fine-tune")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_AL_THRESHOLD_EV,
        help="ML e_above_hull filter, eV/atom",
    )
    parser.add_argument("--engine", default="batched", choices=ENGINES)
    args = parser.parse_args()

    plan = demo_plan()
    start_options = replace(
        plan.models[0].options, epochs=args.start_epochs, max_time_s=None, num_threads=threads
    )
    folder = workdir()
    engine = None
    try:
        _, engine = fresh_database(folder)
        sessions = make_sessions(engine)
        artifacts = folder / "artifacts"
        with timer() as t_setup:
            ingest_paths(sessions, dataset_paths(), ReadOptions())
            summary = create_training_set(
                sessions,
                TRAINING_SET,
                SelectionParameters(rule="ecut", ecut=0.01, split=(90.0, 5.0, 5.0), seed=42),
            )
        print(
            f"bundled data ingested, training set {TRAINING_SET} ({summary.n_frames} frames) "
            f"in {t_setup[0]:.1f} s",
            flush=True,
        )
        with timer() as t_train:
            model = train_model(
                sessions, TrainRequest(START_MODEL, TRAINING_SET, start_options), artifacts
            )
        test_mae = rounded(model.metrics.get("test", {}).get("energy_mae_mev_per_atom"), 1)
        with sessions.begin() as session:
            base = training_set_row(session, TRAINING_SET)
            assert base is not None
            elements = training_set_elements(session, base.id)
        print(
            f"starting model {model.ref} ({args.start_epochs} epochs) in {t_train[0]:.1f} s; "
            f"test energy MAE {test_mae} meV/atom",
            flush=True,
        )

        request = CampaignRequest(
            name=CAMPAIGN,
            model=model.ref,
            generator="substitute",
            # Every hull layer is a prototype; candidates stay within the elements the
            # starting model knows (a real campaign's first restriction).
            elements=elements,
            partial=True,
            max_candidates=args.max_candidates,
            threshold_ev=args.threshold,
            budget=args.budget,
            control=args.control,
            label_steps=plan.campaign.label_steps,
            relax_fmax_ev_per_a=plan.relax_settings.fmax,
            relax_steps=plan.relax_settings.max_steps,
            engine=args.engine,
            train=TrainSettings(epochs=args.epochs, batch_size=16, seed=0),
        )
        create_campaign(sessions, request, folder)
        with timer() as t_campaign:
            run_campaign(
                sessions,
                CAMPAIGN,
                args.iterations,
                artifacts,
                say=lambda line: print(f"  {line.strip()}", flush=True),
            )
        status = campaign_status(sessions, CAMPAIGN)
        times = {row.index: row.stage_times for row in status.iterations}
        results = iteration_results(status.summary, times)
        print(f"campaign: {args.iterations} iterations in {t_campaign[0]:.1f} s")
        print(readable_table(status.summary, results))
        print(f"machine: {machine()}, {threads} thread(s) per process")
        print(
            json.dumps(
                {
                    "benchmark": "active_learning",
                    "machine": f"{machine()}, {threads} thread(s) per process",
                    "budget": args.budget,
                    "control": args.control,
                    "max_candidates": args.max_candidates,
                    "threshold_ev_per_atom": args.threshold,
                    "start_epochs": args.start_epochs,
                    "finetune_epochs": args.epochs,
                    "engine": args.engine,
                    "start_model_train_s": round(t_train[0], 1),
                    "start_model_test_energy_mae_mev_per_atom": test_mae,
                    "campaign_s": round(t_campaign[0], 1),
                    "iterations": results,
                }
            )
        )
    finally:
        if engine is not None:
            engine.dispose()
        stop_embedded_servers(folder)


if __name__ == "__main__":
    main()
