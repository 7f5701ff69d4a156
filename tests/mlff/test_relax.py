"""The relaxation engines on freshly trained models: FIRE with in-plane cell relaxation
for layers and full cell relaxation for bulk; the ASE loop and the batched torch-sim
engine find the same minima."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2

from atlas2d.mlff.batched import batches_by_atoms, relax_batched
from atlas2d.mlff.relax import RelaxSettings, relax_ase
from atlas2d.services.models import load_force_field

# The tiny test models have shallow energy surfaces: a tight fmax makes them take tens
# to hundreds of steps, like a real model from a distorted start.
FMAX = {"m3gnet": 5e-4, "mace": 2e-3}  # eV/Å


def _settings(force_field, **changes) -> RelaxSettings:  # type: ignore[no-untyped-def]
    return RelaxSettings(**{"fmax": FMAX[force_field.architecture], "max_steps": 400, **changes})


def _layers() -> list[Atoms]:
    structures = []
    for seed, (a, size) in enumerate([(3.0, 1), (3.05, 2), (3.4, 1), (3.3, 2)]):
        atoms = mx2("MoS2", a=a, vacuum=6.0, size=(size, size, 1))
        atoms.rattle(0.1, seed=seed)
        atoms.pbc = (True, True, False)
        structures.append(atoms)
    return structures


@pytest.fixture(params=["tiny-m3gnet:1", "tiny-mace:1"])
def force_field(request: pytest.FixtureRequest, trained_registry):  # type: ignore[no-untyped-def]
    return load_force_field(
        trained_registry.sessions, request.param, trained_registry.artifacts_dir
    )


def test_both_engines_find_the_same_minima(force_field) -> None:  # type: ignore[no-untyped-def]
    layers = _layers()
    settings = _settings(force_field)
    reference = list(relax_ase(force_field, layers, [True] * len(layers), settings))
    batched = relax_batched(force_field, layers, [True] * len(layers), settings, max_atoms=20)
    both, moved = 0, 0
    for start, a, b in zip(layers, reference, batched, strict=True):
        assert a.n_steps > 5  # they really relaxed
        if a.converged and b.converged:
            both += 1
            per_atom = abs(a.energies[-1] - b.energies[-1]) / len(start) * 1000
            assert per_atom < 5.0  # meV/atom
            assert a.energies[-1] < force_field.predict([start]).energies[0]  # downhill
        for result in (a, b):
            final_cell = result.cells[-1]
            # In-plane only: c (and the vacuum) is unchanged, a and b moved.
            np.testing.assert_allclose(final_cell[2], start.cell.array[2], atol=1e-9)
            moved += not np.allclose(final_cell[:2], start.cell.array[:2], atol=1e-6)
            assert result.energies.shape == (1,) and result.positions.shape == (1, len(start), 3)
    assert both >= 3
    assert moved >= 4  # a and b did relax


def test_bulk_relaxes_the_whole_cell(force_field) -> None:  # type: ignore[no-untyped-def]
    start = bulk("Mo", "bcc", a=3.0, cubic=True)
    start.rattle(0.05, seed=3)
    settings = _settings(force_field)
    for result in (
        next(relax_ase(force_field, [start], [False], settings)),
        relax_batched(force_field, [start], [False], settings)[0],
    ):
        assert result.n_steps > 0
        assert not np.isclose(result.cells[-1][2, 2], start.cell[2, 2], atol=1e-7)  # c too


def test_trajectories_have_every_step(force_field) -> None:  # type: ignore[no-untyped-def]
    layer = _layers()[:1]
    settings = _settings(force_field, save_trajectory=True)
    for result in (
        next(relax_ase(force_field, layer, [True], settings)),
        relax_batched(force_field, layer, [True], settings)[0],
    ):
        assert len(result.energies) == result.n_steps + 1
        np.testing.assert_allclose(result.positions[0], layer[0].positions, atol=1e-12)
        assert result.energies[-1] <= result.energies[0]


def test_a_step_limit_is_not_convergence(force_field) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(force_field, fmax=1e-6, max_steps=3)
    for result in (
        next(relax_ase(force_field, _layers()[:1], [True], settings)),
        relax_batched(force_field, _layers()[:1], [True], settings)[0],
    ):
        assert (result.converged, result.n_steps) == (False, 3)


def test_batches_by_atom_count() -> None:
    assert batches_by_atoms([3, 3, 12, 3, 30, 3], max_atoms=15) == [[0, 1], [2, 3], [4], [5]]


def test_batched_results_belong_to_their_structure(force_field) -> None:  # type: ignore[no-untyped-def]
    """Structures leave the batch as they converge: each result's energy, forces and full
    stress must still be the model's prediction for that structure's final geometry."""
    layers = _layers()
    results = relax_batched(force_field, layers, [True] * len(layers), _settings(force_field))
    finals = [
        Atoms(numbers=start.numbers, positions=r.positions[-1], cell=r.cells[-1], pbc=True)
        for start, r in zip(layers, results, strict=True)
    ]
    fresh = force_field.predict(finals)
    for index, result in enumerate(results):
        assert result.energies[-1] == pytest.approx(fresh.energies[index], abs=1e-8)
        np.testing.assert_allclose(result.forces[-1], fresh.forces[index], atol=1e-8)
        np.testing.assert_allclose(result.stresses[-1], fresh.stresses[index], atol=1e-10)
    assert len({r.n_steps for r in results}) > 1  # they did leave at different steps


def test_loop_free_fire_step_reproduces_torch_sims_step(force_field) -> None:  # type: ignore[no-untyped-def]
    """Thirty steps of our FIRE step and torch-sim 0.3.0's on the same batch (layers and
    bulk) give the same positions, cells, energies and cell forces."""
    import torch
    import torch_sim.math as tsm

    from atlas2d.mlff.batched import _in_plane_class, torchsim_model
    from atlas2d.mlff.frechet_fire import (
        cell_forces_log_space,
        fire_optimiser,
        frechet_fire_step,
    )

    structures = _batch_with_bulk()
    model = _in_plane_class()(torchsim_model(force_field))
    model.layer_mask = torch.tensor([True, True, True, False])
    start_from, settings, reference_step = fire_optimiser(model)

    def start():  # type: ignore[no-untyped-def]
        return start_from(structures)

    ours, theirs = start(), start()
    for step in range(30):
        ours = frechet_fire_step(ours, first=step == 0, **settings)
        theirs = reference_step(theirs)
    assert ours.positions.sub(theirs.positions).abs().max() < 1e-9
    assert ours.cell.sub(theirs.cell).abs().max() < 1e-9
    assert ours.energy.sub(theirs.energy).abs().max() < 1e-9
    assert ours.cell_forces.sub(theirs.cell_forces).abs().max() < 1e-9
    assert ours.cell.sub(start().cell).abs().max() > 1e-3  # the cells did move

    # The closed form equals torch-sim's nine Fréchet derivatives per structure.
    generator = torch.Generator().manual_seed(3)
    x = 0.05 * torch.randn(5, 3, 3, dtype=torch.float64, generator=generator)
    g = torch.randn(5, 3, 3, dtype=torch.float64, generator=generator)
    directions = torch.eye(9, dtype=torch.float64).reshape(9, 3, 3)
    expected = torch.stack(
        [
            torch.stack(
                [(tsm.expm_frechet(x[b], d, compute_expm=False) * g[b]).sum() for d in directions]
            ).reshape(3, 3)
            for b in range(5)
        ]
    )
    assert cell_forces_log_space(x, g).sub(expected).abs().max() < 1e-12


def _batch_with_bulk() -> list[Atoms]:
    """Three layers of 3 and 12 atoms and a strained, rattled bcc cell."""
    structures = [*_layers()[:3], bulk("Mo", "bcc", a=3.25, cubic=True)]
    structures[-1].rattle(0.05, seed=9)
    structures[-1].set_cell(structures[-1].cell * 1.03, scale_atoms=True)
    return structures


def test_mace_batch_model_gives_torch_sims_mace_model_outputs(trained_registry) -> None:  # type: ignore[no-untyped-def]
    import torch
    import torch_sim as ts
    from torch_sim.models.mace import MaceModel

    from atlas2d.mlff.forcefield import as_periodic
    from atlas2d.mlff.torchsim_mace import mace_batch_model

    mace = load_force_field(
        trained_registry.sessions, "tiny-mace:1", trained_registry.artifacts_dir
    )
    structures = _batch_with_bulk()
    state = ts.initialize_state(
        [as_periodic(s) for s in structures], torch.device("cpu"), torch.float64
    )
    ours = mace_batch_model(mace.model, "cpu")(state)
    theirs = MaceModel(model=mace.model, device=torch.device("cpu"), dtype=torch.float64)(state)
    assert ours["energy"].shape == (len(structures),)
    assert ours["forces"].shape == (sum(len(s) for s in structures), 3)
    assert ours["stress"].shape == (len(structures), 3, 3)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-10)
    assert ours["forces"].abs().max() > 1e-3  # not a trivially flat comparison


def test_a_batched_mace_step_waits_for_the_device_twice_whatever_the_batch(
    trained_registry,
) -> None:  # type: ignore[no-untyped-def]
    """Reads of device values in a FIRE step of the batched engine (our step, our MACE
    adapter, the in-plane stress mask): on a GPU each stalls the queue. Ours has the two
    matrix exponentials' and no more for four structures than for one; torch-sim's own
    step and model have dozens per structure, which the census must see."""
    import torch
    from torch_sim.models.mace import MaceModel

    from atlas2d.mlff.batched import _in_plane_class, torchsim_model
    from atlas2d.mlff.frechet_fire import fire_optimiser, frechet_fire_step
    from tests.support.device_waits import count_device_waits

    mace = load_force_field(
        trained_registry.sessions, "tiny-mace:1", trained_registry.artifacts_dir
    )

    def second_step_waits(inner, structures, torch_sims_step=False):  # type: ignore[no-untyped-def]
        model = _in_plane_class()(inner)
        model.layer_mask = torch.tensor([not s.pbc[2] for s in structures])  # layers
        start, settings, torch_sim_step = fire_optimiser(model)
        state = frechet_fire_step(start(structures), first=True, **settings)
        with count_device_waits() as waits:
            if torch_sims_step:
                state = torch_sim_step(state)
            else:
                state = frechet_fire_step(state, first=False, **settings)
        assert torch.isfinite(state.energy).all()
        return waits

    batch = _batch_with_bulk()
    ours = torchsim_model(mace)
    assert second_step_waits(ours, batch[:1]) == {"linalg_matrix_exp": 2}
    assert second_step_waits(ours, batch) == {"linalg_matrix_exp": 2}

    theirs = MaceModel(model=mace.model, device=torch.device("cpu"), dtype=torch.float64)
    waits = second_step_waits(theirs, batch, torch_sims_step=True)
    assert sum(waits.values()) >= 40 * len(batch)
    assert {"boolean index", "_linalg_check_errors", "equal", "_local_scalar_dense"} <= set(waits)
