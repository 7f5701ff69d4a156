"""Batched relaxation: many structures per model call with torch-sim's FIRE on the
Fréchet cell parameterisation (``torch_sim.frechet_cell_fire``, ASE's FIRE flavour),
the same algorithm and cell filter as :func:`atlas2d.mlff.relax.relax_ase`. torch-sim
sets up the state; each step is :func:`atlas2d.mlff.frechet_fire.frechet_fire_step`,
torch-sim's step without its per-structure loop (equal to it to 1e-9, tested).

MACE runs through :func:`atlas2d.mlff.torchsim_mace.mace_batch_model` (torch-sim's
``MaceModel`` with one host round trip per call instead of several per structure);
M3GNet through :class:`M3GNetTorchSimModel`, a small adapter over our batch API. Both
are wrapped in :class:`InPlaneStressModel`, which zeroes the z-index stress components
of 2D layers for the optimiser, as the ASE engine's calculator does.

Structures are grouped into batches of at most ``max_atoms`` atoms (automatic batch
sizing by atom count). Every step each structure's convergence is checked (atomic and
cell forces below ``fmax``); a converged structure is taken out of the batch at once,
with its step count, so results do not depend on what else was in the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from atlas2d.mlff.forcefield import ForceField
from atlas2d.mlff.relax import RelaxResult, RelaxSettings
from atlas2d.vocabulary import DEFAULT_MAX_ATOMS


def _model_interface() -> Any:
    from torch_sim.models.interface import ModelInterface

    return ModelInterface


def torchsim_model(force_field: ForceField) -> Any:
    """The torch-sim model of a force field (float64, the force field's device)."""
    from atlas2d.mlff.mace import MACEForceField

    if isinstance(force_field, MACEForceField):
        from atlas2d.mlff.torchsim_mace import mace_batch_model

        return mace_batch_model(force_field.model, force_field.device)
    return _m3gnet_model_class()(force_field)


def _m3gnet_model_class() -> type:
    import torch

    class M3GNetTorchSimModel(_model_interface()):  # type: ignore[misc]
        """torch-sim model over :meth:`M3GNetForceField.predict` (graphs built per step,
        every system 3D periodic; stress in eV/Å³, ASE sign)."""

        def __init__(self, force_field: ForceField) -> None:
            super().__init__()
            self.force_field = force_field
            self._device = torch.device(force_field.device)
            self._dtype = torch.float64
            self._compute_stress = True
            self._compute_forces = True
            self._memory_scales_with = "n_atoms_x_density"

        def forward(self, state: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            structures = _atoms_of(state)
            predictions = self.force_field.predict(structures, batch_size=len(structures))

            def tensor(values: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(values, device=self._device, dtype=self._dtype)

            return {
                "energy": tensor(predictions.energies),
                "forces": tensor(np.concatenate(predictions.forces)),
                "stress": tensor(predictions.stresses),
            }

    return M3GNetTorchSimModel


def _atoms_of(state: Any) -> list[Atoms]:
    positions = state.positions.detach().cpu().numpy()
    numbers = state.atomic_numbers.detach().cpu().numpy()
    cells = state.row_vector_cell.detach().cpu().numpy()
    systems = state.system_idx.detach().cpu().numpy()
    return [
        Atoms(
            numbers=numbers[systems == k],
            positions=positions[systems == k],
            cell=cells[k],
            pbc=True,
        )
        for k in range(state.n_systems)
    ]


def _in_plane_class() -> type:
    import torch

    class InPlaneStressModel(_model_interface()):  # type: ignore[misc]
        """Zeroes the z-index stress components of the systems flagged as layers, and
        keeps the full stress of the last call in ``full_stress``."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self._device, self._dtype = inner.device, inner.dtype
            self._compute_stress = self._compute_forces = True
            self._memory_scales_with = inner.memory_scales_with
            self.layer_mask = torch.zeros(0, dtype=torch.bool)
            self.full_stress: torch.Tensor | None = None
            # (3, 3): the components with a z index.
            self.z_index = torch.zeros((3, 3), dtype=torch.bool, device=inner.device)
            self.z_index[2, :] = self.z_index[:, 2] = True

        def forward(self, state: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            output = dict(self.inner(state, **kwargs))
            self.full_stress = output["stress"].detach()
            stress = output["stress"]
            # torch.where, not boolean indexing: that would wait for the device.
            zeroed = self.layer_mask.to(stress.device).view(-1, 1, 1) & self.z_index
            output["stress"] = torch.where(zeroed, torch.zeros_like(stress), stress)
            return output

    return InPlaneStressModel


def batches_by_atoms(sizes: Sequence[int], max_atoms: int) -> list[list[int]]:
    """Indices grouped into consecutive batches of at most ``max_atoms`` atoms (a
    structure larger than that gets a batch of its own)."""
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for index, size in enumerate(sizes):
        if current and atoms + size > max_atoms:
            batches.append(current)
            current, atoms = [], 0
        current.append(index)
        atoms += size
    if current:
        batches.append(current)
    return batches


def relax_batched(
    force_field: ForceField,
    structures: Sequence[Atoms],
    in_plane: Sequence[bool],
    settings: RelaxSettings = RelaxSettings(),
    max_atoms: int | None = None,
) -> list[RelaxResult]:
    """Relax structures in batches of at most ``max_atoms`` atoms.

    Args:
        structures: starting structures (not modified). in_plane: per structure, True
            for a 2D layer.
        max_atoms: atoms per batch; default :data:`DEFAULT_MAX_ATOMS` for the device.

    Returns:
        One :class:`RelaxResult` per structure, in the order given.
    """
    force_field.check_elements(structures)
    limit = (
        max_atoms or DEFAULT_MAX_ATOMS["cuda" if force_field.device.startswith("cuda") else "cpu"]
    )
    model = _in_plane_class()(torchsim_model(force_field))
    results: dict[int, RelaxResult] = {}
    for batch in batches_by_atoms([len(s) for s in structures], limit):
        began = time.perf_counter()
        relaxed = _relax_batch(
            model, [structures[i] for i in batch], [in_plane[i] for i in batch], settings
        )
        elapsed = time.perf_counter() - began
        for index, result in relaxed:
            result.wall_time_s = elapsed / len(batch)
            results[batch[index]] = result
    return [results[index] for index in range(len(structures))]


def _relax_batch(
    model: Any, structures: list[Atoms], in_plane: list[bool], settings: RelaxSettings
) -> list[tuple[int, RelaxResult]]:
    import torch

    from atlas2d.mlff.frechet_fire import fire_optimiser, frechet_fire_step

    # torch-sim's own settings, stepped by our loop-free version of its step.
    start, settings_of_step, _ = fire_optimiser(model)
    active = list(range(len(structures)))  # batch positions of the systems in the state
    model.layer_mask = torch.tensor(in_plane, dtype=torch.bool, device=model.device)
    state = start(structures)
    trajectories: list[list[tuple]] = [[] for _ in structures]
    done: list[tuple[int, RelaxResult]] = []
    for step in range(settings.max_steps + 1):
        atom_forces = torch.zeros(len(active), dtype=state.forces.dtype, device=state.forces.device)
        atom_forces = atom_forces.scatter_reduce(
            0, state.system_idx, state.forces.norm(dim=1), reduce="amax", include_self=True
        )
        cell_forces = state.cell_forces.norm(dim=2).amax(dim=1)
        converged = ((atom_forces < settings.fmax) & (cell_forces < settings.fmax)).cpu().numpy()
        finished = [k for k in range(len(active)) if converged[k] or step == settings.max_steps]
        # Copying a snapshot to the host costs more than a model call on a GPU: only for
        # structures that finish (or every step when the trajectory is kept).
        wanted = range(len(active)) if settings.save_trajectory else finished
        if wanted:
            snapshots = _snapshots(state, model.full_stress, list(wanted))
            for k, snapshot in zip(wanted, snapshots, strict=True):
                trajectories[active[k]].append(snapshot)
        for k in finished:
            original = active[k]
            frames = (
                trajectories[original] if settings.save_trajectory else trajectories[original][-1:]
            )
            energies, cells, positions, forces, stresses = (
                np.array(v) for v in zip(*frames, strict=True)
            )
            done.append(
                (
                    original,
                    RelaxResult(
                        converged=bool(converged[k]),
                        n_steps=step,
                        energies=energies,
                        cells=cells,
                        positions=positions,
                        forces=forces,
                        stresses=stresses,
                        wall_time_s=0.0,
                        engine="batched",
                    ),
                )
            )
        if finished:
            gone = set(finished)
            keep = [k for k in range(len(active)) if k not in gone]
            if not keep:
                break
            active = [active[k] for k in keep]
            state = state[keep]
            model.layer_mask = torch.tensor(
                [in_plane[i] for i in active], dtype=torch.bool, device=model.device
            )
        state = frechet_fire_step(state, first=step == 0, **settings_of_step)
    return done


def _snapshots(state: Any, full_stress: Any, systems: list[int]) -> list[tuple]:
    """(energy, cell, positions, forces, full stress) of the given systems, on the host."""
    energies = state.energy.detach().cpu().numpy()
    cells = state.row_vector_cell.detach().cpu().numpy()
    positions = state.positions.detach().cpu().numpy()
    forces = state.forces.detach().cpu().numpy()
    stresses = full_stress.detach().cpu().numpy()
    system_of_atom = state.system_idx.detach().cpu().numpy()
    return [
        (
            float(energies[k]),
            cells[k].copy(),
            positions[system_of_atom == k].copy(),
            forces[system_of_atom == k].copy(),
            stresses[k].copy(),
        )
        for k in systems
    ]
