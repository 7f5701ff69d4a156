"""The vectorised hull equals pymatgen's PhaseDiagram on the same entries."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from atlas2d.analysis.hull import MissingTerminal, build_hull, hull_without


def _random_system(elements: list[str], n: int, seed: int) -> tuple[list[Composition], np.ndarray]:
    """Elemental polymorphs plus n random compounds with formation energies around −0.3 eV/atom."""
    rng = np.random.default_rng(seed)
    compositions, energies = [], []
    references = rng.uniform(-8, -2, len(elements))
    for element, reference in zip(elements, references, strict=True):
        for shift in (0.0, 0.05):  # ground state and a metastable polymorph
            compositions.append(Composition({element: int(rng.integers(1, 4))}))
            energies.append(reference + shift)
    for _ in range(n):
        counts = rng.integers(0, 4, len(elements))
        if counts.sum() == 0 or (counts > 0).sum() < 2:
            counts[:2] = 1
        composition = Composition(dict(zip(elements, counts.tolist(), strict=True)))
        fractions = np.array([composition.get_atomic_fraction(e) for e in elements])
        energies.append(fractions @ references + rng.normal(-0.25, 0.2))
        compositions.append(composition)
    return compositions, np.array(energies)


@pytest.mark.parametrize(
    ("elements", "seed"),
    [(["Mo"], 0), (["Mo", "S"], 1), (["Mo", "S", "W"], 2), (["Mo", "Nb", "S", "Se"], 3)],
)
def test_e_above_hull_formation_energy_and_decomposition_equal_pymatgen(
    elements: list[str], seed: int
) -> None:
    compositions, energies = _random_system(elements, 40, seed)
    fractions = np.array([[c.get_atomic_fraction(e) for e in elements] for c in compositions])
    entries = [
        PDEntry(c, e * c.num_atoms, name=str(i))
        for i, (c, e) in enumerate(zip(compositions, energies, strict=True))
    ]
    diagram = PhaseDiagram(entries)

    hull = build_hull(fractions, energies)

    e_above = energies - hull.energies(fractions)
    formation = hull.formation_energies(fractions, energies)
    rows, weights = hull.decompositions(fractions)
    for i, entry in enumerate(entries):
        decomposition, expected = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        assert e_above[i] == pytest.approx(expected, abs=1e-9)
        assert formation[i] == pytest.approx(diagram.get_form_energy_per_atom(entry), abs=1e-9)
        ours = {int(r): w for r, w in zip(rows[i], weights[i], strict=True) if w > 0}
        theirs = {int(e.name): w for e, w in decomposition.items()}
        # pymatgen keeps one entry per composition on the hull; ties between identical
        # compositions do not arise here, so the phases and fractions must match.
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, abs=1e-9)
    stable = {int(e.name) for e in diagram.stable_entries}
    assert set(hull.vertices.tolist()) == stable


def test_hull_without_a_vertex_equals_pymatgen_without_that_entry() -> None:
    elements = ["Mo", "S", "W"]
    compositions, energies = _random_system(elements, 30, 7)
    fractions = np.array([[c.get_atomic_fraction(e) for e in elements] for c in compositions])
    entries = [PDEntry(c, e * c.num_atoms) for c, e in zip(compositions, energies, strict=True)]
    hull = build_hull(fractions, energies)
    compounds = [v for v in hull.vertices if fractions[v].max() < 1.0]
    assert compounds, "the random system must have a stable compound"
    for vertex in compounds:
        without, kept = hull_without(fractions, energies, int(vertex))
        distance = energies[vertex] - without.energies(fractions[vertex : vertex + 1])[0]
        others = PhaseDiagram([e for i, e in enumerate(entries) if i != vertex])
        expected = others.get_decomp_and_e_above_hull(entries[vertex], allow_negative=True)[1]
        assert distance < 0
        assert distance == pytest.approx(expected, abs=1e-9)
        assert vertex not in kept


def test_a_missing_elemental_reference_is_named() -> None:
    fractions = np.array([[1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(MissingTerminal) as info:
        build_hull(fractions, np.array([-3.0, -4.0]))
    assert info.value.missing == [1]


def test_only_pure_entry_of_an_element_cannot_be_left_out() -> None:
    fractions = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert hull_without(fractions, np.array([-3.0, -2.0, -3.0]), 0) is None
