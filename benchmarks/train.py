"""Training throughput through atlas2d (`services.training.train_model`: export from the
database, the framework's own training, evaluation, registration) against calling each
framework directly on the same exported files, in the same run.

    python benchmarks/train.py [--relaxations 120] [--steps 12] [--epochs 4] [--device cpu]

Throughput is training frames per second of an epoch (training only, validation not
counted), averaged over the epochs after the first (warm-up). The wrapper's cost is
1 − (atlas2d throughput ÷ direct throughput). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the device-wait census are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import fresh_database, machine, stop_embedded_servers, workdir
from atlas2d.threads import apply_threads

apply_threads()  # one thread per process unless ATLAS2D_NUM_THREADS says otherwise

from tests.support.synthetic import synthetic_trajectories

from atlas2d.db.session import make_sessions
from atlas2d.io.records import ParsedFile
from atlas2d.mlff.train_mace import mace_arguments, mace_command, read_curve
from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainset_export import export_training_set
from atlas2d.services.trainsets import create_training_set
from atlas2d.threads import configured_threads, thread_environment


def steady(seconds: list[float]) -> float:
    """Median epoch time after the first (warm-up) epoch."""
    import statistics

    return statistics.median(seconds[1:] or seconds)


def direct_m3gnet(data: dict[str, Path], options: TrainOptions, work: Path) -> list[float]:
    """matgl's documented recipe on the exported dataset; returns epoch seconds."""
    import lightning
    import matgl
    import torch
    from matgl import MGLDatasetLoader
    from matgl.graph.data import MGLDataLoader
    from matgl.models import M3GNet
    from matgl.utils.training import PotentialLightningModule, fit_element_refs

    size = options.m3gnet
    matgl.set_default_dtype("float", 32)
    torch.set_num_threads(options.num_threads)
    lightning.seed_everything(options.seed, verbose=False)
    elements = tuple(json.loads((data["train"] / "manifest.json").read_text())["element_types"])
    for split in ("val",):
        extra = json.loads((data[split] / "manifest.json").read_text())["element_types"]
        elements += tuple(e for e in extra if e not in elements)
    datasets = {
        split: MGLDatasetLoader.from_json(
            data[split] / "frames.jsonl",
            cutoff=size.cutoff,
            element_types=elements,
            save_cache=False,
            root=str(work / f"mgl_{split}"),
            stress_unit="GPa",
        )
        for split in ("train", "val")
    }
    model = M3GNet(
        element_types=elements,
        dim_node_embedding=size.units,
        dim_edge_embedding=size.units,
        units=size.units,
        nblocks=size.nblocks,
        max_n=size.max_n,
        max_l=size.max_l,
        cutoff=size.cutoff,
        threebody_cutoff=size.threebody_cutoff,
        is_intensive=False,
    )
    train = datasets["train"]
    refs = fit_element_refs(train.structures, train.labels["energies"], elements)
    resolved = options.resolved()
    module = PotentialLightningModule(
        model=model,
        element_refs=refs,
        lr=resolved.lr,
        energy_weight=resolved.energy_weight,
        force_weight=resolved.force_weight,
        stress_weight=resolved.stress_weight,
    )
    loaders = MGLDataLoader(
        datasets["train"], datasets["val"], batch_size=options.batch_size, num_workers=0
    )
    seconds: list[float] = []

    class Timer(lightning.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            seconds.append(time.perf_counter() - self.start)

    trainer = lightning.Trainer(
        max_epochs=options.epochs,
        accelerator="gpu" if options.device == "cuda" else "cpu",
        devices=1,
        logger=False,
        callbacks=[Timer()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
    )
    trainer.fit(module, *loaders)
    return seconds


def direct_mace(
    files: dict[str, Path], options: TrainOptions, work: Path, numbers: tuple[int, ...]
) -> list[float]:
    """`mace_run_train` with the same arguments; returns epoch seconds from its log."""
    work.mkdir(parents=True, exist_ok=True)
    args = mace_arguments(files, options, work, None, numbers)
    env = {**os.environ, **thread_environment(options.num_threads)}
    subprocess.run(mace_command(args, 1), env=env, check=True, capture_output=True)
    results = sorted((work / "results").glob("*_train.txt"))
    return [row["epoch_seconds"] for row in read_curve(results[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--relaxations", type=int, default=120)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--sites", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--units", type=int, default=32, help="M3GNet width")
    parser.add_argument("--channels", type=int, default=32, help="MACE channels")
    parser.add_argument("--max-l", type=int, default=0, help="MACE max_L")
    args = parser.parse_args()
    m3gnet_size = M3GNetSize(cutoff=5.0, threebody_cutoff=4.0, units=args.units, nblocks=3)
    mace_size = MACESize(
        r_max=5.0, max_l=args.max_l, channels=args.channels, num_interactions=2, correlation=3
    )

    scratch = workdir()
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    trajectories = synthetic_trajectories(args.relaxations, args.steps, args.sites, seed=11)
    ingest_parsed(
        sessions, ParsedFile("bench", "records", "", "benchmark", trajectories=trajectories)
    )
    summary = create_training_set(
        sessions, "bench", SelectionParameters(rule="all", split=(80.0, 10.0, 10.0), seed=0)
    )
    n_train = summary.split_counts["train"]["frames"]
    results: dict[str, Any] = {
        "train_frames": n_train,
        "epochs": args.epochs,
        "device": args.device,
    }
    for architecture in ("m3gnet", "mace"):
        options = TrainOptions(
            architecture=architecture,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=0,
            device=args.device,
            num_threads=configured_threads(),
            m3gnet=m3gnet_size,
            mace=mace_size,
        )
        fmt = "matgl" if architecture == "m3gnet" else "mace"
        exported = export_training_set(sessions, "bench", fmt, scratch / f"direct_{fmt}")
        paths = {split: path for split, (path, _) in exported.items()}
        started = time.perf_counter()
        if architecture == "m3gnet":
            direct = direct_m3gnet(paths, options, scratch / "direct_m3gnet_work")
        else:
            from ase.data import atomic_numbers
            from ase.io import iread

            symbols = {
                s for p in paths.values() for a in iread(p, ":") for s in a.get_chemical_symbols()
            }
            numbers = tuple(sorted(atomic_numbers[s] for s in symbols))
            direct = direct_mace(paths, options, scratch / "direct_mace_work", numbers)
        direct_wall = time.perf_counter() - started
        started = time.perf_counter()
        details = train_model(
            sessions, TrainRequest(f"bench-{architecture}", "bench", options), scratch / "artifacts"
        )
        ours_wall = time.perf_counter() - started
        ours = [row["epoch_seconds"] for row in details.training_curve]
        direct_rate = n_train / steady(direct)
        ours_rate = n_train / steady(ours)
        results[architecture] = {
            "direct_frames_per_s": round(direct_rate, 1),
            "atlas2d_frames_per_s": round(ours_rate, 1),
            "wrapper_cost": round(1 - ours_rate / direct_rate, 4),
            "direct_epoch_s": [round(s, 3) for s in direct],
            "atlas2d_epoch_s": [round(s, 3) for s in ours],
            "direct_wall_s": round(direct_wall, 2),
            "atlas2d_wall_s": round(ours_wall, 2),
        }
        print(
            f"{architecture}: {n_train} training frames, epoch throughput direct "
            f"{direct_rate:,.1f} frames/s, atlas2d {ours_rate:,.1f} frames/s "
            f"(wrapper cost {100 * (1 - ours_rate / direct_rate):+.1f} %); wall time direct "
            f"{direct_wall:.1f} s, atlas2d {ours_wall:.1f} s (export, training, evaluation of "
            "val+test, registration)",
            flush=True,
        )
    engine.dispose()
    stop_embedded_servers(scratch)
    print(f"machine: {machine()}, threads {configured_threads()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
