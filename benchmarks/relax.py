"""Relaxation throughput: the ASE engine (one structure at a time), the batched engine
(torch-sim's state, our loop-free FIRE step and, for MACE, our model adapter), the
batched engine with torch-sim 0.3.0's own step and MaceModel, and Dask with 2 workers,
on the same 2D structures and the same model, in one run. Also counted, to read the
figures for a GPU: the operations per batched step that make the host wait for the
device, the ATen operations (kernel launches) per step of each engine, and the steps of
the longest relaxation (a batch takes as many steps as its longest member).

    python benchmarks/relax.py [--materials 120] [--arch mace] [--device cpu]

Setup: layers of MX2 compounds (1×1 to 3×2 cells, 3–18 atoms) strained and rattled,
labelled with CHGNet (the reference labeller standing in for DFT), ingested, and a small
model trained on them, so that relaxations take realistic numbers of steps. Each engine
then relaxes every material from its first frame (FIRE, in-plane cell, fmax 0.05 eV/Å,
at most 300 steps) and writes the results back (``--force``: the same requests again).
Last line: one JSON object with structures/s, steps/s and the ratios to the ASE loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the device-wait census are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import fresh_database, machine, stop_embedded_servers, workdir
from atlas2d.threads import apply_threads

apply_threads()

from sqlalchemy import text

from atlas2d.db.session import make_sessions
from atlas2d.io.records import ParsedFile, Trajectory
from atlas2d.mlff import batched as batched_engine
from atlas2d.mlff import frechet_fire
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions
from atlas2d.queries.training_sets import SelectionParameters
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.services.training import TrainRequest, train_model
from atlas2d.services.trainsets import create_training_set

COMPOUNDS = ["MoS2", "WS2", "MoSe2", "WSe2", "NbS2", "TiS2", "ZrS2", "MoTe2"]
CELLS = [(1, 1), (2, 1), (2, 2), (3, 2)]  # 3, 6, 12, 18 atoms


def labelled_layers(n_materials: int, seed: int = 0) -> list[Trajectory]:
    """Strained, rattled MX2 layers with three CHGNet-labelled frames each."""
    from ase.build import mx2
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    rng = np.random.default_rng(seed)
    calculator = CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")
    trajectories = []
    for index in range(n_materials):
        formula = COMPOUNDS[index % len(COMPOUNDS)]
        size = CELLS[(index // len(COMPOUNDS)) % len(CELLS)]
        base = mx2(formula, a=3.2, vacuum=7.0, size=(*size, 1))
        strain = np.eye(3)
        strain[:2, :2] += rng.uniform(-0.04, 0.04, (2, 2))
        base.set_cell(base.cell.array @ strain, scale_atoms=True)
        frames = []
        for _ in range(3):
            atoms = base.copy()
            atoms.positions += rng.normal(0, 0.06, atoms.positions.shape)
            atoms.calc = calculator
            frames.append(
                (
                    atoms.cell.array.copy(),
                    atoms.positions.copy(),
                    atoms.get_potential_energy(),
                    atoms.get_forces().copy(),
                    atoms.get_stress(voigt=False).copy(),
                )
            )
        cells, positions, energies, forces, stresses = (
            np.array(v) for v in zip(*frames, strict=True)
        )
        trajectories.append(
            Trajectory(
                material_key=f"bench-{index:04d}-{formula}",
                species=base.get_atomic_numbers(),
                cells=cells,
                positions=positions,
                energies=energies,
                forces=forces,
                stresses=stresses,
                parameters={"labeller": "CHGNet 0.4.2 (benchmark stand-in for DFT)"},
                pbc=(True, True, False),
            )
        )
    return trajectories


def final_energies(sessions, model_version_id: int) -> dict[str, tuple[float, bool]]:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, r.final_energy_per_atom, r.converged FROM relaxations r"
                " JOIN materials m ON m.id = r.material_id WHERE r.model_version_id = :mv"
            ),
            {"mv": model_version_id},
        ).all()
    return {key: (energy, converged) for key, energy, converged in rows}


loop_free_step = frechet_fire.frechet_fire_step
our_model = batched_engine.torchsim_model


def torch_sim_step(state, first: bool, **settings):  # type: ignore[no-untyped-def]
    """torch-sim 0.3.0's own ASE-flavour FIRE step on the Fréchet cell (the baseline)."""
    from torch_sim.optimizers import _ase_fire_step

    return _ase_fire_step(state, is_cell_optimization=True, is_frechet=True, **settings)


def torch_sim_model(force_field):  # type: ignore[no-untyped-def]
    """torch-sim 0.3.0's own MaceModel (the baseline); M3GNet has only our adapter."""
    import torch
    from torch_sim.models.mace import MaceModel

    if force_field.architecture != "mace":
        return our_model(force_field)
    return MaceModel(
        model=force_field.model, device=torch.device(force_field.device), dtype=torch.float64
    )


def use_torch_sims_own(on: bool) -> None:
    """Step (and model) the batched engine with torch-sim 0.3.0's own code, or ours."""
    frechet_fire.frechet_fire_step = torch_sim_step if on else loop_free_step
    batched_engine.torchsim_model = torch_sim_model if on else our_model


def second_step(force_field, structures):  # type: ignore[no-untyped-def]
    """The batched engine's state of all structures (as layers) after its first FIRE
    step, and a call that takes the second: what the counts below watch."""
    import torch

    model = batched_engine._in_plane_class()(batched_engine.torchsim_model(force_field))
    model.layer_mask = torch.ones(len(structures), dtype=torch.bool, device=model.device)
    start, settings, _ = frechet_fire.fire_optimiser(model)
    state = frechet_fire.frechet_fire_step(start(structures), first=True, **settings)
    return lambda: frechet_fire.frechet_fire_step(state, first=False, **settings)


def operations_per_step(force_field, structures) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """ATen operations (each a kernel launch on a GPU) per step: one ASE calculator call
    on one structure (the largest), and one batched FIRE step with the model on all.

    With structures this small a GPU finishes each kernel faster than the host launches
    the next, so host time per step follows these counts."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        operations = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            Count.operations += 1
            return func(*args, **(kwargs or {}))

    def counted(call) -> int:  # type: ignore[no-untyped-def]
        Count.operations = 0
        with Count():
            call()
        return Count.operations

    atoms = max(structures, key=len).copy()
    atoms.calc = force_field.calculator(in_plane_stress=True)
    atoms.get_forces()
    atoms.positions[0, 0] += 0.01  # a new geometry: the next call evaluates the model
    ase = counted(lambda: (atoms.get_forces(), atoms.get_stress()))
    batched = counted(second_step(force_field, structures))
    return {"ase_per_structure_step": ase, "batched_per_step": batched}


def waits_per_step(force_field, structures) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Operations that make the host wait for the device in one FIRE step (not the
    first) of the whole batch, ours and torch-sim 0.3.0's; see tests.support.device_waits."""
    from tests.support.device_waits import count_device_waits

    counts = {}
    for label, own in (("ours", False), ("torch_sim", True)):
        use_torch_sims_own(own)
        step = second_step(force_field, structures)
        with count_device_waits() as waits:
            step()
        counts[label] = sum(waits.values())
    use_torch_sims_own(False)
    return counts


def total_steps(sessions, model_version_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """FIRE steps of all relaxations together, and of the longest (a batch of them all
    takes as many steps as its longest member)."""
    with sessions.begin() as session:
        total, longest = session.execute(
            text(
                "SELECT sum((info ->> 'optimizer_steps')::int),"
                " max((info ->> 'optimizer_steps')::int) FROM relaxations"
                " WHERE model_version_id = :mv"
            ),
            {"mv": model_version_id},
        ).one()
    return int(total), int(longest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--materials", type=int, default=120)
    parser.add_argument("--arch", default="mace", choices=["mace", "m3gnet"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--skip", default="", help="comma-separated runs to skip: ase,torchsim,dask"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    scratch = workdir()
    _, engine = fresh_database(scratch)
    sessions = make_sessions(engine)
    began = time.perf_counter()
    trajectories = labelled_layers(args.materials)
    label_s = time.perf_counter() - began
    ingest_parsed(
        sessions, ParsedFile("bench", "records", "", "benchmark", trajectories=trajectories)
    )
    create_training_set(
        sessions, "bench", SelectionParameters(rule="all", split=(80.0, 10.0, 10.0), seed=0)
    )
    options = TrainOptions(
        architecture=args.arch,
        epochs=args.epochs,
        batch_size=8,
        seed=0,
        device=args.device,
        m3gnet=M3GNetSize(units=32, nblocks=2),
        mace=MACESize(channels=32, max_l=0, correlation=2),
    )
    model = train_model(sessions, TrainRequest("bench", "bench", options), scratch / "artifacts")
    with sessions.begin() as session:
        model_version_id = session.execute(
            text("SELECT id FROM model_versions WHERE name = 'bench'")
        ).scalar_one()
    print(
        f"{args.materials} layers labelled with CHGNet in {label_s:.1f} s; {args.arch} trained "
        f"({model.metrics['epochs_run']} epochs, test force MAE {model.metrics['test']['force_mae_mev_per_a']:.0f} meV/Å)",
        flush=True,
    )
    settings = RelaxSettings(fmax=args.fmax, max_steps=args.steps)
    sizes = [len(t.species) for t in trajectories]
    results: dict[str, Any] = {
        "materials": args.materials,
        "atoms_per_structure": [min(sizes), max(sizes)],
        "arch": args.arch,
        "device": args.device,
        "fmax_ev_per_a": args.fmax,
    }
    from ase import Atoms

    from atlas2d.services.models import load_force_field

    starts = [
        Atoms(numbers=t.species, positions=t.positions[0], cell=t.cells[0], pbc=True)
        for t in trajectories
    ]
    force_field = load_force_field(sessions, "bench:1", scratch / "artifacts", device=args.device)
    results["device_waits_per_step"] = waits_per_step(force_field, starts)
    results["operations_per_step"] = operations_per_step(force_field, starts)
    print(f"device waits per step: {results['device_waits_per_step']}", flush=True)
    print(f"operations per step: {results['operations_per_step']}", flush=True)
    energies: dict[str, dict[str, tuple[float, bool]]] = {}
    # Materials committed together: small for the one-at-a-time engines (resume
    # granularity), all of them for the batched engine (one batch per model call).
    runs = [
        ("ase", "ase", 0, 16),
        ("batched", "batched", 0, args.materials),
        ("torchsim", "batched", 0, args.materials),
        ("dask_2_workers", "ase", 2, 16),
    ]
    for label, engine_name, workers, chunk_size in runs:
        if label.split("_")[0] in skip:
            continue
        # The batched engine once more with torch-sim 0.3.0's own FIRE step (its
        # per-structure Fréchet loop) and MaceModel (its per-structure neighbour lists)
        # instead of ours: what the rewrites gained.
        use_torch_sims_own(label == "torchsim")
        request = RelaxRequest(
            "bench",
            materials=None,
            settings=settings,
            engine=engine_name,
            force=True,
            device=args.device,
            chunk_size=chunk_size,
            training_set=None,
        )
        started = time.perf_counter()
        report = relax(sessions, request, scratch / "artifacts", workers=workers)
        seconds = time.perf_counter() - started
        steps, longest = total_steps(sessions, model_version_id)
        energies[label] = final_energies(sessions, model_version_id)
        results[label] = {
            "seconds": round(seconds, 2),
            "structures_per_s": round(report.relaxed / seconds, 3),
            "steps_per_s": round(steps / seconds, 1),
            "total_steps": steps,
            "longest_relaxation_steps": longest,
            "converged": report.converged,
            "relaxed": report.relaxed,
        }
        print(f"{label}: {json.dumps(results[label])}", flush=True)
    use_torch_sims_own(False)
    if "torchsim" in results and "batched" in results:
        results["batched_vs_torchsim"] = round(
            results["batched"]["structures_per_s"] / results["torchsim"]["structures_per_s"], 2
        )
    if "ase" in results:
        for label in ("batched", "torchsim", "dask_2_workers"):
            if label in results:
                results[f"{label}_vs_ase"] = round(
                    results[label]["structures_per_s"] / results["ase"]["structures_per_s"], 2
                )
        if "batched" in energies:
            both = [
                abs(energies["ase"][k][0] - energies["batched"][k][0]) * 1000
                for k in energies["ase"]
                if energies["ase"][k][1] and energies["batched"].get(k, (0, False))[1]
            ]
            results["ase_vs_batched_energy_max_mev_per_atom"] = (
                round(max(both), 3) if both else None
            )
            results["ase_vs_batched_energy_median_mev_per_atom"] = (
                round(float(np.median(both)), 4) if both else None
            )
    engine.dispose()
    stop_embedded_servers(scratch)
    print(f"machine: {machine()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
