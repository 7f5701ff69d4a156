"""Candidate numerics without a database: matching layers, substitution scores,
decoration by orbits."""

from __future__ import annotations

import pytest
from ase.build import mx2

from atlas2d.analysis import generation
from atlas2d.analysis.generation import Prototype


def _mos2(kind: str = "2H") -> object:
    return mx2("MoS2", kind, a=3.19, thickness=3.13, vacuum=8.0)


def _same(a: object, b: object) -> bool:
    matcher = generation.structure_matcher()
    return bool(matcher.fit(generation.comparable(a), generation.comparable(b)))


def test_2h_and_1t_polymorphs_are_not_one_material() -> None:
    assert not _same(_mos2("2H"), _mos2("1T"))


def test_the_same_layer_matches_whatever_its_vacuum_and_placement() -> None:
    layer = _mos2()
    more_vacuum = mx2("MoS2", "2H", a=3.19, thickness=3.13, vacuum=15.0)
    assert _same(layer, more_vacuum)
    # A layer stored across the cell boundary along c (ingest does not centre layers).
    wrapped = layer.copy()
    wrapped.positions[:, 2] -= layer.positions[:, 2].min() + 0.5
    wrapped.pbc = True
    wrapped.wrap()
    assert wrapped.positions[:, 2].max() - wrapped.positions[:, 2].min() > 10.0
    assert _same(layer, wrapped)


def test_a_wrapped_parent_gives_a_centred_candidate() -> None:
    layer = _mos2()
    wrapped = layer.copy()
    wrapped.positions[:, 2] -= layer.positions[:, 2].min() + 0.5
    wrapped.pbc = True
    wrapped.wrap()
    candidate = generation.with_species(wrapped, ["W", "S", "S"])
    z = candidate.positions[:, 2]
    c = candidate.cell[2, 2]
    assert c == pytest.approx(layer.cell[2, 2])
    assert z.max() - z.min() < 4.0  # one layer, not spread over the cell
    assert 0.5 * (z.max() + z.min()) == pytest.approx(0.5 * c)


def test_a_janus_substitution_is_scored_like_the_full_one() -> None:
    """P(S → Se) × P(Mo → Mo) for both: partial and full proposals share one scale, so
    --threshold and --max-candidates rank them fairly."""
    proposals, why = generation.substitute(Prototype("p", _mos2()), 1e-3, partial=True)
    assert why is None
    scores = {tuple(sorted(p.substitution.items())): p.score for p in proposals}
    full = scores[(("S", "Se"),)]
    janus = [score for key, score in scores.items() if key[0][0].startswith("S@")]
    assert janus and all(score <= full + 1e-12 for score in janus)
    assert max(janus) == pytest.approx(full)


def test_decoration_puts_one_element_on_each_orbit_and_keeps_the_pattern() -> None:
    # Break the mirror of a 2H layer: the two S sites become two orbits.
    layer = _mos2()
    layer.positions[1, 2] += 0.3
    assert len(generation.symmetry_orbits(layer)) == 3
    proposals = generation.decorate(Prototype("p", layer), ["Mo", "S", "Se"])
    made = [tuple(p.atoms.get_chemical_symbols()) for p in proposals]
    assert len(made) == len(set(made)) == 17  # 3 pairings of orbits × 3 × 2 elements − 1
    assert all(generation.stoichiometry_pattern(symbols) == (2, 1) for symbols in made)
    assert ("Mo", "Se", "Se") in made
    # One element per orbit, not per element: S → Mo on one orbit only.
    assert ("Mo", "Mo", "S") in made
    assert ("Mo", "S", "Se") not in made  # MoSSe is another pattern (1, 1, 1)
    assert ("Mo", "S", "S") not in made  # the prototype itself is no candidate


def test_the_stoichiometry_pattern_is_the_anonymous_formula() -> None:
    assert generation.stoichiometry_pattern(["Mo", "S", "S"]) == (2, 1)
    assert generation.stoichiometry_pattern(["W", "Se", "Se"]) == (2, 1)
    assert generation.stoichiometry_pattern(["Bi", "Bi", "Te", "Te", "Se"]) == (2, 2, 1)
