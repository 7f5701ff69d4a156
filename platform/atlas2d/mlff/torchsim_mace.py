"""MACE as a torch-sim model for the batched engine, with one host round trip per call.

torch-sim 0.3.0's ``MaceModel`` builds the neighbour list one structure at a time
(``torch_sim/models/mace.py``, the loop over ``range(self.n_systems)``): for every
structure it masks the positions, copies them and the cell to the host, reads the cutoff
with ``.item()`` and copies the pairs back, about five device-to-host waits per structure
per step. It also compares the atomic numbers with the previous call's (one more wait)
and, whenever they differ, rebuilds its per-structure pointers with one ``.item()`` per
structure. On a GPU, where a model call on a few thousand atoms takes milliseconds,
those waits grow with the batch and dominate the step.

:class:`MACEBatchModel` gives the model the same inputs for periodic structures (the
batched engine makes every structure 3D periodic): the same vesin neighbour list,
one-hot elements, pointers and shifts (equal outputs, tested). It builds them from one
copy of all positions and cells to the host, one vesin call per structure on host
arrays, and one copy of the pairs back. Everything else stays on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def mace_batch_model(model: Any, device: str) -> Any:
    """A :class:`MACEBatchModel` over a MACE module, in float64 on ``device``."""
    import torch
    from torch_sim.models.interface import ModelInterface

    class MACEBatchModel(ModelInterface):  # type: ignore[misc]
        """torch-sim model over a MACE module: energy (B,) eV, forces (N, 3) eV/Å,
        stress (B, 3, 3) eV/Å³ with ASE's sign, as torch-sim's ``MaceModel`` returns."""

        def __init__(self) -> None:
            from vesin import NeighborList

            super().__init__()
            self._device = torch.device(device)
            self._dtype = torch.float64
            self._compute_forces = self._compute_stress = True
            self._memory_scales_with = "n_atoms_x_density"
            self.model = model.to(device=self._device, dtype=self._dtype).eval()
            self.cutoff = float(self.model.r_max)
            numbers = [int(z) for z in self.model.atomic_numbers]
            lookup = torch.full((119,), -1, dtype=torch.long)
            lookup[numbers] = torch.arange(len(numbers))
            self.element_index = lookup.to(self._device)  # atomic number -> one-hot column
            self.n_elements = len(numbers)
            self.neighbours = NeighborList(cutoff=self.cutoff, full_list=True)

        def forward(self, state: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            cells = state.row_vector_cell  # (B, 3, 3), rows are the lattice vectors
            system = state.system_idx
            n_systems = cells.shape[0]
            edge_index, unit_shifts = self.neighbour_list(state.positions, cells, system)
            # bincount reads its maximum back to the host (one_hot its minimum, on the CPU).
            counts = system.new_zeros(n_systems).index_add_(0, system, torch.ones_like(system))
            ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            columns = self.element_index[state.atomic_numbers].unsqueeze(1)
            node_attrs = state.positions.new_zeros((len(system), self.n_elements)).scatter_(
                1, columns, 1.0
            )
            shifts = torch.einsum("ei,eij->ej", unit_shifts, cells[system[edge_index[0]]])
            output = self.model(
                {
                    "ptr": ptr,
                    "node_attrs": node_attrs,
                    "batch": system,
                    "pbc": state.pbc,
                    "cell": cells,
                    # MACE sets requires_grad on what it is given: not on the state's own.
                    "positions": state.positions.detach(),
                    "edge_index": edge_index,
                    "unit_shifts": unit_shifts,
                    "shifts": shifts,
                },
                compute_force=True,
                compute_stress=True,
                training=False,
            )
            return {
                "energy": output["energy"].detach(),
                "forces": output["forces"].detach(),
                "stress": output["stress"].detach(),
            }

        def neighbour_list(
            self, positions: torch.Tensor, cells: torch.Tensor, system: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """All pairs within the cutoff, every structure 3D periodic. A structure's
            atoms are contiguous and in system order, as torch-sim's states keep them.

            Returns:
                edge_index (2, E) long: sender and receiver atoms, indexed in the batch;
                unit_shifts (E, 3) float: the receiver's image, in lattice vectors.
            """
            # The model's one round trip: positions, cells and membership to the host
            # (the first copy waits for the queue; the others find it empty), pairs back.
            host_positions = positions.detach().to("cpu", torch.float64).numpy()
            host_cells = cells.detach().to("cpu", torch.float64).numpy()
            sizes = np.bincount(system.to("cpu").numpy(), minlength=len(host_cells))
            starts = np.concatenate([[0], np.cumsum(sizes)])
            senders, receivers, images = [], [], []
            for k, cell in enumerate(host_cells):
                first, last = starts[k], starts[k + 1]
                i, j, shift = self.neighbours.compute(
                    points=host_positions[first:last], box=cell, periodic=True, quantities="ijS"
                )
                senders.append(i.astype(np.int64) + first)
                receivers.append(j.astype(np.int64) + first)
                images.append(shift)
            edge_index = torch.from_numpy(
                np.stack([np.concatenate(senders), np.concatenate(receivers)])
            )
            unit_shifts = torch.from_numpy(np.concatenate(images).astype(np.float64))
            return (
                edge_index.to(self._device),
                unit_shifts.to(self._device, self._dtype),
            )

    return MACEBatchModel()
