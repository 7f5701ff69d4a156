"""Candidate 2D layers from prototypes: data-mined substitution, decoration of symmetry
orbits, the geometry of a new layer, and deduplication.

Structures are ASE ``Atoms`` of layers with the vacuum along c (c along z, as ingest
stores them); lengths Å. Substitution probabilities come from Hautier et al.'s
data-mined model shipped with pymatgen (``pymatgen.analysis.structure_prediction``),
oxidation states from pymatgen's guesses, orbits from spglib through pymatgen.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

STANDARD_VACUUM_A = 5.0
"""Vacuum every layer is given before two are compared, so that cells that differ only
in their vacuum match (StructureMatcher scales volumes, vacuum included). Small on
purpose: the matcher's site tolerance grows with the volume per site, and with 20 Å of
vacuum it reached ~1.2 Å, enough to take a 1T layer for a 2H one."""


@dataclass(frozen=True)
class Prototype:
    """A known layer new candidates are made from."""

    key: str
    atoms: Atoms


@dataclass
class Proposal:
    """One generated structure and how it was made.

    Attributes:
        substitution: what was put where, e.g. ``{"Mo": "W"}`` (every site of Mo) or
            ``{"S@1": "Se"}`` (the sites of one symmetry orbit, by its first site index).
        score: the substitution probability (1 for a decoration).
        oxidation_states: the new species' oxidation states, element → charge (empty
            when pymatgen found none).
    """

    parent_key: str
    method: str
    substitution: dict[str, str]
    score: float
    atoms: Atoms
    charge: float = 0.0
    """Sum of oxidation states over all sites (0 when charge-balanced)."""
    oxidation_states: dict[str, float] = field(default_factory=dict)

    @property
    def formula(self) -> str:
        return reduced_formula(self.atoms)

    def digest(self) -> str:
        """12 hex characters identifying the proposal (parent, method, substitution)."""
        text = json.dumps(
            [self.parent_key, self.method, sorted(self.substitution.items())],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def reduced_formula(atoms: Atoms) -> str:
    """pymatgen's reduced formula of a structure (``MoS2``)."""
    from pymatgen.core import Composition

    return str(Composition(atoms.get_chemical_formula()).reduced_formula)


def material_fields(atoms: Atoms) -> dict[str, Any]:
    """formula (reduced), chemsys (``Mo-S``) and elements (sorted) of a structure."""
    elements = sorted(set(atoms.get_chemical_symbols()))
    return {"formula": reduced_formula(atoms), "chemsys": "-".join(elements), "elements": elements}


def is_element(symbol: str) -> bool:
    """True when ``symbol`` is a chemical element's symbol (``Mo``, not ``Xx`` or ``mo``)."""
    return symbol in atomic_numbers and symbol != "X"


# --- symmetry -----------------------------------------------------------------------


def _pymatgen(atoms: Atoms) -> Any:
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def symmetry_orbits(atoms: Atoms, symprec: float = 0.1) -> list[list[int]]:
    """Sets of symmetry-equivalent sites (spglib through pymatgen), sorted by first index."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    symmetrized = SpacegroupAnalyzer(_pymatgen(atoms), symprec=symprec).get_symmetrized_structure()
    return sorted(sorted(int(i) for i in orbit) for orbit in symmetrized.equivalent_indices)


def layer_orbits(atoms: Atoms, symprec: float = 0.1) -> list[list[int]]:
    """Orbits under the layer's symmetry operations that keep its two faces apart.

    Operations that flip z (a horizontal mirror, an inversion) make the top and bottom
    chalcogens of MoS2 one orbit; without them the two faces are separate orbits, and
    replacing one gives a Janus layer (MoSSe).
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = _pymatgen(atoms)
    operations = SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_operations()
    frac = np.asarray(structure.frac_coords)
    numbers = atoms.get_atomic_numbers()
    parent = list(range(len(atoms)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    cart = np.asarray(structure.lattice.matrix)
    for operation in operations:
        rotation = np.asarray(operation.rotation_matrix)
        # fractional z of the image must not be -z: keep operations with W_zz = +1
        if rotation[2, 2] < 0.5:
            continue
        images = frac @ rotation.T + np.asarray(operation.translation_vector)
        delta = images[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        distance = np.linalg.norm(delta @ cart, axis=2)
        for i, j in zip(*np.nonzero(distance < symprec), strict=True):
            if numbers[i] == numbers[j]:
                parent[root(int(i))] = root(int(j))
    orbits: dict[int, list[int]] = {}
    for i in range(len(atoms)):
        orbits.setdefault(root(i), []).append(i)
    return sorted(orbits.values())


# --- oxidation states and the substitution model ------------------------------------


def oxidation_states(formula: str) -> dict[str, float]:
    """pymatgen's most likely oxidation state of each element (empty when none balances)."""
    from pymatgen.core import Composition

    guesses = Composition(formula).oxi_state_guesses(max_sites=-50)
    return {str(k): float(v) for k, v in guesses[0].items()} if guesses else {}


def _charge(atoms: Atoms, states: dict[str, float]) -> float:
    return float(sum(states[symbol] for symbol in atoms.get_chemical_symbols()))


@functools.lru_cache(maxsize=1)
def _probability_model() -> Any:
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionProbability,
    )

    return SubstitutionProbability()


def _species(symbol: str, charge: float) -> Any:
    from pymatgen.core import Species

    return Species(symbol, charge)


@functools.lru_cache(maxsize=4096)
def _full_substitutions(
    species: tuple[tuple[str, float], ...], threshold: float
) -> tuple[tuple[tuple[tuple[str, float], ...], float], ...]:
    """Hautier et al.'s substitutions of every species at once, probability ≥ threshold:
    ((new (symbol, charge) per old species), probability), identity excluded."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionPredictor,
    )

    model = _probability_model()
    olds = [_species(symbol, charge) for symbol, charge in species]
    if any(old not in model.species for old in olds):
        return ()
    predictor = SubstitutionPredictor(threshold=threshold)
    predictor.p = model
    found = []
    for prediction in predictor.list_prediction(olds, to_this_composition=False):
        news = tuple(
            (
                str(prediction["substitutions"][old].symbol),
                float(prediction["substitutions"][old].oxi_state),
            )
            for old in olds
        )
        if news != species:
            found.append((news, float(prediction["probability"])))
    return tuple(sorted(found, key=lambda item: (-item[1], item[0])))


@functools.lru_cache(maxsize=4096)
def _single_substitutions(
    symbol: str, charge: float, threshold: float
) -> tuple[tuple[tuple[str, float], float], ...]:
    """Species that may replace one species, with P ≥ threshold (pymatgen's conditional
    probability, in the direction ``list_prediction`` uses for a starting composition)."""
    model = _probability_model()
    old = _species(symbol, charge)
    if old not in model.species:
        return ()
    found = []
    for new in model.species:
        if new.symbol == symbol:
            continue
        probability = float(model.cond_prob(old, new))
        if probability >= threshold:
            found.append(((str(new.symbol), float(new.oxi_state)), probability))
    return tuple(sorted(found, key=lambda item: (-item[1], item[0])))


def _kept_probability(species: tuple[tuple[str, float], ...], changed: str) -> float:
    """Π P(s → s) over the species other than ``changed`` (pymatgen's conditional
    probabilities), the factor a full substitution's probability has for them."""
    model = _probability_model()
    kept = 1.0
    for symbol, charge in species:
        if symbol != changed:
            old = _species(symbol, charge)
            kept *= float(model.cond_prob(old, old))
    return kept


# --- geometry -----------------------------------------------------------------------


def mean_covalent_radius(symbols: Iterable[str]) -> float:
    """Mean covalent radius over sites (Å, ``ase.data.covalent_radii``)."""
    return float(np.mean([covalent_radii[atomic_numbers[s]] for s in symbols]))


def contiguous(atoms: Atoms) -> Atoms:
    """The layer with its atoms contiguous along c: the widest gap in fractional z (the
    vacuum, also when it straddles the cell boundary, as stored layers may) is moved to
    the boundary, so that z runs from the layer's bottom to its top. In-plane
    coordinates are wrapped into the cell."""
    frac = atoms.get_scaled_positions(wrap=True)
    z = np.sort(frac[:, 2])
    gaps = np.diff(np.concatenate([z, [z[0] + 1.0]]))
    bottom = z[(int(np.argmax(gaps)) + 1) % len(z)]
    frac[:, 2] = (frac[:, 2] - bottom) % 1.0
    layer = atoms.copy()
    layer.set_scaled_positions(frac)
    return layer


def with_species(parent: Atoms, symbols: Sequence[str]) -> Atoms:
    """The parent layer with new species, its in-plane lattice (a, b) and thickness
    scaled by the ratio of mean covalent radii; c (the vacuum) kept, layer centred in c.

    Args:
        parent: a layer with c along z. symbols: the new species, one per site.
    """
    parent = contiguous(parent)
    ratio = mean_covalent_radius(symbols) / mean_covalent_radius(parent.get_chemical_symbols())
    cell = np.array(parent.cell, dtype=np.float64)
    frac = parent.get_scaled_positions(wrap=False)
    new_cell = cell.copy()
    new_cell[:2] *= ratio
    positions = frac @ new_cell
    # thickness: scale z about the layer's centre, then centre the layer in c
    z = np.asarray(parent.positions[:, 2])
    z_centre = 0.5 * (z.max() + z.min())
    positions[:, 2] = (z - z_centre) * ratio + 0.5 * cell[2, 2]
    # frac @ new_cell put the in-plane coordinates right; keep the out-of-plane
    # component of c's in-plane shift (c ⟂ ab for stored layers) out of z
    return Atoms(symbols=list(symbols), positions=positions, cell=new_cell, pbc=parent.pbc)


def too_close(atoms: Atoms, factor: float) -> bool:
    """True when two atoms (periodic images included) are closer than ``factor`` × the
    sum of their covalent radii."""
    from ase.neighborlist import neighbor_list

    radii = factor * covalent_radii[atoms.get_atomic_numbers()]
    return len(neighbor_list("i", atoms, radii.tolist(), self_interaction=False)) > 0


# --- generation ---------------------------------------------------------------------


def _states_of(prototype: Prototype) -> dict[str, float]:
    return oxidation_states(reduced_formula(prototype.atoms))


def substitute(
    prototype: Prototype, threshold: float, partial: bool = False
) -> tuple[list[Proposal], str | None]:
    """Every substitution of the prototype with probability ≥ threshold.

    Full substitutions replace each element on all its sites (several at once when the
    model says so); with ``partial`` also each element on one layer orbit
    (:func:`layer_orbits`) by one other element not in the layer.

    Returns:
        The proposals (geometry scaled, charge computed) and, when none could be made,
        why (no oxidation states, or species unknown to the model).
    """
    states = _states_of(prototype)
    if not states:
        return [], "no oxidation states balance its composition"
    symbols = prototype.atoms.get_chemical_symbols()
    elements = sorted(states)
    species = tuple((element, states[element]) for element in elements)
    if any(charge != round(charge) for _, charge in species):
        return [], "fractional oxidation states"
    model = _probability_model()
    if any(_species(*sp) not in model.species for sp in species):
        return [], "species unknown to the substitution model"
    proposals = []
    for news, probability in _full_substitutions(species, threshold):
        mapping = {old[0]: new[0] for old, new in zip(species, news, strict=True)}
        if len(set(mapping.values())) < len(mapping):
            continue  # two elements became one: another stoichiometry, not a substitution
        new_states = {new[0]: new[1] for new in news}
        new_symbols = [mapping[s] for s in symbols]
        atoms = with_species(prototype.atoms, new_symbols)
        proposals.append(
            Proposal(
                prototype.key,
                "substitute",
                {old: new for old, new in mapping.items() if old != new},
                probability,
                atoms,
                _charge(atoms, new_states),
                new_states,
            )
        )
    if partial:
        orbits = layer_orbits(prototype.atoms)
        for element, charge in species:
            own = [orbit for orbit in orbits if symbols[orbit[0]] == element]
            if len(own) < 2:
                continue
            for orbit in own:
                for (new_symbol, new_charge), probability in _single_substitutions(
                    element, charge, threshold
                ):
                    if new_symbol in states:
                        continue
                    # On the scale of a full substitution (pymatgen's product over every
                    # species): the unchanged species count with P(s → s).
                    probability *= _kept_probability(species, element)
                    new_symbols = list(symbols)
                    for i in orbit:
                        new_symbols[i] = new_symbol
                    atoms = with_species(prototype.atoms, new_symbols)
                    new_states = states | {new_symbol: new_charge}
                    proposals.append(
                        Proposal(
                            prototype.key,
                            "substitute-partial",
                            {f"{element}@{orbit[0]}": new_symbol},
                            probability,
                            atoms,
                            _charge(atoms, new_states),
                            new_states,
                        )
                    )
    return _best_per_substitution(proposals), None


def _best_per_substitution(proposals: list[Proposal]) -> list[Proposal]:
    """One proposal per substitution of elements: the model lists each with several
    oxidation states; keep the most probable charge-balanced one, else the most
    probable."""
    best: dict[tuple[str, tuple[tuple[str, str], ...]], Proposal] = {}
    for proposal in proposals:
        key = (proposal.method, tuple(sorted(proposal.substitution.items())))
        held = best.get(key)
        rank = (proposal.charge == 0, proposal.score)
        if held is None or rank > (held.charge == 0, held.score):
            best[key] = proposal
    return sorted(best.values(), key=lambda p: (-p.score, p.digest()))


def stoichiometry_pattern(symbols: Sequence[str]) -> tuple[int, ...]:
    """The site counts of each element, largest first: the anonymous formula (MoS2 and
    WSe2 are both (2, 1); Bi2Te3 is (3, 2), Bi2Te2Se (2, 2, 1))."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    return tuple(sorted(counts.values(), reverse=True))


def decorate(prototype: Prototype, elements: Sequence[str]) -> list[Proposal]:
    """Every assignment of the given elements to the prototype's symmetry orbits (one
    element per orbit) that keeps its stoichiometry pattern (:func:`stoichiometry_pattern`).
    Charge is judged by pymatgen's oxidation-state guesses for the new composition
    (``charge`` 1 when none balances).

    The assignments are ``len(elements) ** len(orbits)``: a few thousand for the layers
    of this field (two to four orbits)."""
    symbols = prototype.atoms.get_chemical_symbols()
    orbits = symmetry_orbits(prototype.atoms)
    pattern = stoichiometry_pattern(symbols)
    proposals, seen = [], {tuple(symbols)}
    for chosen in itertools.product(sorted(set(elements)), repeat=len(orbits)):
        new_symbols = list(symbols)
        for orbit, element in zip(orbits, chosen, strict=True):
            for i in orbit:
                new_symbols[i] = element
        if tuple(new_symbols) in seen or stoichiometry_pattern(new_symbols) != pattern:
            continue
        seen.add(tuple(new_symbols))
        atoms = with_species(prototype.atoms, new_symbols)
        states = oxidation_states(reduced_formula(atoms))
        proposals.append(
            Proposal(
                prototype.key,
                "decorate",
                {
                    f"{symbols[orbit[0]]}@{orbit[0]}": element
                    for orbit, element in zip(orbits, chosen, strict=True)
                },
                1.0,
                atoms,
                0.0 if states else 1.0,
                states,
            )
        )
    return proposals


# --- deduplication ------------------------------------------------------------------


def comparable(atoms: Atoms) -> Any:
    """A pymatgen Structure of the layer with :data:`STANDARD_VACUUM_A` of vacuum."""
    atoms = contiguous(atoms)
    z = atoms.positions[:, 2]
    cell = np.array(atoms.cell, dtype=np.float64)
    thickness = float(z.max() - z.min())
    cell[2] = [0.0, 0.0, thickness + STANDARD_VACUUM_A]
    positions = atoms.positions.copy()
    positions[:, 2] = z - z.min() + 0.5 * STANDARD_VACUUM_A
    return _pymatgen(Atoms(atoms.get_chemical_symbols(), positions, cell=cell, pbc=True))


def structure_matcher() -> Any:
    """pymatgen's StructureMatcher with its default tolerances."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()


@dataclass
class DedupResult:
    """Index of the proposal (or key of the stored layer) each duplicate matched."""

    unique: list[int] = field(default_factory=list)
    in_pool: dict[int, int] = field(default_factory=dict)
    """duplicate proposal → the earlier proposal it matched."""
    of_stored: dict[int, str] = field(default_factory=dict)
    """duplicate proposal → the key of the stored material it matched."""


def deduplicate(
    structures: Sequence[Atoms],
    stored: dict[str, list[tuple[str, Atoms]]],
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> DedupResult:
    """Which structures are new: each is compared only with the stored layers and the
    earlier unique structures of its reduced formula (StructureMatcher), never with
    every other.

    Args:
        structures: in order of preference (the first of two duplicates is kept).
        stored: reduced formula → [(material key, layer)].
        progress: called with the number of structures judged so far.
        limit: stop after this many unique structures (the rest are not judged).
    """
    matcher = structure_matcher()
    stored_structures: dict[str, list[tuple[str, Any]]] = {}
    kept: dict[str, list[tuple[int, Any]]] = {}
    result = DedupResult()
    for index, atoms in enumerate(structures):
        if limit is not None and len(result.unique) >= limit:
            break
        formula = reduced_formula(atoms)
        if formula not in stored_structures:
            stored_structures[formula] = [(k, comparable(a)) for k, a in stored.get(formula, [])]
        structure = comparable(atoms)
        matched_key = next(
            (key for key, other in stored_structures[formula] if matcher.fit(structure, other)),
            None,
        )
        if matched_key is not None:
            result.of_stored[index] = matched_key
        else:
            earlier = next(
                (j for j, other in kept.get(formula, []) if matcher.fit(structure, other)),
                None,
            )
            if earlier is not None:
                result.in_pool[index] = earlier
            else:
                result.unique.append(index)
                kept.setdefault(formula, []).append((index, structure))
        if progress is not None:
            progress(index + 1)
    return result
