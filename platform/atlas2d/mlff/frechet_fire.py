"""One batched FIRE step (ASE's flavour) on positions and the Fréchet cell
parameterisation, with no loop over structures and no host synchronisation.

This is torch-sim 0.3.0's ``_ase_fire_step`` (``torch_sim/optimizers.py``, MIT licence)
for the case the batched engine uses (``frechet_cell_fire``, ``md_flavor="ase_fire"``,
no hydrostatic or constant-volume constraint), with two changes that keep its results:

- **The cell force in log space.** torch-sim contracts the cell gradient G with the
  Fréchet derivative L(X, E) of the matrix exponential at X = log F for each of the 9
  unit directions E, separately for every structure: 9 × n_systems calls of
  ``expm_frechet`` per step, a chain of tiny kernels whose cost grows with the batch
  (on an H100 it made the batched engine only 3.7× the ASE loop). The contraction is
  the adjoint derivative, Σ_mn L(X, E_μν)_mn G_mn = L(Xᵀ, G)_μν, and L(Xᵀ, G) is the
  upper-right block of expm([[Xᵀ, G], [0, Xᵀ]]): one batched 6×6 matrix exponential
  for the whole batch (:func:`cell_forces_log_space`).
- **No reads of device values but two.** torch-sim checks every step whether any
  velocity is NaN (its mark of the first step) and whether a volume is non-positive;
  its helpers count the structures with ``torch.unique``, check the system indices of
  every per-structure dot product with ``.min()``/``.max()``, and solve and invert with
  the error-checking ``torch.linalg`` calls. Each of those makes the host wait for a
  GPU. Here the first step is told by the caller, volumes are not checked, the count is
  the cells' leading dimension, sums per structure are one ``index_add_`` of known
  length, and the linear algebra is ``solve_ex``/``inv_ex`` (the same kernels without
  the check: a singular cell gives non-finite values instead of an exception, and the
  engine reports non-finite results as diverged). What waits is the two batched
  ``torch.matrix_exp`` calls (the kernel reads norms on the host), whatever the batch
  size; a test counts them (:mod:`tests.support.device_waits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ase import Atoms

from atlas2d.mlff.forcefield import as_periodic


def fire_optimiser(
    model: Any,
) -> tuple[Callable[[Sequence[Atoms]], Any], dict[str, Any], Callable[[Any], Any]]:
    """torch-sim's ASE-flavour FIRE on the Fréchet cell for a torch-sim ``model``.

    Returns:
        start: structures -> the optimiser's state of their 3D-periodic copies;
        settings: torch-sim's settings, as :func:`frechet_fire_step` takes them;
        torch_sim_step: torch-sim 0.3.0's own step (the reference).
    """
    import torch_sim as ts

    init_fn, torch_sim_step = ts.frechet_cell_fire(model, md_flavor="ase_fire")
    settings = {
        k: v
        for k, v in torch_sim_step.keywords.items()
        if k not in ("is_cell_optimization", "is_frechet")
    }

    def start(structures: Sequence[Atoms]) -> Any:
        periodic = [as_periodic(s) for s in structures]
        return init_fn(ts.initialize_state(periodic, model.device, model.dtype))

    return start, settings, torch_sim_step


def cell_forces_log_space(
    log_deformation: torch.Tensor, cell_gradient: torch.Tensor
) -> torch.Tensor:
    """Cell forces in the Fréchet (matrix-logarithm) parameterisation.

    Args:
        log_deformation: X = log F, shape (n, 3, 3).
        cell_gradient: G, the unit-cell-filter gradient (virial · F⁻ᵀ), shape (n, 3, 3), eV.

    Returns:
        C with C_μν = Σ_mn [d expm(X)/dX_μν]_mn G_mn, shape (n, 3, 3): the upper-right
        block of expm([[Xᵀ, G], [0, Xᵀ]]).
    """
    n = log_deformation.shape[0]
    block = log_deformation.new_zeros((n, 6, 6))
    transposed = log_deformation.mT
    block[:, :3, :3] = transposed
    block[:, 3:, 3:] = transposed
    block[:, :3, 3:] = cell_gradient
    return torch.matrix_exp(block)[:, :3, 3:]


def _per_system_dot(x: torch.Tensor, y: torch.Tensor, system: torch.Tensor, n: int) -> torch.Tensor:
    """Σ x·y over each structure's rows: x, y (N, 3), system (N,) -> (n,)."""
    return x.new_zeros(n).index_add_(0, system, (x * y).sum(dim=1))


def frechet_fire_step(
    state: Any,
    model: Any,
    *,
    first: bool,
    dt_max: torch.Tensor,
    n_min: torch.Tensor,
    f_inc: torch.Tensor,
    f_dec: torch.Tensor,
    alpha_start: torch.Tensor,
    f_alpha: torch.Tensor,
    max_step: torch.Tensor,
    eps: float,
) -> Any:
    """Advance a torch-sim ``FrechetCellFIREState`` by one FIRE step and re-evaluate it.

    Args:
        state: from ``torch_sim.frechet_cell_fire(model, md_flavor="ase_fire")``'s init.
        model: the torch-sim model (energy eV, forces eV/Å, stress eV/Å³).
        first: the state's first step (its velocities are still unset).
        dt_max … eps: the optimiser's settings, as torch-sim's step takes them.
    """
    n = state.row_vector_cell.shape[0]
    system = state.system_idx

    # F from reference to current row-vector cell, F = (A⁻¹ B)ᵀ as torch-sim's deform_grad.
    deformation = torch.linalg.solve_ex(
        state.reference_row_vector_cell, state.row_vector_cell
    ).result.mT  # (n, 3, 3)
    if first:  # torch-sim's first step: zero velocities, no power check, no mixing
        forces = state.forces
        state.velocities = torch.zeros_like(state.positions)
        state.cell_velocities = torch.zeros_like(state.cell_positions)
    else:
        forces = torch.bmm(state.forces.unsqueeze(1), deformation[system]).squeeze(1)
        power = _per_system_dot(forces, state.velocities, system, n) + (
            state.cell_forces * state.cell_velocities
        ).sum(dim=(1, 2))
        uphill = power <= 0.0
        speed_up = (state.n_pos > n_min) & ~uphill
        state.dt = torch.where(
            speed_up,
            torch.minimum(state.dt * f_inc, dt_max),
            torch.where(uphill, state.dt * f_dec, state.dt),
        )
        state.alpha = torch.where(
            speed_up, state.alpha * f_alpha, torch.where(uphill, alpha_start, state.alpha)
        )
        state.n_pos = torch.where(uphill, torch.zeros_like(state.n_pos), state.n_pos + 1)
        # Velocity mixing before the acceleration (ASE's order).
        v_norm = torch.sqrt(
            _per_system_dot(state.velocities, state.velocities, system, n)
            + state.cell_velocities.pow(2).sum(dim=(1, 2))
        )
        f_norm = torch.sqrt(
            _per_system_dot(forces, forces, system, n) + state.cell_forces.pow(2).sum(dim=(1, 2))
        )
        alpha = state.alpha.view(n, 1, 1)
        state.cell_velocities = torch.where(
            uphill.view(n, 1, 1),
            torch.zeros_like(state.cell_velocities),
            (1.0 - alpha) * state.cell_velocities
            + alpha * state.cell_forces / (f_norm.view(n, 1, 1) + eps) * v_norm.view(n, 1, 1),
        )
        alpha_atom = state.alpha[system].unsqueeze(-1)
        state.velocities = torch.where(
            uphill[system].unsqueeze(-1),
            torch.zeros_like(state.velocities),
            (1.0 - alpha_atom) * state.velocities
            + alpha_atom * forces * (v_norm[system] / (f_norm[system] + eps)).unsqueeze(-1),
        )

    # Acceleration (forward Euler, no masses) and a step capped at max_step per structure.
    dt = state.dt
    state.velocities = state.velocities + forces * dt[system].unsqueeze(-1)
    state.cell_velocities = state.cell_velocities + state.cell_forces * dt.view(n, 1, 1)
    dr_atom = state.velocities * dt[system].unsqueeze(-1)
    dr_cell = state.cell_velocities * dt.view(n, 1, 1)
    dr_norm = torch.sqrt(
        _per_system_dot(dr_atom, dr_atom, system, n) + dr_cell.pow(2).sum(dim=(1, 2))
    )
    scale = torch.where(dr_norm > max_step, max_step / (dr_norm + eps), torch.ones_like(dr_norm))
    dr_atom = dr_atom * scale[system].unsqueeze(-1)
    dr_cell = dr_cell * scale.view(n, 1, 1)

    # Move in the undeformed frame, then apply the new deformation F = expm(log F).
    undeformed = torch.linalg.solve_ex(
        deformation[system], state.positions.unsqueeze(-1)
    ).result.squeeze(-1)
    state.cell_positions = state.cell_positions + dr_cell
    log_deformation = state.cell_positions / (state.cell_factor + eps)
    new_deformation = torch.matrix_exp(log_deformation)
    state.row_vector_cell = torch.bmm(state.reference_row_vector_cell, new_deformation.mT)
    state.positions = torch.bmm(
        (undeformed + dr_atom).unsqueeze(1), new_deformation[system].mT
    ).squeeze(1)

    results = model(state)
    state.forces, state.energy, state.stress = (
        results["forces"],
        results["energy"],
        results["stress"],
    )
    volumes = torch.linalg.det(state.cell).view(n, 1, 1)
    virial = -volumes * (state.stress + state.pressure)
    cell_gradient = torch.bmm(virial, torch.linalg.inv_ex(new_deformation.mT).inverse)
    state.cell_forces = cell_forces_log_space(log_deformation, cell_gradient) / (
        state.cell_factor + eps
    )
    return state
