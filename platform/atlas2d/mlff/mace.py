"""MACE (mace-torch): the model file, and a :class:`ForceField` over it.

The model file is what ``mace_run_train`` saves (``torch.save`` of the whole module).
MACE's stress is already eV/Å³ with ASE's sign: ``compute_forces_virials``
(``mace/modules/utils.py``) returns ``virials = −∂E/∂ε`` and ``stress = −virials /
volume = (1/V) ∂E/∂ε``, so no conversion happens here (the contract test checks it by
finite differences).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from atlas2d.mlff import chatter
from atlas2d.mlff.forcefield import ForceField, Predictions, as_periodic


def load_module(data: bytes, device: str = "cpu") -> Any:
    """The MACE ``torch.nn.Module`` from a model file's bytes (a pickle: verify first).

    Importing mace prints that cuequivariance is missing and makes e3nn warn about
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (mace sets it): both go to the log
    (:mod:`atlas2d.mlff.chatter`)."""
    with chatter.quiet(title="loading a MACE model"):
        import mace  # noqa: F401  (registers the classes the pickle refers to)
        import torch

        return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def model_size(model: Any) -> dict[str, Any]:
    """A MACE model's size: cutoff ``r_max`` (Å), interaction layers and the hidden
    irreps (e.g. ``8x0e``)."""
    return {
        "r_max": float(model.r_max),
        "num_interactions": len(model.interactions),
        "hidden_irreps": str(model.products[0].linear.irreps_out),
    }


class MACEForceField(ForceField):
    """A trained MACE model as a force field, in the model's own dtype."""

    architecture = "mace"

    def __init__(self, model: Any, device: str = "cpu") -> None:
        from ase.data import chemical_symbols

        self.device = device
        self.model = model.to(device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.dtype = next(self.model.parameters()).dtype
        self.cutoff = float(model.r_max)
        self.atomic_numbers = [int(z) for z in model.atomic_numbers]
        self.element_symbols = tuple(chemical_symbols[z] for z in self.atomic_numbers)

    def framework_calculator(self) -> Calculator:
        from mace.calculators import MACECalculator

        dtype = "float64" if str(self.dtype) == "torch.float64" else "float32"
        return MACECalculator(models=self.model, device=self.device, default_dtype=dtype)

    def predict(self, structures: Sequence[Atoms], batch_size: int = 32) -> Predictions:
        import torch
        from mace import data as mace_data
        from mace.tools import AtomicNumberTable, torch_geometric, torch_tools

        self.check_elements(structures)
        z_table = AtomicNumberTable(self.atomic_numbers)
        heads = getattr(self.model, "heads", None) or ["Default"]
        keyspec = mace_data.KeySpecification(info_keys={}, arrays_keys={})
        with torch_tools.default_dtype(self.dtype):
            graphs = [
                mace_data.AtomicData.from_config(
                    mace_data.config_from_atoms(
                        as_periodic(atoms), key_specification=keyspec, head_name=heads[0]
                    ),
                    z_table=z_table,
                    cutoff=self.cutoff,
                    heads=heads,
                )
                for atoms in structures
            ]
        # mace annotates ``dataset`` as a torch Dataset, yet takes any sequence of graphs
        # (its own calculators and tools pass lists).
        loader = torch_geometric.dataloader.DataLoader(
            graphs,  # type: ignore[arg-type]
            batch_size=batch_size,
            shuffle=False,
        )
        energies: list[np.ndarray] = []
        forces: list[np.ndarray] = []
        stresses: list[np.ndarray] = []
        for batch in loader:
            output = self.model(
                batch.to(self.device).to_dict(), compute_stress=True, training=False
            )
            energies.append(output["energy"].detach().cpu().numpy())
            splits = torch.bincount(batch.batch).cumsum(0)[:-1].cpu().numpy()
            forces.extend(np.split(output["forces"].detach().cpu().numpy(), splits))
            stresses.append(output["stress"].detach().cpu().numpy().reshape(-1, 3, 3))
        return Predictions(
            energies=np.concatenate(energies).astype(np.float64),
            forces=[f.astype(np.float64) for f in forces],
            stresses=np.concatenate(stresses).astype(np.float64),
        )
