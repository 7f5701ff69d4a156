"""Make the bundled demo dataset: 2D layers and bulk references labelled by the
reference labeller (CHGNet 0.3.0 standing in for DFT; never real DFT).

```bash
OMP_NUM_THREADS=1 python -m atlas2d.demo.make_dataset --out platform/atlas2d/demo/data
```

Contents (``manifest.json`` has the exact counts, step statistics, versions and timing):

* 2D monolayers (3–12 atoms, 15–20 Å of vacuum along c), each a FIRE geometry
  optimisation with every step recorded (energy, forces, full stress, cell, positions):
  - ``MX2-2H`` and ``MX2-1T`` transition-metal dichalcogenides, M = Mo, W, Nb, Ta, V,
    Ti, Zr, Hf, Pt, Pd, Cr and X = S, Se, Te, in 1×1 and 2×1 cells (the 2×1 cell admits
    distortions such as 1T');
  - ``MX2-1T-CdI2`` halides, M = Mg, Ca, Sr, Zn, Cd, Mn, Fe, Co, Ni, Pb and X = Cl, Br,
    I, in 1×1 and √3×√3 cells;
  - ``AB-hBN`` planar honeycomb binaries (BN, AlN, GaN, InN, BeO, MgO, ZnO, CdO, SiC,
    GeC, BP, BAs) in 2×1 and √3×√3 cells;
  - ``MXY-2H-Janus`` (M = Mo, W) and ``MXY-1T-Janus`` (M = Ti, Zr, Hf, Pt) layers with
    XY = SSe, STe, SeTe, in 1×1 and 2×1 cells;
  - ``alloy`` Mo/W and Nb/Mo disulfides (2H) and Ti/Ta disulfides (1T and 2H) in 2×1,
    3×1, √3×√3 and 2×2 cells (x = 1/4 … 3/4), Vegard lattice constant.

  Every layer starts from its pristine structure pre-relaxed by the labeller (not
  recorded), strained in-plane by ±2–5 % (plus up to ±2 % shear) and rattled (σ
  0.03–0.08 Å); FIRE to fmax 0.01 eV/Å (≤ 500 steps) then takes realistic numbers of
  steps.
* Bulk references of every element that occurs (bcc/fcc/hcp for metals; diamond,
  graphite, A7, A8, molecular-dimer and simple-cubic crystals for the others), relaxed
  with the full cell from their ideal structures, so a convex hull has every terminal.
  Only their final structures are kept.

Files, in the Alexandria formats ``atlas2d ingest`` reads:

* ``demo_2d_relaxations.json.xz``: ``{mat_id: [trajectory]}``, ``mat_id`` like
  ``demo-2d-0001``; each trajectory's keys other than ``steps`` (the labeller marking:
  ``reference: labeller``, ``labeller: CHGNet``, versions, optimiser, fmax, max_steps,
  ``cell_relax``) become the relaxation's parameters; ``steps`` hold pymatgen structure
  dicts, total energy (eV), forces (eV/Å) and stress in kBar with VASP's sign, as
  Alexandria's files do. Values are rounded (positions 1e-8 Å, energies and forces 1e-6,
  stress 1e-4 kBar).
* ``demo_convex_hull.json.xz``: ``{"entries": [ComputedStructureEntry dicts]}`` of the
  final structures of the layers and of the bulk references (``demo-bulk-Mo-bcc``):
  uncorrected energy, correction 0.0, ``data`` with ``mat_id``, ``dimensionality`` (2
  or 3: what ingest stores), ``prototype_id``, ``spg``, ``converged`` and
  ``optimizer_steps``.
* ``manifest.json``, next to the output directory (``--manifest``; so that ``atlas2d
  ingest DIR`` reads only the dataset): counts per family, trajectory lengths, versions,
  the command and the wall time.

Reproducible: structures come from a seeded generator (``--seed``; one
``numpy.random.default_rng((seed, index))`` per structure) and CHGNet runs with one
thread; reruns with the same software give the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import lzma
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SEED = 2026
FMAX_EV_PER_A = 0.01
"""Tighter than ``atlas2d label``'s default (0.05): converged like a careful DFT run, and
FIRE takes 20–150 steps from the perturbed starts (at 0.05 most layers took 15–40)."""
GAP_A = (15.0, 20.0)
"""Vacuum between periodic images of a layer, Å."""
STRAIN = (0.02, 0.05)
"""|in-plane normal strain| of a start, drawn per axis with a random sign."""
SHEAR = 0.02
RATTLE_A = (0.03, 0.08)
"""σ of the Gaussian displacement of every atom of a start, Å."""

TMD_METALS = ("Mo", "W", "Nb", "Ta", "V", "Ti", "Zr", "Hf", "Pt", "Pd", "Cr")
CHALCOGENS = ("S", "Se", "Te")
HALIDE_METALS = ("Mg", "Ca", "Sr", "Zn", "Cd", "Mn", "Fe", "Co", "Ni", "Pb")
HALOGENS = ("Cl", "Br", "I")
PLANAR = (
    ("B", "N"),
    ("Al", "N"),
    ("Ga", "N"),
    ("In", "N"),
    ("Be", "O"),
    ("Mg", "O"),
    ("Zn", "O"),
    ("Cd", "O"),
    ("Si", "C"),
    ("Ge", "C"),
    ("B", "P"),
    ("B", "As"),
)
JANUS = {"2H": ("Mo", "W"), "1T": ("Ti", "Zr", "Hf", "Pt")}
JANUS_PAIRS = (("S", "Se"), ("S", "Te"), ("Se", "Te"))
ALLOYS = (("Mo", "W", "2H"), ("Nb", "Mo", "2H"), ("Ti", "Ta", "1T"), ("Ti", "Ta", "2H"))

SUPERCELLS = {
    "1x1": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "2x1": ((2, 0, 0), (0, 1, 0), (0, 0, 1)),
    "3x1": ((3, 0, 0), (0, 1, 0), (0, 0, 1)),
    "r3xr3": ((2, 1, 0), (-1, 1, 0), (0, 0, 1)),
    "2x2": ((2, 0, 0), (0, 2, 0), (0, 0, 1)),
}
ALLOY_CELLS = (
    ("2x1", 1),
    ("3x1", 1),
    ("3x1", 2),
    ("r3xr3", 1),
    ("r3xr3", 2),
    ("2x2", 1),
    ("2x2", 2),
    ("2x2", 3),
)
"""(supercell, metal sites given to the second metal)."""

METAL_STRUCTURES = ("bcc", "fcc", "hcp")
SPECIAL_STRUCTURES = {
    "C": ("diamond", "graphite"),
    "Si": ("diamond", "fcc", "sc"),
    "Ge": ("diamond", "fcc", "sc"),
    "B": ("fcc", "diamond", "sc"),
    "S": ("A8", "sc"),
    "Se": ("A8", "sc"),
    "Te": ("A8", "sc"),
    "P": ("A7", "sc"),
    "As": ("A7", "sc"),
    "N": ("dimer", "sc"),
    "O": ("dimer", "sc"),
    "Cl": ("dimer", "sc"),
    "Br": ("dimer", "sc"),
    "I": ("dimer", "sc"),
}
DIMER_BOND_A = {"N": 1.10, "O": 1.21, "Cl": 1.99, "Br": 2.28, "I": 2.67}
# Trigonal selenium/tellurium (A8): a, c (Å), x; sulfur in the same (hypothetical) form.
A8 = {"S": (3.95, 4.50, 0.22), "Se": (4.37, 4.95, 0.217), "Te": (4.45, 5.93, 0.264)}
# Arsenic (A7) in its hexagonal setting: a, c (Å), u; phosphorus's A7 high-pressure form.
A7 = {"P": (3.38, 8.81, 0.22), "As": (3.76, 10.55, 0.227)}


@dataclass(frozen=True)
class LayerSpec:
    """One 2D layer to label: its pristine 1×1 parent, supercell and substitutions."""

    family: str
    kind: str
    """``2H``, ``1T`` (three-atom MX2 layers) or ``planar`` (two-atom honeycomb)."""
    species: tuple[str, ...]
    """The 1×1 parent: (M, X_top, X_bottom) or (A, B)."""
    cell: str = "1x1"
    substitute: tuple[str, int] | None = None
    """(second metal, number of metal sites it takes), for alloys."""


@dataclass
class Labelled:
    """A labelled structure on its way into the files."""

    mat_id: str
    family: str
    trajectory: Any
    data: dict[str, Any] = field(default_factory=dict)


def layer_specs() -> list[LayerSpec]:
    """Every 2D layer of the dataset, in a fixed order (mat_ids follow it)."""
    specs: list[LayerSpec] = []
    for cell in ("1x1", "2x1"):
        for kind in ("2H", "1T"):
            for metal in TMD_METALS:
                for x in CHALCOGENS:
                    specs.append(LayerSpec(f"MX2-{kind}", kind, (metal, x, x), cell))
    for cell in ("1x1", "r3xr3"):
        for metal in HALIDE_METALS:
            for x in HALOGENS:
                specs.append(LayerSpec("MX2-1T-CdI2", "1T", (metal, x, x), cell))
    for cell in ("2x1", "r3xr3"):
        for a, b in PLANAR:
            specs.append(LayerSpec("AB-hBN", "planar", (a, b), cell))
    for cell in ("1x1", "2x1"):
        for kind, metals in JANUS.items():
            for metal in metals:
                for top, bottom in JANUS_PAIRS:
                    specs.append(LayerSpec(f"MXY-{kind}-Janus", kind, (metal, top, bottom), cell))
    for first, second, kind in ALLOYS:
        for cell, count in ALLOY_CELLS:
            specs.append(LayerSpec(f"alloy-{kind}", kind, (first, "S", "S"), cell, (second, count)))
    return specs


def _radius(symbol: str) -> float:
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[symbol]])


def pristine_layer(kind: str, species: Sequence[str], gap: float = 16.0) -> Any:
    """An ideal 1×1 layer with a lattice constant guessed from covalent radii (Å)."""
    from ase import Atoms

    bond = _radius(species[0]) + _radius(species[1])
    if kind == "planar":
        a, fractions, heights = np.sqrt(3) * bond, [(0, 0), (2 / 3, 1 / 3)], [0.0, 0.0]
    else:
        # Ideal trigonal prism (2H) or octahedron (1T) around the metal.
        a, half = (1.32 * bond, 0.65 * bond) if kind == "2H" else (1.41 * bond, 0.58 * bond)
        second = (2 / 3, 1 / 3) if kind == "2H" else (1 / 3, 2 / 3)
        fractions, heights = [(0, 0), (2 / 3, 1 / 3), second], [0.0, half, -half]
    thickness = max(heights) - min(heights)
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, thickness + gap]])
    middle = cell[2, 2] / 2
    positions = [
        [*(np.array(f) @ cell[:2, :2]), middle + z] for f, z in zip(fractions, heights, strict=True)
    ]
    return Atoms(symbols=list(species), positions=positions, cell=cell, pbc=True)


def _with_gap(atoms: Any, gap: float) -> Any:
    """A copy whose c is the layer's thickness plus ``gap`` Å, the layer centred in it."""
    layer = atoms.copy()
    z = layer.positions[:, 2].copy()
    cell = layer.cell.array.copy()
    cell[2] = [0.0, 0.0, float(z.max() - z.min()) + gap]
    layer.set_cell(cell, scale_atoms=False)
    layer.positions[:, 2] += cell[2, 2] / 2 - (z.max() + z.min()) / 2
    return layer


def prerelax(atoms: Any, in_plane: bool) -> Any:
    """The labeller's minimum near ``atoms`` (fmax 0.005 eV/Å; not recorded)."""
    from atlas2d.mlff.labeller import labeller_force_field
    from atlas2d.mlff.relax import RelaxSettings, relax_ase

    (result,) = relax_ase(
        labeller_force_field(), [atoms], [in_plane], RelaxSettings(fmax=0.005, max_steps=600)
    )
    relaxed = atoms.copy()
    relaxed.set_cell(result.cells[-1], scale_atoms=False)
    relaxed.positions = result.positions[-1]
    return relaxed


def _supercell(atoms: Any, name: str) -> Any:
    from ase.build import make_supercell

    return make_supercell(atoms, np.array(SUPERCELLS[name]), order="atom-major")


def _perturbed(atoms: Any, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """A strained, rattled copy with a fresh vacuum gap, and what was done to it."""
    strain = np.eye(3)
    normal = rng.uniform(*STRAIN, size=2) * rng.choice([-1.0, 1.0], size=2)
    shear = rng.uniform(-SHEAR, SHEAR)
    strain[0, 0] += normal[0]
    strain[1, 1] += normal[1]
    strain[0, 1] = strain[1, 0] = shear / 2
    start = _with_gap(atoms, rng.uniform(*GAP_A))
    start.set_cell(start.cell.array @ strain, scale_atoms=True)
    sigma = rng.uniform(*RATTLE_A)
    start.positions += rng.normal(0.0, sigma, start.positions.shape)
    return start, {
        "strain_xx": round(float(normal[0]), 4),
        "strain_yy": round(float(normal[1]), 4),
        "shear_xy": round(float(shear), 4),
        "rattle_sigma_a": round(float(sigma), 4),
    }


def _alloy(spec: LayerSpec, host: Any, other: Any) -> Any:
    """The host's supercell with ``spec.substitute`` metal sites swapped, its in-plane
    lattice scaled to Vegard's law between the two pre-relaxed parents."""
    assert spec.substitute is not None
    second, count = spec.substitute
    alloy = _supercell(host, spec.cell)
    symbols = alloy.get_chemical_symbols()
    metal_sites = [i for i, s in enumerate(symbols) if s == spec.species[0]]
    for site in metal_sites[:count]:
        symbols[site] = second
    alloy.set_chemical_symbols(symbols)
    x = count / len(metal_sites)
    a_host, a_other = host.cell.lengths()[0], other.cell.lengths()[0]
    scale = np.diag([((1 - x) * a_host + x * a_other) / a_host] * 2 + [1.0])
    alloy.set_cell(alloy.cell.array @ scale, scale_atoms=True)
    return alloy


def build_layers(
    specs: Sequence[LayerSpec], seed: int
) -> tuple[list[tuple[LayerSpec, Any, dict[str, Any]]], int]:
    """Starting structures of the layers, and how many pristine parents were pre-relaxed:
    each parent is pre-relaxed once, then cut into its supercell (and substituted for
    alloys), strained, rattled and given a vacuum gap."""
    parents: dict[tuple[str, tuple[str, ...]], Any] = {}

    def parent(kind: str, species: tuple[str, ...]) -> Any:
        if (kind, species) not in parents:
            parents[(kind, species)] = prerelax(pristine_layer(kind, species), in_plane=True)
        return parents[(kind, species)]

    starts = []
    for index, spec in enumerate(specs):
        rng = np.random.default_rng((seed, index))
        host = parent(spec.kind, spec.species)
        if spec.substitute is None:
            base = _supercell(host, spec.cell)
        else:
            other = parent(spec.kind, (spec.substitute[0], *spec.species[1:]))
            base = _alloy(spec, host, other)
        start, perturbation = _perturbed(base, rng)
        starts.append((spec, start, perturbation | {"supercell": spec.cell}))
    return starts, len(parents)


def _volume_per_atom(symbol: str) -> float:
    """Å³ per atom of the element's reference state (ASE's table), else of close-packed
    spheres of its covalent radius."""
    from ase.data import atomic_numbers, reference_states

    state: dict[str, Any] = reference_states[atomic_numbers[symbol]] or {}
    a: Any = state.get("a")  # present in every state the branches below use
    symmetry = state.get("symmetry")
    if symmetry == "fcc":
        return a**3 / 4
    if symmetry == "bcc":
        return a**3 / 2
    if symmetry == "diamond":
        return a**3 / 8
    if symmetry == "hcp" and state.get("basis") is None:
        return np.sqrt(3) / 4 * a**3 * state["c/a"]
    if symmetry == "bct":
        return a**3 * state["c/a"] / 2
    return (2 * np.sqrt(2) * _radius(symbol)) ** 3 / 4


def bulk_reference(symbol: str, structure: str) -> Any:
    """An ideal bulk crystal of one element (lattice constants from its atomic volume or
    from the literature for the molecular and chain structures)."""
    from ase import Atoms
    from ase.build import bulk

    volume = _volume_per_atom(symbol)
    if structure == "fcc":
        return bulk(symbol, "fcc", a=(4 * volume) ** (1 / 3))
    if structure == "bcc":
        return bulk(symbol, "bcc", a=(2 * volume) ** (1 / 3))
    if structure == "hcp":
        a = (4 * volume / (np.sqrt(3) * 1.633)) ** (1 / 3)
        return bulk(symbol, "hcp", a=a, c=1.633 * a)
    if structure == "sc":
        return bulk(symbol, "sc", a=2 * _radius(symbol))
    if structure == "diamond":
        return bulk(symbol, "diamond", a=8 * _radius(symbol) / np.sqrt(3))
    hexagonal = np.array([[1.0, 0, 0], [-0.5, np.sqrt(3) / 2, 0], [0, 0, 1.0]])
    if structure == "graphite":  # AB stacking
        a, c = 2.46, 6.70
        cell = hexagonal * [a, a, c]
        fractions = [(0, 0, 1 / 4), (0, 0, 3 / 4), (1 / 3, 2 / 3, 1 / 4), (2 / 3, 1 / 3, 3 / 4)]
        return Atoms(symbol * 4, scaled_positions=fractions, cell=cell, pbc=True)
    if structure == "A8":  # helical chains along c
        a, c, x = A8[symbol]
        fractions = [(x, 0, 1 / 3), (0, x, 2 / 3), (-x, -x, 0)]
        return Atoms(symbol * 3, scaled_positions=fractions, cell=hexagonal * [a, a, c], pbc=True)
    if structure == "A7":  # puckered layers, rhombohedral centring in the hexagonal cell
        a, c, u = A7[symbol]
        centring = [(0, 0, 0), (2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)]
        fractions = [(t[0], t[1], (t[2] + s * u) % 1) for t in centring for s in (1, -1)]
        return Atoms(symbol * 6, scaled_positions=fractions, cell=hexagonal * [a, a, c], pbc=True)
    if structure == "dimer":  # a molecular crystal: one X2 along [111] per cubic cell
        from ase.data import atomic_numbers, vdw_radii

        side = (2 * 1.4 * 4 / 3 * np.pi * vdw_radii[atomic_numbers[symbol]] ** 3) ** (1 / 3)
        bond = DIMER_BOND_A[symbol] * np.ones(3) / np.sqrt(3)
        centre = np.full(3, side / 2)
        return Atoms(
            symbol * 2, positions=[centre - bond / 2, centre + bond / 2], cell=[side] * 3, pbc=True
        )
    raise ValueError(f"unknown structure {structure!r}")


def bulk_specs(elements: Sequence[str]) -> list[tuple[str, str]]:
    """(element, structure) of every bulk reference, elements sorted."""
    return [
        (symbol, structure)
        for symbol in sorted(elements)
        for structure in SPECIAL_STRUCTURES.get(symbol, METAL_STRUCTURES)
    ]


def _rounded(values: np.ndarray, decimals: int) -> list[Any]:
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def _structure_dict(symbols: Sequence[str], cell: np.ndarray, positions: np.ndarray) -> dict:
    """A pymatgen ``Structure.as_dict()``-like dict (lattice, sites with abc and xyz)."""
    fractions = np.linalg.solve(cell.T, positions.T).T
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": _rounded(cell, 8), "pbc": [True, True, True]},
        "sites": [
            {
                "species": [{"element": s, "occu": 1}],
                "abc": _rounded(f, 10),
                "xyz": _rounded(p, 8),
                "label": s,
                "properties": {},
            }
            for s, f, p in zip(symbols, fractions, positions, strict=True)
        ],
    }


def trajectory_document(items: Sequence[Labelled]) -> dict[str, list[dict[str, Any]]]:
    """Alexandria geometry-optimisation document of labelled layers (stress in kBar with
    VASP's sign; every non-``steps`` key is a parameter of the relaxation)."""
    from ase.data import chemical_symbols

    from atlas2d.analysis.units import vasp_kbar_from_ev_a3

    document = {}
    for item in items:
        traj = item.trajectory
        symbols = [chemical_symbols[int(z)] for z in traj.species]
        steps = [
            {
                "structure": _structure_dict(symbols, traj.cells[f], traj.positions[f]),
                "energy": round(float(traj.energies[f]), 6),
                "forces": _rounded(traj.forces[f], 6),
                "stress": _rounded(vasp_kbar_from_ev_a3(traj.stresses[f]), 4),
            }
            for f in range(traj.n_frames)
        ]
        document[item.mat_id] = [{**traj.parameters, "steps": steps}]
    return document


def hull_document(items: Sequence[Labelled]) -> dict[str, list[dict[str, Any]]]:
    """Alexandria convex-hull document: a ComputedStructureEntry dict of every final
    structure (uncorrected energy, correction 0.0)."""
    from pymatgen.core import Element, Lattice, Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    entries = []
    for item in items:
        traj = item.trajectory
        structure = Structure(
            Lattice(np.round(traj.cells[-1], 8)),
            [Element.from_Z(int(z)) for z in traj.species],
            np.round(traj.positions[-1], 8),
            coords_are_cartesian=True,
        )
        try:
            spg = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        except Exception:  # spglib fails on some distorted cells: no space group then
            spg = None
        entry = ComputedStructureEntry(
            structure,
            round(float(traj.energies[-1]), 6),
            correction=0.0,
            parameters=traj.parameters,
            data={
                "mat_id": item.mat_id,
                **item.data,
                "spg": spg,
                "converged": bool(traj.converged),
                "optimizer_steps": int(traj.info["optimizer_steps"]),
            },
            entry_id=item.mat_id,
        )
        entries.append(entry.as_dict())
    return {"entries": entries}


def write_xz(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write ``document`` as compact JSON, xz-compressed; return its size and sha256."""
    content = json.dumps(document, separators=(",", ":")).encode()
    compressed = lzma.compress(content, preset=9 | lzma.PRESET_EXTREME)
    path.write_bytes(compressed)
    return {
        "bytes": len(compressed),
        "bytes_uncompressed": len(content),
        "sha256_uncompressed": hashlib.sha256(content).hexdigest(),
    }


def _step_statistics(steps: Sequence[int]) -> dict[str, Any]:
    values = np.array(steps)
    edges = [0, 20, 50, 100, 150, 200, 500, 10_000]
    histogram = {
        f"{lo}-{hi - 1}" if hi < 10_000 else f">={lo}": int(((values >= lo) & (values < hi)).sum())
        for lo, hi in itertools.pairwise(edges)
    }
    return {
        "min": int(values.min()),
        "median": float(np.median(values)),
        "mean": round(float(values.mean()), 1),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
        "max": int(values.max()),
        "histogram": histogram,
    }


def make_dataset(
    out: Path, manifest_path: Path | None = None, seed: int = SEED, limit: int | None = None
) -> dict[str, Any]:
    """Generate, label and write the dataset (see the module docstring); returns the
    manifest, also written to ``manifest_path`` (default ``out/../manifest.json``).
    ``limit`` keeps the first layers only (and their elements' references)."""
    from atlas2d.mlff.labeller import LabelSettings, label_relaxation, labeller_parameters
    from atlas2d.provenance import package_versions

    began = time.perf_counter()
    settings = LabelSettings(fmax=FMAX_EV_PER_A)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {message}", flush=True)

    specs = layer_specs()[:limit]
    starts, n_parents = build_layers(specs, seed)
    prerelaxed = time.perf_counter()
    log(f"{len(starts)} layer starts from {n_parents} pre-relaxed pristine parents")
    layers: list[Labelled] = []
    for index, (spec, start, perturbation) in enumerate(starts, 1):
        mat_id = f"demo-2d-{index:04d}"
        trajectory = label_relaxation(start, mat_id, settings)
        layers.append(
            Labelled(
                mat_id,
                spec.family,
                trajectory,
                {"dimensionality": 2, "prototype_id": spec.family, "start": perturbation},
            )
        )
        if index % 25 == 0 or index == len(starts):
            log(f"labelled {index}/{len(starts)} layers")
    layers_done = time.perf_counter()
    elements = sorted({s for _, start, _ in starts for s in start.get_chemical_symbols()})
    references: list[Labelled] = []
    for symbol, structure in bulk_specs(elements):
        mat_id = f"demo-bulk-{symbol}-{structure}"
        trajectory = label_relaxation(bulk_reference(symbol, structure), mat_id, settings)
        references.append(
            Labelled(
                mat_id,
                "bulk",
                trajectory,
                {"dimensionality": 3, "prototype_id": f"{symbol}-{structure}"},
            )
        )
    log(f"labelled {len(references)} bulk references of {len(elements)} elements")
    finished = time.perf_counter()

    out.mkdir(parents=True, exist_ok=True)
    from atlas2d.demo import HULL_FILE, TRAJECTORIES_FILE

    files = {
        TRAJECTORIES_FILE: write_xz(trajectory_document(layers), out / TRAJECTORIES_FILE),
        HULL_FILE: write_xz(hull_document(layers + references), out / HULL_FILE),
    }
    layer_steps = [int(item.trajectory.info["optimizer_steps"]) for item in layers]
    manifest = {
        "description": "2D layers and bulk references labelled by the reference labeller "
        "(CHGNet standing in for DFT; never real DFT).",
        "command": "OMP_NUM_THREADS=1 python -m atlas2d.demo.make_dataset --out "
        f"{out}"
        + (f" --seed {seed}" if seed != SEED else "")
        + (f" --limit {limit}" if limit else ""),
        "seed": seed,
        "labeller": {
            key: value
            for key, value in labeller_parameters(settings, "in-plane").items()
            if key != "cell_relax"
        },
        "layers": {
            "total": len(layers),
            "per_family": dict(sorted(Counter(item.family for item in layers).items())),
            "converged": sum(bool(item.trajectory.converged) for item in layers),
            "atoms": {
                "min": min(item.trajectory.n_sites for item in layers),
                "max": max(item.trajectory.n_sites for item in layers),
            },
            "frames": sum(item.trajectory.n_frames for item in layers),
            "optimizer_steps": _step_statistics(layer_steps),
        },
        "bulk_references": {
            "total": len(references),
            "elements": elements,
            "converged": sum(bool(item.trajectory.converged) for item in references),
            "optimizer_steps": _step_statistics(
                [int(item.trajectory.info["optimizer_steps"]) for item in references]
            ),
        },
        "hull_entries": len(layers) + len(references),
        "files": files,
        "wall_time_s": {
            "prerelax_parents": round(prerelaxed - began, 1),
            "label_layers": round(layers_done - prerelaxed, 1),
            "label_bulk": round(finished - layers_done, 1),
            "total": round(time.perf_counter() - began, 1),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "threads": 1,
        },
        "versions": {
            "python": sys.version.split()[0],
            **package_versions(("chgnet", "torch", "ase", "pymatgen", "numpy")),
        },
    }
    manifest_path = manifest_path or out.parent / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    sizes = [f"{name} ({value['bytes'] / 1e6:.2f} MB)" for name, value in files.items()]
    log(f"wrote {', '.join(sizes)}")
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory of the data files")
    parser.add_argument(
        "--manifest", type=Path, default=None, help="manifest file [OUT/../manifest.json]"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--limit", type=int, default=None, help="only the first N layers")
    args = parser.parse_args(argv)
    from atlas2d.threads import apply_threads

    apply_threads(1)  # reproducible float sums, and fair to whoever shares the machine
    manifest = make_dataset(args.out, args.manifest, args.seed, args.limit)
    print(json.dumps({k: manifest[k] for k in ("layers", "bulk_references", "wall_time_s")}))


if __name__ == "__main__":
    main()
