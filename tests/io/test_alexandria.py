"""Alexandria geometry-optimisation and convex-hull JSON readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import (
    CompositionEnergyAdjustment,
    ComputedStructureEntry,
    ConstantEnergyAdjustment,
)

from atlas2d.analysis.units import StressUnit
from atlas2d.errors import InvalidInput
from atlas2d.io.alexandria import read_alexandria_hull, read_alexandria_trajectories
from tests.support.synthetic import alexandria_document, synthetic_trajectories


def _document(n_materials: int = 3, n_steps: int = 5) -> dict:
    return alexandria_document(synthetic_trajectories(n_materials, n_steps, 6, seed=11))


def test_trajectories_round_trip_in_canonical_units() -> None:
    originals = synthetic_trajectories(3, 5, 6, seed=11)
    content = json.dumps(alexandria_document(originals)).encode()
    read_back = read_alexandria_trajectories(content, "alex.json")
    assert [t.material_key for t in read_back] == [t.material_key for t in originals]
    for original, traj in zip(originals, read_back, strict=True):
        assert np.array_equal(traj.species, original.species)
        assert np.allclose(traj.positions, original.positions)
        assert np.allclose(traj.cells, original.cells)
        assert np.allclose(traj.forces, original.forces)
        assert np.allclose(traj.energies, original.energies)
        assert np.allclose(traj.stresses, original.stresses)  # kBar → eV/Å³, sign flipped
        assert traj.parameters == {"functional": "PBE", "ENMAX": 520.0}


def test_stress_unit_option() -> None:
    document = _document(1, 2)
    document["syn-000000"][0]["steps"][0]["stress"] = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]
    content = json.dumps(document).encode()
    kbar = read_alexandria_trajectories(content, "a.json")[0].stresses[0, 0, 0]
    ev = read_alexandria_trajectories(content, "a.json", StressUnit.EV_A3)[0].stresses[0, 0, 0]
    assert kbar == pytest.approx(-1.0 / 1602.1766208)
    assert ev == 1.0


def test_fractional_only_sites_are_read() -> None:
    document = _document(1, 3)
    for step in document["syn-000000"][0]["steps"]:
        for site in step["structure"]["sites"]:
            del site["xyz"]
    (traj,) = read_alexandria_trajectories(json.dumps(document).encode(), "a.json")
    (original,) = synthetic_trajectories(1, 3, 6, seed=11)
    assert np.allclose(traj.positions, original.positions)


def test_successive_relaxations_of_a_material_keep_their_order() -> None:
    document = _document(1, 4)
    runs = document["syn-000000"]
    runs.append(json.loads(json.dumps(runs[0])))
    runs[1]["steps"] = runs[1]["steps"][2:]
    trajectories = read_alexandria_trajectories(json.dumps(document).encode(), "a.json")
    assert [(t.sequence, t.n_frames) for t in trajectories] == [(0, 4), (1, 2)]
    assert trajectories[1].record == "mat_id syn-000000, trajectory 1"


def test_a_malformed_forces_array_is_reported_precisely() -> None:
    document = _document(2, 5)
    document["syn-000001"][0]["steps"][3]["forces"] = document["syn-000001"][0]["steps"][3][
        "forces"
    ][:-1]
    with pytest.raises(InvalidInput) as error:
        read_alexandria_trajectories(json.dumps(document).encode(), "alex.json")
    message = str(error.value)
    assert "alex.json: mat_id syn-000001, trajectory 0, step 3, field 'forces'" in message
    assert "expected shape (6, 3), got (5, 3)" in message


def test_a_ragged_forces_array_is_reported_precisely() -> None:
    document = _document(1, 3)
    document["syn-000000"][0]["steps"][1]["forces"][2] = [0.1, 0.2]
    with pytest.raises(
        InvalidInput, match=r"trajectory 0, step 1, field 'forces': expected shape \(6, 3\)"
    ):
        read_alexandria_trajectories(json.dumps(document).encode(), "alex.json")


def test_a_missing_energy_is_reported() -> None:
    document = _document(1, 3)
    del document["syn-000000"][0]["steps"][2]["energy"]
    with pytest.raises(InvalidInput, match=r"step 2, field 'energy': expected a number, got None"):
        read_alexandria_trajectories(json.dumps(document).encode(), "alex.json")


def test_nan_written_by_python_json_is_read_for_validation() -> None:
    document = _document(1, 3)
    document["syn-000000"][0]["steps"][1]["energy"] = float("nan")
    (traj,) = read_alexandria_trajectories(json.dumps(document).encode(), "alex.json")
    assert np.isnan(traj.energies[1])  # the ingest service refuses it (tests/services)


def test_truncated_json_is_refused() -> None:
    content = json.dumps(_document(2, 3)).encode()
    with pytest.raises(InvalidInput, match="not valid JSON, the file may be truncated"):
        read_alexandria_trajectories(content[: len(content) // 2], "alex.json")


def test_a_placeholder_species_is_refused() -> None:
    document = _document(1, 2)
    for step in document["syn-000000"][0]["steps"]:
        step["structure"]["sites"][0]["species"][0]["element"] = "X"
    with pytest.raises(InvalidInput, match="species 'X' of site 0 is not a chemical element"):
        read_alexandria_trajectories(json.dumps(document).encode(), "alex.json")


def _entry(mat_id: str, correction_kind: str = "plain") -> dict:
    structure = Structure(
        Lattice.hexagonal(3.18, 20.0),
        ["Mo", "S", "S"],
        [[0, 0, 0.5], [1 / 3, 2 / 3, 0.58], [1 / 3, 2 / 3, 0.42]],
    )
    adjustments = []
    if correction_kind == "adjustments":
        adjustments = [
            ConstantEnergyAdjustment(-0.25, name="constant"),
            CompositionEnergyAdjustment(-0.5, 2, name="S anion"),
        ]
    entry = ComputedStructureEntry(
        structure,
        -21.5,
        correction=-0.3 if correction_kind == "plain" else 0.0,
        energy_adjustments=adjustments or None,
        data={
            "mat_id": mat_id,
            "e_above_hull": 0.0,
            "spg": 187,
            "prototype_id": "MoS2_2H",
            "dimensionality": 2,
        },
    )
    return entry.as_dict()


def test_hull_entries_keep_uncorrected_energy_and_correction() -> None:
    with_adjustments_only = _entry("agm002", "adjustments")
    del with_adjustments_only["correction"]  # the correction must come from the adjustments
    content = json.dumps({"entries": [_entry("agm001"), with_adjustments_only]}).encode()
    entries, materials = read_alexandria_hull(content, "hull.json")
    assert [e.material_key for e in entries] == ["agm001", "agm002"]
    assert entries[0].energy == pytest.approx(-21.5)
    assert entries[0].correction == pytest.approx(-0.3)
    assert entries[1].correction == pytest.approx(-0.25 - 0.5 * 2)
    assert entries[0].data["e_above_hull"] == 0.0
    assert materials[0].spacegroup_number == 187
    assert materials[0].prototype == "MoS2_2H"
    assert materials[0].dimensionality == 2
    assert entries[0].species.tolist() == [42, 16, 16]


def test_hull_entry_without_mat_id_is_refused() -> None:
    entry = _entry("agm001")
    del entry["data"]["mat_id"]
    with pytest.raises(InvalidInput, match=r"entry 0, field 'data.mat_id': missing"):
        read_alexandria_hull(json.dumps({"entries": [entry]}).encode(), "hull.json")
