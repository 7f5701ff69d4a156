"""Alloy formation energies on the demo's alloy layers (a committed database of their own)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.services.alloy_formation import compute_formation_energies
from tests.support.alloys import AlloyDatabase


@pytest.fixture
def alloys(alloy_database: AlloyDatabase) -> AlloyDatabase:
    return alloy_database


def _final_dft_energies(alloys: AlloyDatabase) -> dict[str, tuple[float, list[int]]]:
    """{key: (final energy of the last DFT relaxation in eV, species)}, read plainly."""
    with alloys.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT DISTINCT ON (m.key) m.key, r.final_energy, r.species FROM relaxations r"
                " JOIN materials m ON m.id = r.material_id WHERE r.method = 'dft'"
                " ORDER BY m.key, r.sequence DESC, r.id DESC"
            )
        ).all()
    return {key: (energy, list(species)) for key, energy, species in rows}


def test_dft_formation_energies_equal_a_plain_recomputation(alloys: AlloyDatabase) -> None:
    table = compute_formation_energies(alloys.sessions, "W-S-Mo", "dft")
    energies = _final_dft_energies(alloys)

    def per_site(key: str) -> tuple[float, int, int]:
        energy, species = energies[key]
        n_mo, n_w = species.count(42), species.count(74)
        return energy / (n_mo + n_w), n_mo, n_w

    mos2 = min(per_site(k)[0] for k, (_, s) in energies.items() if set(s) == {42, 16})
    ws2 = min(per_site(k)[0] for k, (_, s) in energies.items() if set(s) == {74, 16})
    alloys_seen = 0
    for row in table.itertuples():
        e_site, n_mo, n_w = per_site(row.material_key)
        x = n_mo / (n_mo + n_w)
        expected = 1000 * (e_site - (x * mos2 + (1 - x) * ws2))
        assert row.x == pytest.approx(x)
        assert row.formation_energy_mev_per_site == pytest.approx(expected, abs=1e-9)
        assert row.formation_energy_mev_per_atom == pytest.approx(expected / 3, abs=1e-9)
        assert row.energy_source == "dft"
        alloys_seen += 0 < x < 1
    assert alloys_seen == 8  # the demo's Mo/W cells: 2×1, 3×1 (2), √3×√3 (2), 2×2 (3)
    # The end members at x = 1 and x = 0 have E_F = 0 against themselves.
    assert min(abs(table.loc[table.x == 1.0, "formation_energy_mev_per_site"])) == 0.0
    assert table.end_members.nunique() == 1


def test_rerunning_replaces_rows(alloys: AlloyDatabase) -> None:
    first = compute_formation_energies(alloys.sessions, "Mo-W-S", "dft")
    again = compute_formation_energies(alloys.sessions, "Mo-S-W", "dft")
    assert again.equals(first)
    with alloys.engine.connect() as connection:
        stored = connection.execute(
            text(
                "SELECT count(*) FROM formation_energies"
                " WHERE system = 'Mo-W-S' AND energy_source = 'dft'"
            )
        ).scalar_one()
        viewed = connection.execute(
            text(
                "SELECT count(*) FROM alloy_formation_energies"
                " WHERE system = 'Mo-W-S' AND energy_source = 'dft'"
            )
        ).scalar_one()
    assert stored == viewed == len(first)


def test_a_missing_end_member_is_named(alloys: AlloyDatabase) -> None:
    with pytest.raises(
        NotFound, match=r"Mo-W-Se has no dft energy for its end member MoSe2 and WSe2"
    ):
        compute_formation_energies(alloys.sessions, "Mo-W-Se", "dft")
    with pytest.raises(InvalidInput, match="Alloy system 'Mo-W'"):
        compute_formation_energies(alloys.sessions, "Mo-W", "dft")


def test_enumeration_matches_icet_on_the_bare_lattice_and_reruns_add_nothing(
    alloys: AlloyDatabase,
) -> None:
    from ase import Atoms
    from icet.tools import enumerate_structures

    from atlas2d.services.alloy_enumeration import enumerate_system

    # The bare triangular lattice of the metal sites, periodic in the plane only.
    cell = [[3.2, 0, 0], [-1.6, 1.6 * np.sqrt(3), 0], [0, 0, 20]]
    lattice = Atoms("Mo", positions=[[0, 0, 0]], cell=cell, pbc=(True, True, False))
    mixed = [
        s
        for s in enumerate_structures(lattice, range(1, 5), [["Mo", "W"]])
        if len(set(s.get_chemical_symbols())) == 2
    ]
    report = enumerate_system(alloys.sessions, "W-Mo-S", "2H", 4, pool="enum-test")
    assert report.counts["generated"] == len(mixed) == 13
    assert report.parent_key.startswith("demo-2d-")
    # The demo's 2×1, √3×√3 and 2×2 Mo/W cells are among them (3×1 is too: 3 sites).
    assert report.counts["duplicate_of_stored"] >= 4
    assert report.counts["stored"] + report.counts["duplicate_of_stored"] + report.counts[
        "duplicate_in_pool"
    ] == len(mixed)
    with alloys.engine.connect() as connection:
        info = connection.execute(
            text("SELECT info -> 'alloy' FROM materials WHERE key = :k"),
            {"k": report.stored_keys[0]},
        ).scalar_one()
    assert info["system"] == "Mo-W-S" and info["prototype"] == "2H"
    assert info["parent"] == report.parent_key and 0 < info["x"] < 1
    again = enumerate_system(alloys.sessions, "Mo-S-W", "2H", 4, pool="enum-test")
    assert again.already_done and again.counts == report.counts
    elsewhere = enumerate_system(alloys.sessions, "Mo-W-S", "2H", 4, pool="enum-test-2")
    assert elsewhere.counts["stored"] == 0 and elsewhere.stored_keys == []


def test_a_model_takes_its_own_end_members(alloys: AlloyDatabase) -> None:
    from atlas2d.queries.training_sets import SelectionParameters
    from atlas2d.services.trainsets import create_training_set
    from tests.support.leakage import add_ml_relaxations, register_model

    create_training_set(
        alloys.sessions, "ml-alloys", SelectionParameters(ecut=1e6, chemsys=("Mo-S-W",))
    )
    dft = compute_formation_energies(alloys.sessions, "Mo-W-S", "dft")
    alloy_keys = dft.material_key[(dft.x > 0) & (dft.x < 1)].tolist()
    end_keys = [k.strip() for k in dft.end_members.iloc[0].split(",")]
    with alloys.sessions.begin() as session:
        model_id = register_model(session, "shifted", "ml-alloys")
        # Its relaxations are DFT's shifted by a constant per atom, alloys first.
        add_ml_relaxations(session, model_id, alloy_keys, {})
    with pytest.raises(
        NotFound, match=r"relax --model shifted:1 --formula MoS2 --dimensionality 2"
    ):
        compute_formation_energies(alloys.sessions, "Mo-W-S", "shifted")
    with alloys.sessions.begin() as session:
        add_ml_relaxations(session, model_id, end_keys, {})
    model = compute_formation_energies(alloys.sessions, "Mo-W-S", "shifted").set_index(
        "material_key"
    )
    assert set(model.energy_source) == {"shifted:1"}
    assert set(model.end_members) == set(dft.end_members)
    # A constant shift per atom cancels in E_F: the model's equal DFT's.
    reference = dft.set_index("material_key").loc[model.index]
    assert model.formation_energy_mev_per_site.to_numpy() == pytest.approx(
        reference.formation_energy_mev_per_site.to_numpy(), abs=1e-6
    )


def _stored_rows(alloys: AlloyDatabase, system: str) -> list[tuple[object, ...]]:
    """A system's stored DFT rows (key, x, E_F, end members, computed_at), by key."""
    with alloys.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT material_key, x, formation_energy_mev_per_site, end_member_a_key,"
                    " end_member_b_key, computed_at FROM alloy_formation_energies"
                    " WHERE system = :system AND energy_source = 'dft' ORDER BY material_key"
                ),
                {"system": system},
            )
        ]


def test_a_shared_end_member_keeps_a_row_per_system(alloys: AlloyDatabase) -> None:
    # MoS2 is an end member of Mo-W-S and of Mo-Nb-S: each system keeps its own row,
    # whichever was computed last, and recomputing one leaves the other's rows alone.
    systems = ("Mo-W-S", "Mo-Nb-S")

    def snapshot() -> dict[str, list[tuple[object, ...]]]:
        return {s: [row[:-1] for row in _stored_rows(alloys, s)] for s in systems}

    for system in systems:
        compute_formation_energies(alloys.sessions, system, "dft")
    first = snapshot()
    for system in reversed(systems):
        compute_formation_energies(alloys.sessions, system, "dft")
    assert snapshot() == first
    mos2 = {row[3] for row in first["Mo-W-S"]}  # A = Mo in both systems
    assert mos2 == {row[3] for row in first["Mo-Nb-S"]} and len(mos2) == 1
    for system in systems:
        keys = {row[0] for row in first[system]}
        assert mos2 <= keys
    mo_nb = _stored_rows(alloys, "Mo-Nb-S")
    compute_formation_energies(alloys.sessions, "Mo-W-S", "dft")
    assert _stored_rows(alloys, "Mo-Nb-S") == mo_nb
