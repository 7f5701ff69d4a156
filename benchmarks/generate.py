"""Candidate deduplication at scale: 10,000 candidates from 500 prototypes against
100,000 stored layers, with atlas2d's grouping (StructureMatcher only within a reduced
formula), and a naive baseline on a subset (every candidate against every stored layer
of the same element set), extrapolated.

    python benchmarks/generate.py [--candidates 10000] [--prototypes 500]
                                  [--stored 100000] [--baseline-candidates 20]

Synthetic data (no database: the deduplication is the cost that grows): 2H and 1T MX2
prototypes over 40 metals and 7 anions; candidates are full substitutions (M→M', X→X')
and Janus layers (one face X→Y) with atlas2d's geometry (radii-scaled lattice); stored
layers are 5 % made the same way (so some candidates are duplicates of stored ones) and
95 % ternary layers of other element sets.

Last line: one JSON object with candidates, stored_materials, seconds, baseline_seconds
(estimate for all candidates), ratio, and the outcome counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import mx2

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import machine
from atlas2d.analysis import generation

METALS = [
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Zr",
    "Nb",
    "Mo",
    "Tc",
    "Ru",
    "Rh",
    "Pd",
    "Hf",
    "Ta",
    "W",
    "Re",
    "Os",
    "Ir",
    "Pt",
    "Sn",
    "Pb",
    "Ge",
    "Si",
    "Sc",
    "Y",
    "Ga",
    "In",
    "Tl",
    "Bi",
    "Sb",
    "Cd",
    "Zn",
    "Hg",
    "Au",
    "Ag",
    "Cu",
    "Al",
    "Mg",
]
ANIONS = ["S", "Se", "Te", "O", "Cl", "Br", "I"]
OTHER = [
    "Li",
    "Na",
    "K",
    "Rb",
    "Cs",
    "Be",
    "Ca",
    "Sr",
    "Ba",
    "La",
    "Ce",
    "Pr",
    "Nd",
    "Sm",
    "Eu",
    "Gd",
    "Tb",
    "Dy",
    "Ho",
    "Er",
    "B",
    "C",
    "N",
    "P",
    "As",
    "F",
    "H",
]


def _layer(metal: str, anion: str, kind: str, a: float) -> Atoms:
    atoms = mx2(f"{metal}{anion}2", kind=kind, a=a, thickness=3.2, vacuum=8.0)
    atoms.pbc = True
    return atoms


def _variant(parent: Atoms, rng: np.random.Generator) -> Atoms:
    """A full substitution or a Janus layer of an MX2 prototype."""
    symbols = parent.get_chemical_symbols()
    metal, anion = symbols[0], symbols[1]
    choice = rng.integers(3)
    if choice == 0:
        new = [str(rng.choice(METALS)) if s == metal else s for s in symbols]
    elif choice == 1:
        other = str(rng.choice(ANIONS))
        new = [other if s == anion else s for s in symbols]
    else:
        other = str(rng.choice([x for x in ANIONS if x != anion]))
        new = [symbols[0], other, symbols[2]]  # one face: Janus
    return generation.with_species(parent, new)


def _ternary(rng: np.random.Generator) -> Atoms:
    a, b = rng.choice(OTHER, size=2, replace=False)
    x = str(rng.choice(ANIONS))
    atoms = _layer("Mo", "S", str(rng.choice(["2H", "1T"])), float(rng.uniform(3.0, 3.6)))
    return generation.with_species(atoms, [str(a), str(b), x])


def naive(candidates: list[Atoms], stored: list[tuple[str, Atoms]]) -> float:
    """Every candidate against every stored layer of its element set (no grouping by
    formula, each stored structure prepared per comparison as a naive loop would)."""
    matcher = generation.structure_matcher()
    stored_sets = [(key, frozenset(atoms.get_chemical_symbols()), atoms) for key, atoms in stored]
    began = time.perf_counter()
    for atoms in candidates:
        elements = frozenset(atoms.get_chemical_symbols())
        structure = generation.comparable(atoms)
        for _, other_elements, other in stored_sets:
            if other_elements == elements:
                matcher.fit(structure, generation.comparable(other))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--prototypes", type=int, default=500)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--baseline-candidates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(machine())

    began = time.perf_counter()
    prototypes = [
        _layer(
            str(rng.choice(METALS)),
            str(rng.choice(ANIONS)),
            str(rng.choice(["2H", "1T"])),
            float(rng.uniform(3.0, 3.6)),
        )
        for _ in range(args.prototypes)
    ]
    per_prototype = args.candidates // args.prototypes
    candidates = [_variant(p, rng) for p in prototypes for _ in range(per_prototype)]
    n_similar = args.stored // 20
    stored_atoms = [
        _variant(prototypes[int(rng.integers(len(prototypes)))], rng) for _ in range(n_similar)
    ]
    stored_atoms += [_ternary(rng) for _ in range(args.stored - n_similar)]
    stored_keys = [f"stored-{i:06d}" for i in range(len(stored_atoms))]
    by_formula: dict[str, list[tuple[str, Atoms]]] = {}
    for key, atoms in zip(stored_keys, stored_atoms, strict=True):
        by_formula.setdefault(generation.reduced_formula(atoms), []).append((key, atoms))
    print(
        f"made {len(prototypes)} prototypes, {len(candidates)} candidates, "
        f"{len(stored_atoms)} stored layers ({len(by_formula)} formulas) in "
        f"{time.perf_counter() - began:.1f} s"
    )

    # atlas2d: what the service does, without the database (formulas of the candidates
    # looked up in the stored index, StructureMatcher within each formula group)
    began = time.perf_counter()
    formulas = {generation.reduced_formula(a) for a in candidates}
    relevant = {f: by_formula[f] for f in formulas if f in by_formula}
    result = generation.deduplicate(candidates, relevant)
    seconds = time.perf_counter() - began
    print(
        f"atlas2d: {len(candidates)} candidates against {len(stored_atoms)} stored in "
        f"{seconds:.1f} s: {len(result.unique)} unique, {len(result.in_pool)} duplicates "
        f"in the pool, {len(result.of_stored)} duplicates of stored"
    )

    subset_index = rng.choice(len(candidates), size=args.baseline_candidates, replace=False)
    subset = [candidates[int(i)] for i in subset_index]
    baseline_subset_s = naive(subset, list(zip(stored_keys, stored_atoms, strict=True)))
    baseline_seconds = baseline_subset_s / len(subset) * len(candidates)
    print(
        f"naive baseline: {len(subset)} candidates in {baseline_subset_s:.1f} s → "
        f"{baseline_seconds:.0f} s estimated for {len(candidates)}"
    )
    ratio = baseline_seconds / seconds
    print(f"ratio (naive ÷ atlas2d): {ratio:.1f}")
    print(
        json.dumps(
            {
                "candidates": len(candidates),
                "prototypes": len(prototypes),
                "stored_materials": len(stored_atoms),
                "seconds": round(seconds, 2),
                "baseline_seconds": round(baseline_seconds, 1),
                "baseline_subset": len(subset),
                "ratio": round(ratio, 1),
                "unique": len(result.unique),
                "duplicate_in_pool": len(result.in_pool),
                "duplicate_of_stored": len(result.of_stored),
            }
        )
    )


if __name__ == "__main__":
    main()
