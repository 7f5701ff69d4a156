"""The ingest service against a real PostgreSQL: one transaction per file, no-op re-runs,
summaries, orientation, and nothing written for bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import mx2
from ase.io import read
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis.structure import has_isolated_atom, max_force_norm, vacuum_axes
from atlas2d.db.types import vec3_from_bytes
from atlas2d.errors import InvalidInput
from atlas2d.io.readers import ReadOptions
from atlas2d.io.records import ParsedFile, Trajectory
from atlas2d.services.ingest import (
    ALREADY_PRESENT,
    INGESTED,
    REJECTED,
    ingest_file,
    ingest_parsed,
    ingest_paths,
)
from tests.conftest import VASP_DATA
from tests.io.test_alexandria import _entry
from tests.support.synthetic import alexandria_document, synthetic_trajectories

FE2O2 = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"
X_SPECIES = VASP_DATA / "Cl8F88Sb16X8_relax_vasprun.xml.gz"
TABLES = ("sources", "materials", "relaxations", "frames", "energy_entries")


def _counts(count_rows) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {table: count_rows(table) for table in TABLES}


def test_vasprun_ingest_stores_every_step_with_summaries(
    sessions: sessionmaker[Session], count_rows
) -> None:  # type: ignore[no-untyped-def]
    result = ingest_file(sessions, FE2O2, ReadOptions())
    assert (result.status, result.materials_new, result.relaxations, result.frames) == (
        INGESTED,
        1,
        1,
        28,
    )
    images = read(FE2O2, index=":")
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT f.step, f.energy, f.energy_per_atom, f.forces, f.stress, f.max_force,"
                " f.max_abs_stress, f.area_per_atom, f.has_isolated_atom, f.n_sites"
                " FROM frames f ORDER BY f.step"
            )
        ).all()
        material = session.execute(
            text("SELECT key, formula, chemsys, elements, n_elements FROM materials")
        ).one()
        relaxation = session.execute(
            text("SELECT method, n_steps, final_energy, parameters FROM relaxations")
        ).one()
    assert [r.step for r in rows] == list(range(28))
    assert tuple(material) == ("Fe2O2_relax", "FeO", "Fe-O", ["Fe", "O"], 2)
    assert relaxation.method == "dft" and relaxation.n_steps == 28
    assert relaxation.final_energy == pytest.approx(images[-1].get_potential_energy())
    assert relaxation.parameters["incar"]["NSW"] > 0
    for row, atoms in zip(rows, images, strict=True):
        forces = vec3_from_bytes(row.forces)
        assert np.allclose(forces, atoms.get_forces())
        assert np.allclose(
            row.stress, atoms.get_stress(voigt=False)
        )  # ASE converts kBar the same way
        assert row.energy_per_atom == pytest.approx(atoms.get_potential_energy() / 4)
        assert row.max_force == pytest.approx(np.linalg.norm(atoms.get_forces(), axis=1).max())
        assert row.max_abs_stress == pytest.approx(np.abs(atoms.get_stress(voigt=False)).max())
        assert row.area_per_atom == pytest.approx(np.linalg.norm(np.cross(*atoms.cell[:2])) / 4)
        assert row.has_isolated_atom is False and row.n_sites == 4
    assert _counts(count_rows) == {
        "sources": 1,
        "materials": 1,
        "relaxations": 1,
        "frames": 28,
        "energy_entries": 0,
    }


def test_reingesting_the_same_content_is_a_no_op(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ingest_file(sessions, FE2O2, ReadOptions())
    before = _counts(count_rows)
    assert ingest_file(sessions, FE2O2, ReadOptions()).status == ALREADY_PRESENT
    plain = tmp_path / "Fe2O2_relax_vasprun.xml"  # same content, not compressed
    plain.write_bytes(gzip.decompress(FE2O2.read_bytes()))
    assert ingest_file(sessions, plain, ReadOptions()).status == ALREADY_PRESENT
    assert _counts(count_rows) == before


def test_a_relaxation_stored_through_another_file_is_not_duplicated(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    trajectories = synthetic_trajectories(3, 4, 6, seed=5)
    first = tmp_path / "a.json"
    first.write_text(json.dumps(alexandria_document(trajectories[:2])))
    second = tmp_path / "b.json"
    second.write_text(json.dumps(alexandria_document(trajectories)))
    ingest_file(sessions, first, ReadOptions())
    result = ingest_file(sessions, second, ReadOptions())
    assert (result.relaxations, result.relaxations_present, result.frames) == (1, 2, 4)
    assert count_rows("relaxations") == 3 and count_rows("frames") == 12


def test_bad_file_writes_nothing_and_stops_the_run(
    sessions: sessionmaker[Session], count_rows
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="species 'X'"):
        ingest_paths(sessions, [X_SPECIES], ReadOptions())
    assert set(_counts(count_rows).values()) == {0}


def test_skip_bad_ingests_the_good_files(sessions: sessionmaker[Session], count_rows) -> None:  # type: ignore[no-untyped-def]
    summary = ingest_paths(sessions, [X_SPECIES, FE2O2], ReadOptions(), skip_bad=True)
    assert [r.status for r in summary.results] == [REJECTED, INGESTED]
    assert "species 'X'" in summary.results[0].message
    assert count_rows("frames") == 28 and count_rows("sources") == 1


def _parsed(trajectories: list[Trajectory]) -> ParsedFile:
    return ParsedFile("memory", "records", "", "test", trajectories=trajectories)


def test_a_nan_energy_names_the_record_and_writes_nothing(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    document = alexandria_document(synthetic_trajectories(2, 4, 6, seed=5))
    document["syn-000001"][0]["steps"][2]["energy"] = float("nan")
    path = tmp_path / "alex.json"
    path.write_text(json.dumps(document))  # Python's json writes NaN
    with pytest.raises(
        InvalidInput, match=r"mat_id syn-000001, trajectory 0, step 2, field 'energy': value is NaN"
    ):
        ingest_file(sessions, path, ReadOptions())
    assert set(_counts(count_rows).values()) == {0}


def test_a_malformed_forces_array_writes_nothing(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    document = alexandria_document(synthetic_trajectories(2, 4, 6, seed=5))
    document["syn-000000"][0]["steps"][1]["forces"].pop()
    path = tmp_path / "alex.json.bz2"
    import bz2

    path.write_bytes(bz2.compress(json.dumps(document).encode()))
    with pytest.raises(
        InvalidInput, match=r"mat_id syn-000000, trajectory 0, step 1, field 'forces'"
    ):
        ingest_file(sessions, path, ReadOptions())
    assert set(_counts(count_rows).values()) == {0}


def test_a_key_with_another_formula_is_refused(sessions: sessionmaker[Session], count_rows) -> None:  # type: ignore[no-untyped-def]
    first, second = synthetic_trajectories(2, 3, 6, seed=8)
    second.material_key = first.material_key
    second.species = np.full(6, 3)  # Li6: another compound under the same key
    ingest_parsed(sessions, _parsed([first]))
    before = _counts(count_rows)
    with pytest.raises(InvalidInput, match="has formula Li in this file but"):
        ingest_parsed(sessions, _parsed([second]))
    assert _counts(count_rows) == before


def test_hull_entries_link_to_the_trajectories_material(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    layer = mx2("MoS2", a=3.18, vacuum=10.0)
    trajectory = synthetic_trajectories(1, 3, 3, seed=1)[0]
    trajectory.material_key = "agm001"
    trajectory.species = layer.numbers
    trajectory.cells = np.repeat(layer.cell.array[None], 3, axis=0)
    trajectory.positions = np.repeat(layer.positions[None], 3, axis=0)
    traj_file = tmp_path / "traj.json"
    traj_file.write_text(json.dumps(alexandria_document([trajectory])))
    hull_file = tmp_path / "hull.json"
    hull_file.write_text(json.dumps({"entries": [_entry("agm001"), _entry("agm002")]}))
    ingest_file(sessions, traj_file, ReadOptions())
    result = ingest_file(sessions, hull_file, ReadOptions())
    assert (result.materials_new, result.entries) == (1, 2)
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, m.dimensionality, m.spacegroup_number, m.prototype, e.energy, e.correction,"
                " e.data->>'mat_id' AS mat_id, (SELECT count(*) FROM relaxations r WHERE r.material_id = m.id) AS n"
                " FROM materials m JOIN energy_entries e ON e.material_id = m.id ORDER BY m.key"
            )
        ).all()
    assert [(r.key, r.n) for r in rows] == [("agm001", 1), ("agm002", 0)]
    assert rows[0].energy == pytest.approx(-21.5) and rows[0].correction == pytest.approx(-0.3)
    assert (rows[0].dimensionality, rows[0].spacegroup_number, rows[0].prototype) == (
        2,
        187,
        "MoS2_2H",
    )


def test_a_layer_with_vacuum_along_a_is_reoriented(sessions: sessionmaker[Session]) -> None:
    layer = mx2("MoS2", a=3.18, vacuum=8.0)
    layer.rattle(0.05, seed=2)
    cell = layer.cell.array[[2, 0, 1]]
    forces = np.random.default_rng(0).standard_normal((2, 3, 3))
    trajectory = Trajectory(
        material_key="sideways",
        species=layer.numbers,
        cells=np.stack([cell, cell]),
        positions=np.stack([layer.positions, layer.positions]),
        energies=np.array([-20.0, -20.1]),
        forces=forces,
        stresses=None,
    )
    ingest_parsed(sessions, _parsed([trajectory]))
    with sessions.begin() as session:
        info, dimensionality = session.execute(
            text(
                "SELECT r.info, m.dimensionality FROM relaxations r JOIN materials m ON m.id = r.material_id"
            )
        ).one()
        frame = session.execute(
            text("SELECT cell, positions, forces FROM frames WHERE step = 0")
        ).one()
    assert dimensionality == 2
    assert info["reoriented"]["axis_order"] == [1, 2, 0]
    stored_cell = np.asarray(frame.cell)
    assert vacuum_axes(stored_cell, vec3_from_bytes(frame.positions)) == [2]
    assert np.allclose(stored_cell[:2, 2], 0.0)
    # Same force magnitudes, same stored-vs-given relation as the cell rotation.
    assert np.allclose(
        max_force_norm(vec3_from_bytes(frame.forces)[None]), max_force_norm(forces[:1])
    )


def test_isolated_atoms_are_flagged(sessions: sessionmaker[Session]) -> None:
    cell = np.diag([12.0, 12.0, 12.0])
    positions = np.array([[[0.0, 0, 0], [2.0, 0, 0]], [[0.0, 0, 0], [6.0, 0, 0]]])
    trajectory = Trajectory(
        "dimer",
        np.array([1, 1]),
        np.stack([cell, cell]),
        positions,
        np.array([-1.0, -0.5]),
        np.zeros((2, 2, 3)),
        None,
    )
    ingest_parsed(sessions, _parsed([trajectory]))
    with sessions.begin() as session:
        flags = (
            session.execute(text("SELECT has_isolated_atom FROM frames ORDER BY step"))
            .scalars()
            .all()
        )
    assert flags == [False, True] == has_isolated_atom(np.stack([cell, cell]), positions).tolist()


def test_a_directory_is_walked(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    from atlas2d.io.files import expand_paths

    run = tmp_path / "runs" / "FeO-relax"
    run.mkdir(parents=True)
    shutil.copy(FE2O2, run / "vasprun.xml.gz")
    (run / "notes.txt").write_text("not a calculation")
    files = expand_paths([tmp_path / "runs"])
    assert files == [run / "vasprun.xml.gz"]
    summary = ingest_paths(sessions, files, ReadOptions())
    with sessions.begin() as session:
        assert session.execute(text("SELECT key FROM materials")).scalar_one() == "FeO-relax"
    assert summary.count("frames") == 28


def test_a_file_without_records_is_refused(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "empty.json"
    path.write_text("{}")
    with pytest.raises(InvalidInput, match="holds no trajectory and no energy entry"):
        ingest_file(sessions, path, ReadOptions())
    assert count_rows("sources") == 0
