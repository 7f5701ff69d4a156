"""The reference labeller: CHGNet's pretrained universal potential standing in for DFT.

The demo, the tests and the benchmarks need DFT-like geometry optimisations (energy,
forces and stress at every step) without VASP. The labeller relaxes a structure with
CHGNet (``chgnet``, the ``demo`` extra; its pretrained weights ship in the wheel, so it
works offline) and records every FIRE step as an :class:`~atlas2d.io.records.Trajectory`
with ``method = "dft"`` and parameters that say it is the labeller
(``{"reference": "labeller", "labeller": "CHGNet", ...}``): it is never real DFT.

The relaxation is the platform's own engine (:func:`atlas2d.mlff.relax.relax_ase`: FIRE
on ASE's ``FrechetCellFilter``): a 2D layer (vacuum along c) relaxes its cell in-plane
only (the z-index stress components the optimiser sees are zero; c and the vacuum do
not change), bulk relaxes the full cell. Structures are evaluated 3D periodic, like the
VASP runs the labeller stands in for.

Units: energies eV (total), forces eV/Å, stress eV/Å³ with ASE's sign (σ = (1/V) ∂E/∂ε,
positive = tensile), full 3×3. CHGNet computes ``(1/V) ∂E/∂ε`` by autograd with respect
to a strain applied as ``cell @ (1 + ε)`` and reports it in GPa
(``chgnet/model/model.py``: ``scale = 1 / volume * 160.21766208``);
``CHGNetCalculator`` multiplies by ``stress_weight = ase.units.GPa`` (1/160.21766208),
giving eV/Å³ with ASE's sign: no conversion happens here (a finite-difference test
checks it). CHGNet evaluates in float32: energies carry about 7 significant digits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from atlas2d.errors import InvalidInput, MissingExtra
from atlas2d.io.records import Trajectory
from atlas2d.mlff import chatter
from atlas2d.mlff.forcefield import ForceField, Predictions, as_periodic
from atlas2d.mlff.relax import RelaxSettings, relax_ase
from atlas2d.vocabulary import LABEL_FMAX_EV_PER_A, LABEL_MAX_STEPS

LABELLER = "CHGNet"
DEFAULT_MODEL = "0.3.0"
"""CHGNet's pretrained MPtrj (PBE/PBE+U) model shipped with chgnet 0.4."""
DEMO_EXTRA = 'pip install -e ".[demo]"'
MAX_ATOMIC_NUMBER = 94
"""CHGNet's pretrained models know H to Pu."""
IN_PLANE, FULL = "in-plane", "full"


def _chgnet() -> Any:
    """The ``chgnet`` package, or ``MissingExtra`` naming the extra to install."""
    try:
        import chgnet.model  # the package and its model module (torch, pymatgen)
    except ImportError as err:
        raise MissingExtra(
            "The reference labeller needs CHGNet, which is not installed: "
            f"{DEMO_EXTRA} (or pip install 'atlas2d[demo]')."
        ) from err
    return chgnet


def labeller_version() -> str:
    """The installed chgnet version (raises ``MissingExtra`` when it is missing)."""
    return str(_chgnet().__version__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence what CHGNet prints for every structure ("CHGNet will run on cpu") and a
    torch warning it triggers on every call (building a volume tensor from tensors that
    require grad: harmless, the stress is the strain derivative divided by the volume).
    Noise repeated per structure, dropped rather than logged; what CHGNet prints once,
    when its model loads, goes to the log (:func:`chatter.quiet`)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        yield


@lru_cache(maxsize=4)
def load_model(model: str = DEFAULT_MODEL, device: str = "cpu") -> Any:
    """CHGNet's pretrained model (cached per process).

    Raises:
        MissingExtra: chgnet is not installed. InvalidInput: unknown model name.
    """
    _chgnet()
    from chgnet.model import CHGNet

    try:
        with chatter.quiet(title=f"loading CHGNet {model}"):
            return CHGNet.load(model_name=model, use_device=device, verbose=False)
    except ValueError as err:
        raise InvalidInput(
            f"CHGNet has no pretrained model {model!r}; use 0.3.0 (default), 0.2.0 or r2scan."
        ) from err


class LabellerCalculator(Calculator):
    """ASE calculator over CHGNet: energy eV, forces eV/Å, stress eV/Å³ (ASE sign).

    Structures are evaluated as given (flag them periodic; :class:`LabellerForceField`
    does it for you).
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Per instance: ASE declares it an instance attribute (a list), not a class constant.
        self.implemented_properties = ["energy", "free_energy", "forces", "stress"]
        from ase import units
        from chgnet.model.dynamics import CHGNetCalculator

        with _quiet():
            self.inner = CHGNetCalculator(
                model=load_model(model, device), use_device=device, stress_weight=units.GPa
            )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        with _quiet():
            self.inner.calculate(self.atoms, task="efs")
        results = self.inner.results
        stress = np.asarray(results["stress"], dtype=np.float64).reshape(3, 3)
        energy = float(results["energy"])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(results["forces"], dtype=np.float64),
            "stress": full_3x3_to_voigt_6_stress((stress + stress.T) / 2),
        }


def labeller_calculator(model: str = DEFAULT_MODEL, device: str = "cpu") -> Calculator:
    """An ASE calculator of the reference labeller (CHGNet; units above).

    Raises:
        MissingExtra: chgnet is not installed (``pip install -e ".[demo]"``).
    """
    _chgnet()
    return LabellerCalculator(model, device)


class LabellerForceField(ForceField):
    """The labeller behind the platform's force-field interface, so that the relaxation
    engines of :mod:`atlas2d.mlff.relax` drive it like any trained model."""

    architecture = "chgnet"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu") -> None:
        self.model_name = model
        self.device = device
        self.model = load_model(model, device)
        self.cutoff = float(self.model.graph_converter.atom_graph_cutoff)
        self.element_symbols = tuple(chemical_symbols[1 : MAX_ATOMIC_NUMBER + 1])

    def framework_calculator(self) -> Calculator:
        return LabellerCalculator(self.model_name, self.device)

    def predict(self, structures: Sequence[Atoms], batch_size: int = 32) -> Predictions:
        from ase import units
        from pymatgen.io.ase import AseAtomsAdaptor

        self.check_elements(structures)
        pymatgen_structures = [
            AseAtomsAdaptor.get_structure(as_periodic(atoms)) for atoms in structures
        ]
        with _quiet():
            outputs = self.model.predict_structure(
                pymatgen_structures, task="efs", batch_size=batch_size
            )
        if isinstance(outputs, dict):
            outputs = [outputs]
        stresses = np.array([np.asarray(o["s"], dtype=np.float64) for o in outputs]) * units.GPa
        return Predictions(
            energies=np.array(
                [float(o["e"]) * len(atoms) for o, atoms in zip(outputs, structures, strict=True)]
            ),
            forces=[np.asarray(o["f"], dtype=np.float64) for o in outputs],
            stresses=(stresses + stresses.transpose(0, 2, 1)) / 2,
        )


@lru_cache(maxsize=4)
def labeller_force_field(model: str = DEFAULT_MODEL, device: str = "cpu") -> LabellerForceField:
    """The labeller as a :class:`ForceField` (cached per process).

    Raises:
        MissingExtra: chgnet is not installed (``pip install -e ".[demo]"``).
    """
    _chgnet()
    return LabellerForceField(model, device)


@dataclass(frozen=True)
class LabelSettings:
    """How the labeller relaxes.

    Attributes:
        fmax: force criterion, eV/Å (atoms and the cell filter's scaled virial).
        max_steps: FIRE steps at most. model: CHGNet pretrained model name.
        device: ``cpu`` or ``cuda``.
    """

    fmax: float = LABEL_FMAX_EV_PER_A
    max_steps: int = LABEL_MAX_STEPS
    model: str = DEFAULT_MODEL
    device: str = "cpu"


def cell_relaxation(atoms: Atoms) -> str:
    """``in-plane`` for a layer with its vacuum along c, ``full`` for bulk.

    Raises:
        InvalidInput: vacuum along a or b (orient the layer first: c must be the
            out-of-plane axis), or along several axes (a wire or a molecule).
    """
    from atlas2d.analysis.structure import vacuum_axes

    axes = vacuum_axes(atoms.cell.array, atoms.positions)
    if not axes:
        return FULL
    if axes == [2]:
        return IN_PLANE
    names = ", ".join("abc"[k] for k in axes)
    raise InvalidInput(
        f"The structure {atoms.get_chemical_formula()} has vacuum along {names}: the labeller "
        "relaxes bulk (no vacuum) and layers with their vacuum along c; reorient the layer "
        "(ingest does) or label bulk and layers only."
    )


def labeller_parameters(settings: LabelSettings, cell_relax: str) -> dict[str, Any]:
    """The parameters recorded with a labelled relaxation (its ``relaxations.parameters``)."""
    return {
        "reference": "labeller",
        "labeller": LABELLER,
        "labeller_version": labeller_version(),
        "model": f"CHGNet {settings.model} (pretrained, MPtrj)",
        "optimizer": "FIRE",
        "cell_filter": "FrechetCellFilter",
        "fmax": settings.fmax,
        "max_steps": settings.max_steps,
        "cell_relax": cell_relax,
    }


def label_key(material_key: str, atoms: Atoms, parameters: dict[str, Any]) -> str:
    """sha256 identifying one labelling request: material, parameters and the exact
    starting structure (species, cell, positions), so a rerun can skip it unlabelled."""
    digest = hashlib.sha256()
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
    digest.update(f"label\0{material_key}\0{canonical}\0".encode())
    digest.update(np.asarray(atoms.numbers, dtype="<i2").tobytes())
    digest.update(np.ascontiguousarray(atoms.cell.array, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(atoms.positions, dtype="<f8").tobytes())
    return digest.hexdigest()


def label_relaxation(
    atoms: Atoms,
    material_key: str,
    settings: LabelSettings = LabelSettings(),
    record: str = "",
) -> Trajectory:
    """Relax one structure with the labeller and record every step.

    Args:
        atoms: the starting structure (not modified); a layer must have its vacuum
            along c.
        material_key: the key the trajectory is stored under.
        record: how error messages name the structure (default: the material key).

    Returns:
        A trajectory with F = optimizer steps + 1 frames (step 0 is the start):
        cells (F, 3, 3) Å, positions (F, N, 3) Å, energies (F,) eV, forces (F, N, 3)
        eV/Å, stresses (F, 3, 3) eV/Å³ (ASE sign, full, unmasked), ``method = "dft"``,
        labeller parameters, ``converged`` (fmax reached within max_steps), pbc all True,
        wall time, and ``info.optimizer_steps``.

    Raises:
        MissingExtra: chgnet is not installed. InvalidInput: vacuum not along c only,
            or an element CHGNet does not know.
    """
    cell_relax = cell_relaxation(atoms)
    force_field = labeller_force_field(settings.model, settings.device)
    unknown = sorted({s for s in atoms.get_chemical_symbols()} - set(force_field.element_symbols))
    if unknown:
        raise InvalidInput(
            f"{record or material_key}: CHGNet knows elements H to Pu, not {', '.join(unknown)}."
        )
    relax_settings = RelaxSettings(
        fmax=settings.fmax, max_steps=settings.max_steps, save_trajectory=True
    )
    began = time.perf_counter()
    (result,) = relax_ase(
        force_field, [as_periodic(atoms)], [cell_relax == IN_PLANE], relax_settings
    )
    return Trajectory(
        material_key=material_key,
        species=atoms.get_atomic_numbers().copy(),
        cells=result.cells,
        positions=result.positions,
        energies=result.energies,
        forces=result.forces,
        stresses=result.stresses,
        parameters=labeller_parameters(settings, cell_relax),
        record=record or f"material {material_key}",
        converged=result.converged,
        method="dft",
        pbc=(True, True, True),
        wall_time_s=time.perf_counter() - began,
        info={"optimizer_steps": result.n_steps},
    )
