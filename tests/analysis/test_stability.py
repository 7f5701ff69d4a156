"""Per-material stability against the hulls of chemical systems, without a database.

The Mo-S system below is small enough to know its hull by hand (energies eV/atom):

    Mo  −10.0 (and a polymorph at −9.9)      S  −4.0 (its only pure entry)
    MoS2 −6.6: formation −0.6, on the hull   MoS −7.1: formation −0.1

At x_S = 1/2 the hull runs from Mo (x = 0, −10) to MoS2 (x = 2/3, −6.6): −7.45, so MoS
is 0.35 above it, as 1/4 Mo + 3/4 MoS2. Without MoS2 the hull is Mo–MoS–S, which is
−6.0667 at x = 2/3: MoS2 lies 0.5333 below it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from ase.data import chemical_symbols
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from atlas2d.analysis.hull import MissingTerminal
from atlas2d.analysis.metrics import stability_metrics
from atlas2d.analysis.stability import (
    SCORE_COLUMNS,
    MaterialStability,
    Phase,
    TouchedSystems,
    Watermarks,
    compositions,
    corrected_model_energies,
    dft_stability,
    energy_table,
    model_stability,
    score_stability,
    subsystems,
    systems_to_recompute,
    touched_systems,
    watermarks,
)

MO, S = 42, 16


def _dft_frame(rows: list[tuple[str, str, list[int], float]]) -> pd.DataFrame:
    """DFT energies as ``queries.stability.dft_energies`` returns them: every row from an
    energy entry (ids 1, 2, …), no correction."""
    return pd.DataFrame(
        {
            "material_id": [100 + i for i in range(len(rows))],
            "key": [key for key, *_ in rows],
            "formula": [formula for _, formula, *_ in rows],
            "species": [np.array(species) for _, _, species, _ in rows],
            "energy_per_atom": [energy for *_, energy in rows],
            "correction_per_atom": 0.0,
            "entry_id": [float(i + 1) for i in range(len(rows))],
            "relaxation_id": np.nan,
        }
    )


@pytest.fixture
def mo_s() -> pd.DataFrame:
    return _dft_frame(
        [
            ("mo", "Mo", [MO], -10.0),
            ("mo-polymorph", "Mo", [MO, MO], -9.9),
            ("s", "S", [S], -4.0),
            ("mos2", "MoS2", [MO, S, S], -6.6),
            ("mos", "MoS", [S, MO], -7.1),
        ]
    )


def _table(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    return energy_table(frame, frame["energy_per_atom"].to_numpy(dtype=float))


def _by_key(frame: pd.DataFrame, results: list[MaterialStability]) -> dict[str, MaterialStability]:
    keys = dict(zip(frame["material_id"], frame["key"], strict=True))
    return {keys[r.material_id]: r for r in results}


def test_compositions_are_alphabetical_atom_fractions() -> None:
    systems, fractions = compositions([[S, MO, S], [MO], np.array([74, 34, 34, 34])])
    assert systems == ["Mo-S", "Mo", "Se-W"]
    np.testing.assert_allclose(fractions[0], [1 / 3, 2 / 3])
    np.testing.assert_allclose(fractions[1], [1.0])
    np.testing.assert_allclose(fractions[2], [0.75, 0.25])
    assert list(subsystems(("Mo", "S", "W")))[-1] == "Mo-S-W"


def test_dft_stability_of_a_binary_known_by_hand(mo_s: pd.DataFrame) -> None:
    table = _table(mo_s)
    assert sorted(table.by_system) == ["Mo", "Mo-S", "S"]

    binary = dft_stability(table, "Mo-S")
    assert binary.sole_references == []
    results = _by_key(mo_s, binary.materials)
    assert list(results) == ["mos2", "mos"]  # in the frame's order

    mos2 = results["mos2"]
    assert mos2.energy_per_atom_ev == -6.6
    assert mos2.formation_energy_ev_per_atom == pytest.approx(-0.6, abs=1e-12)
    assert mos2.e_above_hull_ev_per_atom == 0.0
    assert mos2.distance_to_hull_ev_per_atom == pytest.approx(-6.6 + 7.1 - 3.1 / 3, abs=1e-12)
    assert mos2.decomposition == (Phase("mos2", "MoS2", 1.0),)
    assert mos2.stable

    mos = results["mos"]
    assert mos.formation_energy_ev_per_atom == pytest.approx(-0.1, abs=1e-12)
    assert mos.e_above_hull_ev_per_atom == pytest.approx(0.35, abs=1e-12)
    assert mos.distance_to_hull_ev_per_atom == mos.e_above_hull_ev_per_atom
    assert mos.decomposition == (Phase("mos2", "MoS2", 0.75), Phase("mo", "Mo", 0.25))
    assert not mos.stable


def test_dft_stability_of_elements(mo_s: pd.DataFrame) -> None:
    table = _table(mo_s)
    molybdenum = _by_key(mo_s, dft_stability(table, "Mo").materials)
    # The ground state is 0.1 below the hull without it (the polymorph's).
    assert molybdenum["mo"].e_above_hull_ev_per_atom == 0.0
    assert molybdenum["mo"].distance_to_hull_ev_per_atom == pytest.approx(-0.1, abs=1e-12)
    assert molybdenum["mo"].formation_energy_ev_per_atom == 0.0
    assert molybdenum["mo-polymorph"].e_above_hull_ev_per_atom == pytest.approx(0.1, abs=1e-12)
    assert molybdenum["mo-polymorph"].decomposition == (Phase("mo", "Mo", 1.0),)
    # The only pure entry of its element competes with nothing.
    (sulfur,) = dft_stability(table, "S").materials
    assert sulfur.e_above_hull_ev_per_atom == 0.0 and sulfur.distance_to_hull_ev_per_atom == 0.0


def test_a_system_without_an_elemental_reference_raises(mo_s: pd.DataFrame) -> None:
    frame = pd.concat(
        [mo_s, _dft_frame([("nbte2", "NbTe2", [41, 52, 52], -5.0)]).assign(material_id=200)],
        ignore_index=True,
    )
    table = _table(frame)
    with pytest.raises(MissingTerminal) as info:
        dft_stability(table, "Nb-Te")
    assert info.value.missing == [0, 1]


def test_a_model_is_placed_against_the_dft_hull_of_the_other_materials(
    mo_s: pd.DataFrame,
) -> None:
    dft_frame = mo_s.assign(correction_per_atom=[0.0, 0.0, 0.0, -0.1, 0.0])
    dft = _table(dft_frame)
    model_frame = pd.DataFrame(
        {
            "material_id": [103, 104, 102],
            "key": ["mos2", "mos", "s"],
            "formula": ["MoS2", "MoS", "S"],
            "species": [np.array([MO, S, S]), np.array([MO, S]), np.array([S])],
            "energy_per_atom": [-6.4, -7.5, -4.2],  # uncorrected
            "relaxation_id": [7, 8, 9],
        }
    )
    energies = corrected_model_energies(dft_frame, model_frame)
    np.testing.assert_allclose(energies, [-6.5, -7.5, -4.2])
    model = energy_table(model_frame, energies)

    binary = model_stability(dft, model, "Mo-S")
    results = _by_key(model_frame, binary.materials)
    # MoS2's own DFT entry is a vertex: it is left out, the hull is Mo–MoS–S.
    mos2 = results["mos2"]
    assert mos2.energy_per_atom_ev == -6.5
    assert mos2.e_above_hull_ev_per_atom == pytest.approx(-6.5 + 7.1 - 3.1 / 3, abs=1e-12)
    assert mos2.distance_to_hull_ev_per_atom == mos2.e_above_hull_ev_per_atom
    assert mos2.formation_energy_ev_per_atom == pytest.approx(-0.5, abs=1e-12)
    assert [(p.material_key, p.fraction) for p in mos2.decomposition] == [
        ("mos", pytest.approx(2 / 3, abs=1e-9)),
        ("s", pytest.approx(1 / 3, abs=1e-9)),
    ]
    # MoS's DFT entry is not on the hull: the whole DFT hull counts.
    mos = results["mos"]
    assert mos.e_above_hull_ev_per_atom == pytest.approx(-7.5 + 7.45, abs=1e-12)
    assert mos.stable
    # S's DFT entry is its element's only reference: no hull without it.
    sulfur = model_stability(dft, model, "S")
    assert sulfur.materials == [] and sulfur.sole_references == ["s"]


def test_material_stability_is_frozen_and_named() -> None:
    result = MaterialStability(
        material_id=1,
        energy_per_atom_ev=-6.0,
        formation_energy_ev_per_atom=-0.5,
        e_above_hull_ev_per_atom=0.0,
        distance_to_hull_ev_per_atom=-0.1,
        decomposition=(Phase("a", "MoS2", 1.0),),
    )
    assert result.stable
    assert not dataclasses.replace(result, e_above_hull_ev_per_atom=1e-3).stable
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.e_above_hull_ev_per_atom = 1.0  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(MaterialStability)] == [
        "material_id",
        "energy_per_atom_ev",
        "formation_energy_ev_per_atom",
        "e_above_hull_ev_per_atom",
        "distance_to_hull_ev_per_atom",
        "decomposition",
    ]


def test_new_energies_touch_their_system_and_change_its_hull_only_on_it(
    mo_s: pd.DataFrame,
) -> None:
    table = _table(mo_s)
    assert watermarks(table, None) == Watermarks(5, 0, None)
    ids = dict(zip(mo_s["key"], mo_s["material_id"], strict=True))
    stable_before = {ids[k] for k in ("mo", "s")}

    # MoS (entry 5, above the hull) is newer: only Mo-S is touched.
    touched = touched_systems(table, None, Watermarks(4, 0), stable_before)
    assert touched == TouchedSystems({"Mo-S"}, set())
    # MoS2 (entry 4) is on the hull: every system containing Mo-S must follow.
    touched = touched_systems(table, None, Watermarks(3, 0), stable_before)
    assert touched == TouchedSystems({"Mo-S"}, {"Mo-S"})
    # MoS was on the hull before (its energy went up): it changed the hull too.
    assert touched_systems(table, None, Watermarks(4, 0), {ids["mos"]}).with_changed_hull == {
        "Mo-S"
    }
    # Unknown earlier state: any new energy counts as changing its hull.
    assert touched_systems(table, None, Watermarks(4, 0), None).with_changed_hull == {"Mo-S"}
    assert touched_systems(table, None, Watermarks(5, 0), None) == TouchedSystems(set(), set())


def test_systems_to_recompute() -> None:
    occurring = {"Mo", "S", "Mo-S", "Mo-S-Se", "Se-W"}
    assert systems_to_recompute(occurring, (), None) == sorted(occurring)
    assert systems_to_recompute(occurring, ("Mo-S",), None) == ["Mo", "Mo-S", "S"]
    changed = TouchedSystems({"Mo-S"}, {"Mo-S"})
    assert systems_to_recompute(occurring, (), changed) == ["Mo-S", "Mo-S-Se"]
    assert systems_to_recompute(occurring, (), TouchedSystems({"Mo-S"}, set())) == ["Mo-S"]
    assert systems_to_recompute(occurring, ("Se-W",), changed) == []


def _random_entries(seed: int) -> pd.DataFrame:
    """Elemental references (two polymorphs) and random compounds of Mo-S-W."""
    rng = np.random.default_rng(seed)
    references = {MO: -10.9, S: -4.1, 74: -12.9}
    rows = []
    for z, energy in references.items():
        rows += [(f"{z}-0", "X", [z], energy), (f"{z}-1", "X", [z, z], energy + 0.04)]
    for i in range(40):
        elements = rng.choice(list(references), size=int(rng.integers(2, 4)), replace=False)
        species = [int(z) for z in elements for _ in range(int(rng.integers(1, 3)))]
        reference = np.mean([references[z] for z in species])
        rows.append((f"c{i}", "X", species, float(reference + rng.normal(-0.3, 0.25))))
    return _dft_frame(rows)


def test_dft_stability_equals_pymatgen_per_chemical_system() -> None:
    frame = _random_entries(3)
    table = _table(frame)
    entries = {
        key: PDEntry(
            Composition(Counter(chemical_symbols[z] for z in species)),
            energy * len(species),
            name=key,
        )
        for key, species, energy in zip(
            frame["key"], frame["species"], frame["energy_per_atom"], strict=True
        )
    }
    results = _by_key(
        frame, [r for s in table.by_system for r in dft_stability(table, s).materials]
    )
    assert results.keys() == entries.keys()
    for system in table.by_system:
        elements = system.split("-")
        subsets = {"-".join(c) for r in range(1, 4) for c in combinations(elements, r)}
        members = [
            entries[k] for k, s in zip(frame["key"], table.systems, strict=True) if s in subsets
        ]
        diagram = PhaseDiagram(members)
        for key in table.keys_of(system):
            expected = diagram.get_e_above_hull(entries[key])
            assert results[key].e_above_hull_ev_per_atom == pytest.approx(expected, abs=1e-9)
            assert results[key].formation_energy_ev_per_atom == pytest.approx(
                diagram.get_form_energy_per_atom(entries[key]), abs=1e-9
            )


def test_scores_overall_per_element_and_per_space_group() -> None:
    paired = pd.DataFrame(
        {
            "material_key": ["a", "b", "c", "d"],
            "elements": [["Mo", "S"], ["Mo", "Se"], ["S", "W"], ["W"]],
            "spacegroup": [187.0, 187.0, np.nan, 194.0],
            "dft_hull_distance": [-0.05, 0.02, 0.10, -0.01],
            "ml_e_above_hull": [-0.02, -0.01, 0.30, 0.05],
        }
    )
    scores = score_stability(paired, 0.0)

    def expected(rows: list[int]) -> dict:
        subset = paired.iloc[rows]
        return stability_metrics(
            subset["dft_hull_distance"].to_numpy(), subset["ml_e_above_hull"].to_numpy(), 0.0
        )

    assert scores.metrics == expected([0, 1, 2, 3])
    assert list(scores.per_element) == ["Mo", "S", "Se", "W"]
    assert scores.per_element["S"] == expected([0, 2])
    assert scores.per_spacegroup == {
        "187": expected([0, 1]),
        "194": expected([3]),
        "unknown": expected([2]),
    }
    table = scores.element_table()
    assert list(table.columns) == ["element", *SCORE_COLUMNS]
    maes = table["e_above_hull_mae_mev_per_atom"].tolist()
    assert maes == sorted(maes, reverse=True) and table["element"].iloc[0] == "W"
