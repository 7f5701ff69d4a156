"""The ingest service against a real PostgreSQL: one transaction per file, no-op re-runs,
summaries, orientation, and nothing written for bad input."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

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
from tests.support.entry_point import atlas2d_script, user_environment
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


# --- refusals: what ingest must never store, and never answer with a traceback ---------


def _alexandria(mutate: Callable[[dict[str, Any]], Any], n_sites: int = 6) -> bytes:
    """Two synthetic Alexandria relaxations (4 steps), edited by ``mutate`` (which may
    return a replacement document); written by Python's json (NaN/Infinity literals,
    ``\\u0000`` and ``\\ud800`` escapes, integers of any size)."""
    document = alexandria_document(synthetic_trajectories(2, 4, n_sites, seed=5))
    replaced = mutate(document)
    return json.dumps(document if replaced is None else replaced).encode()


def _step(document: dict[str, Any], step: int, key: str = "syn-000000") -> dict[str, Any]:
    return document[key][0]["steps"][step]


def _hull(mutate: Callable[[dict[str, Any]], Any]) -> bytes:
    entry = _entry("agm001")
    mutate(entry)
    return json.dumps({"entries": [entry]}).encode()


@lru_cache(maxsize=1)
def _fe2o2_text() -> str:
    return gzip.decompress(FE2O2.read_bytes()).decode("latin-1")


def _vasprun(edit: Callable[[str], str]) -> bytes:
    """The real Fe2O2 vasprun.xml, edited as text by ``edit``."""
    return edit(_fe2o2_text()).encode("latin-1")


def _calculation(text_: str, index: int) -> tuple[int, int]:
    """Start and end of the ``index``-th <calculation> (0-based)."""
    start = -1
    for _ in range(index + 1):
        start = text_.index("<calculation>", start + 1)
    return start, text_.index("</calculation>", start)


def _in_calculation(index: int, old: str, new: str) -> Callable[[str], str]:
    """Replace the first ``old`` inside the ``index``-th <calculation>."""

    def edit(text_: str) -> str:
        start, end = _calculation(text_, index)
        block = text_[start:end]
        assert old in block
        return text_[:start] + block.replace(old, new, 1) + text_[end:]

    return edit


def _without_stress(index: int) -> Callable[[str], str]:
    """Remove the <varray name="stress"> of the ``index``-th <calculation>."""

    def edit(text_: str) -> str:
        start, end = _calculation(text_, index)
        cut = text_.index('<varray name="stress" >', start, end)
        return text_[:cut] + text_[text_.index("</varray>", cut) + len("</varray>") :]

    return edit


def _set(container: Any, key: Any, value: Any) -> None:
    container[key] = value


def _energies_of(step_1: float, step_2: float) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        _step(document, 1)["energy"], _step(document, 2)["energy"] = step_1, step_2

    return edit


def _with_pstress(value: str) -> Callable[[str], str]:
    """Add PSTRESS to the <incar> block (after NSW)."""
    nsw = '<i type="int" name="NSW">    99</i>'
    return lambda text_: text_.replace(nsw, f'{nsw}\n  <i name="PSTRESS">{value}</i>', 1)


REFUSED_INPUTS: dict[str, tuple[str, bytes, str]] = {
    # finding 5: infinite summaries of finite inputs
    "forces of 1e308": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 1, "syn-000001")["forces"], 0, [1e308] * 3)),
        r"mat_id syn-000001, trajectory 0, step 1, field 'forces':.*max_force",
    ),
    "a lattice value of 1e308": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 2)["structure"]["lattice"]["matrix"][0], 0, 1e308)),
        r"mat_id syn-000000, trajectory 0, step 2, field 'cell':.*area_per_atom",
    ),
    "energies of +-1e308": (
        "alex.json",
        # per atom, the change overflows only with one site
        _alexandria(_energies_of(1e308, -1e308), n_sites=1),
        r"trajectory 0, step 1, field 'energy':.*energy_change",
    ),
    # finding 5: stress at some steps only
    "an Alexandria step without stress": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 2), "stress", None)),
        r"mat_id syn-000000, trajectory 0, step 2, field 'stress': missing",
    ),
    "a vasprun step without stress": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(_without_stress(2)),
        r"material Fe2O2_relax, step 2, field 'stress': missing",
    ),
    # finding 5: species of a middle step
    "a species change in a middle step": (
        "alex.json",
        _alexandria(
            lambda d: _set(_step(d, 1)["structure"]["sites"][0]["species"][0], "element", "Li")
        ),
        r"mat_id syn-000000, trajectory 0, step 1, field 'structure.sites':.*species",
    ),
    # finding 5: loose values
    "an empty material key": (
        "alex.json",
        _alexandria(lambda d: {"": d["syn-000000"]}),
        r"field 'mat_id': .*empty",
    ),
    "a blank material key": (
        "alex.json",
        _alexandria(lambda d: {"  ": d["syn-000000"]}),
        r"field 'mat_id': .*empty",
    ),
    'a force of "1.5"': (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 1)["forces"][2], 0, "1.5")),
        r"trajectory 0, step 1, field 'forces'",
    ),
    "a force of true": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 1)["forces"][2], 0, True)),
        r"trajectory 0, step 1, field 'forces'",
    ),
    'a stress of "1.5"': (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 0)["stress"][1], 1, "1.5")),
        r"trajectory 0, step 0, field 'stress'",
    ),
    "a stress of true": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 3)["stress"][1], 1, True)),
        r"trajectory 0, step 3, field 'stress'",
    ),
    "a space group of true": (
        "hull.json",
        _hull(lambda e: _set(e["data"], "spg", True)),
        r"entry 0 \(mat_id agm001\), field 'data.spg'",
    ),
    "a mat_id of true": (
        "hull.json",
        _hull(lambda e: _set(e["data"], "mat_id", True)),
        r"entry 0, field 'data.mat_id'",
    ),
    # finding 6: inputs that gave a traceback
    "invalid UTF-8": (
        "alex.json",
        _alexandria(lambda d: None).replace(b'"PBE"', b'"PB\xffE"', 1),
        r"UTF-8",
    ),
    "an energy of 10**400": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 1), "energy", 10**400)),
        r"trajectory 0, step 1, field 'energy'",
    ),
    "a force of 10**400": (
        "alex.json",
        _alexandria(lambda d: _set(_step(d, 1)["forces"][0], 1, 10**400)),
        r"trajectory 0, step 1, field 'forces'",
    ),
    "NUL in a material key": (
        "alex.json",
        _alexandria(lambda d: {"syn\x00": d["syn-000000"]}),
        r"field 'mat_id': .*NUL",
    ),
    "NUL in a parameter": (
        "alex.json",
        _alexandria(lambda d: _set(d["syn-000001"][0], "functional", "PB\x00E")),
        r"mat_id syn-000001, trajectory 0, field 'functional': .*NUL",
    ),
    "NUL in a parameter's name": (
        "alex.json",
        _alexandria(lambda d: _set(d["syn-000001"][0], "func\x00", "PBE")),
        r"mat_id syn-000001, trajectory 0, field 'func\\x00': .*NUL",
    ),
    "a lone surrogate in a material key": (
        "alex.json",
        _alexandria(lambda d: {"syn\ud800": d["syn-000000"]}),
        r"field 'mat_id': .*surrogate",
    ),
    "a lone surrogate in a parameter": (
        "alex.json",
        _alexandria(lambda d: _set(d["syn-000000"][0], "functional", "\udc80")),
        r"field 'functional': .*surrogate",
    ),
    "a 2-row basis": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(
            _in_calculation(0, "<v>       0.92931800       2.56184200       1.46134000 </v>", "")
        ),
        r"step 0, field 'basis': expected 3 rows of 3 numbers",
    ),
    "a step with another number of sites": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(
            _in_calculation(
                3, '<varray name="positions" >', '<varray name="positions" >\n<v> 0.1 0.1 0.1 </v>'
            )
        ),
        r"step 3, field 'positions': expected 4 rows of 3 numbers",
    ),
    "NSW=abc": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(lambda t: t.replace('name="NSW">    99<', 'name="NSW">abc<', 1)),
        r"field 'incar.NSW': expected an integer, got 'abc'",
    ),
    "PSTRESS=abc": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(_with_pstress("abc")),
        r"field 'incar.PSTRESS': expected a number",
    ),
    "PSTRESS=1.0 2.0": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(_with_pstress("1.0 2.0")),
        r"field 'incar.PSTRESS': expected a number",
    ),
    "an external entity": (
        "Fe2O2_relax_vasprun.xml",
        _vasprun(
            lambda t: t.replace(
                "<modeling>",
                '<!DOCTYPE modeling [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>\n<modeling>',
                1,
            ).replace("vasp </i>", "&xxe;</i>", 1)
        ),
        r"field 'xml': .*entit",
    ),
}


def test_nan_in_free_form_metadata_is_stored_as_null(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "hull.json"
    path.write_bytes(_hull(lambda e: _set(e["data"], "e_above_hull", float("nan"))))
    assert ingest_file(sessions, path, ReadOptions()).entries == 1
    with sessions.begin() as session:
        stored = session.execute(
            text(
                "SELECT data -> 'e_above_hull' IS NOT NULL, data ->> 'e_above_hull' FROM energy_entries"
            )
        ).one()
    assert tuple(stored) == (True, None)  # the key is kept, its value is JSON null


@pytest.mark.parametrize("case", list(REFUSED_INPUTS))
def test_bad_input_is_refused_in_one_line_and_writes_nothing(
    case: str, sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    name, content, message = REFUSED_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message) as refused:
        ingest_file(sessions, path, ReadOptions())
    text_ = str(refused.value)
    assert "\n" not in text_ and str(path) in text_ and "truncated" not in text_
    assert set(_counts(count_rows).values()) == {0}


def test_a_file_name_that_is_not_utf8_is_refused(
    sessions: sessionmaker[Session], count_rows, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / os.fsdecode(b"Fe2O2_\xff_vasprun.xml.gz")  # a lone surrogate in str
    shutil.copy(FE2O2, path)
    with pytest.raises(InvalidInput, match=r"_\\udcff_vasprun\.xml\.gz: the file name is not"):
        ingest_file(sessions, path, ReadOptions())
    assert set(_counts(count_rows).values()) == {0}


@pytest.fixture(scope="module")
def scratch_database_url(database_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database of its own for the installed command (which commits)."""
    from tests.conftest import _drop_database, _migrated_database

    url = _migrated_database(database_server, "atlas2d_ingest_cli")
    yield url
    _drop_database(database_server, url)


def atlas2d_command(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``atlas2d`` entry point on the database at ``url``."""
    environment = user_environment(ATLAS2D_DATABASE_URL=url, COLUMNS="100", **env)
    return subprocess.run(
        [atlas2d_script(), *args], env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_installed_command_refuses_in_one_line_with_exit_code_1(
    scratch_database_url: str, tmp_path: Path
) -> None:
    for case in (
        "forces of 1e308",
        "a lattice value of 1e308",
        "energies of +-1e308",
        "invalid UTF-8",
        "an energy of 10**400",
        "NUL in a parameter",
        "a lone surrogate in a material key",
        "a 2-row basis",
        "PSTRESS=1.0 2.0",
        "an external entity",
    ):
        name, content, message = REFUSED_INPUTS[case]
        path = tmp_path / case.replace(" ", "_").replace("*", "") / name
        path.parent.mkdir()
        path.write_bytes(content)
        done = atlas2d_command(scratch_database_url, "ingest", str(path))
        assert done.returncode == 1, (case, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (case, done.stderr)
        assert re.search(message, lines[0]), (case, lines[0])
