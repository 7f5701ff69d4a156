"""M3GNet (matgl 4.x, PyG backend): the model file, and a :class:`ForceField` over it.

The model file is one uncompressed tar of what ``Potential.save`` writes
(``model.json``, ``model.pt`` with the constructor arguments, ``state.pt`` with the
weights), so one sha256 covers the whole model and ``Potential.load`` reads it back.

matgl's ``Potential`` returns stress in GPa with ASE's sign (see
``atlas2d.io.exporters``); the adapters convert it to eV/Å³ (``PESCalculator`` with
``stress_unit="eV/A3"``, and :data:`~atlas2d.analysis.units.GPA_PER_EV_PER_A3` in
:meth:`M3GNetForceField.predict`).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from atlas2d.analysis.units import GPA_PER_EV_PER_A3
from atlas2d.mlff import chatter
from atlas2d.mlff.forcefield import ForceField, Predictions, as_periodic

MODEL_FILES = ("model.json", "model.pt", "state.pt")


def save_potential(potential: Any, path: Path) -> None:
    """Write a matgl ``Potential`` as one tar file at ``path``."""
    with tempfile.TemporaryDirectory() as tmp:
        potential.save(tmp)
        with tarfile.open(path, "w") as archive:
            for name in MODEL_FILES:
                archive.add(Path(tmp) / name, arcname=name)


def load_potential(data: bytes) -> Any:
    """A matgl ``Potential`` from the bytes of a file written by :func:`save_potential`
    (what matgl and torch print meanwhile goes to the log: :mod:`atlas2d.mlff.chatter`)."""
    with chatter.quiet(title="loading an M3GNet model"):
        from matgl.apps.pes import Potential

        with (
            tempfile.TemporaryDirectory() as tmp,
            tarfile.open(fileobj=io.BytesIO(data)) as archive,
        ):
            members = [archive.getmember(n) for n in MODEL_FILES]
            archive.extractall(tmp, members=members, filter="data")
            return Potential.load(tmp)


def layers(model: Any) -> list[Any]:
    """M3GNet's layers from input to output: embedding, one (three-body, graph) pair
    per block, and the output layer."""
    import torch

    blocks = [
        torch.nn.ModuleList([three_body, graph])
        for three_body, graph in zip(model.three_body_interactions, model.graph_layers, strict=True)
    ]
    # An extensive (potential) M3GNet reads out with its final layer alone; an
    # intensive one has a readout before it.
    output = [m for m in (getattr(model, "readout", None), model.final_layer) if m is not None]
    return [model.embedding, *blocks, torch.nn.ModuleList(output)]


def check_freeze(model: Any, count: int) -> None:
    """Raise ValueError unless freezing the first ``count`` layers of an M3GNet leaves
    one to train."""
    n_layers = len(layers(model))
    if not 0 <= count < n_layers:
        raise ValueError(
            f"--freeze {count}: this M3GNet has {n_layers} layers (embedding, "
            f"{n_layers - 2} blocks, readout); freeze at most {n_layers - 1}."
        )


def freeze_leading_layers(model: Any, count: int) -> None:
    """Keep the first ``count`` layers of an M3GNet fixed (transfer learning).

    Raises:
        ValueError: ``count`` leaves no layer to train.
    """
    check_freeze(model, count)
    for layer in layers(model)[:count]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


def model_size(model: Any) -> dict[str, Any]:
    """An M3GNet's size, as :class:`~atlas2d.mlff.training.M3GNetSize` names it (Å)."""
    return {
        "cutoff": float(model.cutoff),
        "threebody_cutoff": float(model.threebody_cutoff),
        "units": int(model.units),
        "nblocks": int(model.n_blocks),
        "max_n": int(model.max_n),
        "max_l": int(model.max_l),
    }


class M3GNetForceField(ForceField):
    """A trained matgl ``Potential`` (M3GNet) as a force field."""

    architecture = "m3gnet"

    def __init__(self, potential: Any, device: str = "cpu") -> None:
        import matgl

        potential.calc_stresses = True  # trained with stress weight 0 it may be off
        self.device = device
        self.potential = potential.to(device=device, dtype=matgl.float_th).eval()
        self.cutoff = float(potential.model.cutoff)
        self.element_symbols = tuple(potential.model.element_types)

    def check_fine_tuning(self, elements: Sequence[str], freeze: int) -> None:
        super().check_fine_tuning(elements, freeze)
        check_freeze(self.potential.model, freeze)

    def framework_calculator(self) -> Calculator:
        from matgl.ext.ase import PESCalculator

        return PESCalculator(self.potential, stress_unit="eV/A3")

    def predict(self, structures: Sequence[Atoms], batch_size: int = 32) -> Predictions:
        import torch
        from matgl.ext.ase import Atoms2Graph
        from torch_geometric.data import Batch

        self.check_elements(structures)
        converter = Atoms2Graph(self.element_symbols, self.cutoff)
        energies: list[np.ndarray] = []
        forces: list[np.ndarray] = []
        stresses: list[np.ndarray] = []
        for start in range(0, len(structures), batch_size):
            chunk = structures[start : start + batch_size]
            graphs, lattices, states = zip(
                *(converter.get_graph(as_periodic(atoms)) for atoms in chunk), strict=True
            )
            batch = Batch.from_data_list(list(graphs)).to(self.device)
            lattice = torch.cat(lattices).to(self.device)  # (B, 3, 3)
            state = torch.stack([torch.as_tensor(s) for s in states]).to(self.device)
            energy, force, stress = self.potential(batch, lattice, state)[:3]
            energies.append(energy.detach().cpu().numpy().reshape(-1))
            splits = np.cumsum([len(atoms) for atoms in chunk])[:-1]
            forces.extend(np.split(force.detach().cpu().numpy(), splits))
            stresses.append(stress.detach().cpu().numpy().reshape(-1, 3, 3) / GPA_PER_EV_PER_A3)
        return Predictions(
            energies=np.concatenate(energies).astype(np.float64),
            forces=[f.astype(np.float64) for f in forces],
            stresses=np.concatenate(stresses).astype(np.float64),
        )
