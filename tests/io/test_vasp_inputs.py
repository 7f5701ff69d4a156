"""VASP inputs for active-learning candidates, and the label ticket the readers pick up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2
from pymatgen.io.vasp import Incar, Kpoints, Poscar

from atlas2d.errors import InvalidInput
from atlas2d.io.readers import ReadOptions, read_file
from atlas2d.io.vasp_inputs import (
    LABEL_TICKET,
    LabelTicket,
    read_label_ticket,
    write_vasp_inputs,
)
from tests.conftest import VASP_DATA

FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR.spec", LABEL_TICKET)


def _monolayer() -> Atoms:
    return mx2(formula="MoS2", kind="2H", a=3.18, thickness=3.19, vacuum=10)


def _ticket(material_key: str, formula: str) -> LabelTicket:
    return LabelTicket(campaign="al-mos2", iteration=3, material_key=material_key, formula=formula)


def _assert_poscar_matches(folder: Path, atoms: Atoms) -> None:
    structure = Poscar.from_file(folder / "POSCAR").structure
    np.testing.assert_allclose(structure.lattice.matrix, atoms.cell[:], atol=1e-10)
    written = sorted((site.specie.symbol, *np.round(site.coords, 8).tolist()) for site in structure)
    expected = sorted(
        (symbol, *np.round(position, 8).tolist())
        for symbol, position in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)
    )
    assert written == expected


def test_monolayer_inputs_keep_c_fixed_with_one_kpoint_along_c(tmp_path: Path) -> None:
    atoms = _monolayer()
    assert atoms.cell.lengths()[2] > 20  # ase puts the vacuum along c
    ticket = _ticket("al-mos2-0001", "MoS2")
    folder = write_vasp_inputs(atoms, tmp_path / "mos2", ticket, layer=True)

    incar = Incar.from_file(folder / "INCAR")
    assert incar["ENCUT"] == 520
    assert incar["PREC"] == "Accurate"
    assert incar["ISIF"] == 3
    assert incar["IBRION"] == 2
    assert incar["LATTICE_CONSTRAINTS"] == [True, True, False]
    assert "al-mos2" in incar["SYSTEM"]
    assert "iteration 3" in incar["SYSTEM"]
    assert "LATTICE_CONSTRAINTS = .TRUE. .TRUE. .FALSE." in (folder / "INCAR").read_text()
    assert (folder / "INCAR").read_text().startswith("# atlas2d label: al-mos2 iteration 3")

    kpoints = Kpoints.from_file(folder / "KPOINTS")
    assert kpoints.style == Kpoints.supported_modes.Gamma
    k_a, k_b, k_c = kpoints.kpts[0]
    assert k_c == 1
    assert k_a == k_b > 1

    _assert_poscar_matches(folder, atoms)
    assert (folder / "POTCAR.spec").read_text().splitlines() == ["Mo_pv", "S"]
    assert read_label_ticket(folder) == ticket


def test_bulk_inputs_relax_the_whole_cell(tmp_path: Path) -> None:
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 2)
    assert atoms.get_chemical_symbols() == ["Na", "Cl", "Na", "Cl"]  # POSCAR regroups them
    folder = write_vasp_inputs(atoms, tmp_path / "nacl", _ticket("nacl", "NaCl"), layer=False)

    incar = Incar.from_file(folder / "INCAR")
    assert incar["ENCUT"] == 520
    assert incar["ISIF"] == 3
    assert "LATTICE_CONSTRAINTS" not in incar
    assert min(Kpoints.from_file(folder / "KPOINTS").kpts[0]) > 1
    _assert_poscar_matches(folder, atoms)
    assert Poscar.from_file(folder / "POSCAR").site_symbols == ["Na", "Cl"]
    assert (folder / "POTCAR.spec").read_text().splitlines() == ["Na_pv", "Cl"]


def test_writing_again_gives_identical_files(tmp_path: Path) -> None:
    atoms = _monolayer()
    ticket = _ticket("al-mos2-0001", "MoS2")
    folder = write_vasp_inputs(atoms, tmp_path / "mos2", ticket, layer=True)
    first = {name: (folder / name).read_bytes() for name in FILES}
    write_vasp_inputs(atoms, folder, ticket, layer=True)
    assert {name: (folder / name).read_bytes() for name in FILES} == first
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)


def test_a_ticket_for_another_formula_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="formula 'WS2'"):
        write_vasp_inputs(_monolayer(), tmp_path, _ticket("x", "WS2"), layer=True)


def test_ticket_round_trips_and_is_absent_without_a_file(tmp_path: Path) -> None:
    ticket = _ticket("al-mos2-0001", "MoS2")
    assert LabelTicket.from_json(json.loads(json.dumps(ticket.to_json()))) == ticket
    assert read_label_ticket(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            '{"campaign": "c", "iteration": "3", "material_key": "k", "formula": "MoS2"}',
            "iteration",
        ),
        ('{"campaign": "c", "iteration": 3, "formula": "MoS2"}', "material_key"),
        ('{"campaign": "", "iteration": 3, "material_key": "k", "formula": "MoS2"}', "campaign"),
        ('{"campaign": "c", "iteration": 3, "material_key": "k"', "not JSON"),
        ('["c", 3, "k", "MoS2"]', "not a JSON object"),
    ],
)
def test_a_malformed_ticket_names_the_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    (tmp_path / LABEL_TICKET).write_text(text)
    with pytest.raises(InvalidInput) as caught:
        read_label_ticket(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / LABEL_TICKET) in message
    assert field in message
    assert "\n" not in message


def test_reader_takes_the_material_key_from_the_ticket(tmp_path: Path) -> None:
    folder = tmp_path / "calc-0007"
    folder.mkdir()
    vasprun = folder / "vasprun.xml.gz"
    shutil.copyfile(VASP_DATA / "Fe2O2_relax_vasprun.xml.gz", vasprun)

    without = read_file(vasprun, ReadOptions())
    assert without.trajectories[0].material_key == "calc-0007"
    assert without.label_ticket is None
    assert "label_ticket" not in without.options

    ticket = _ticket("al-feo-0042", "FeO")
    (folder / LABEL_TICKET).write_text(json.dumps(ticket.to_json()))
    parsed = read_file(vasprun, ReadOptions())
    assert parsed.trajectories[0].material_key == "al-feo-0042"
    assert parsed.label_ticket == ticket.to_json()
    assert parsed.options["label_ticket"] == ticket.to_json()

    explicit = read_file(vasprun, ReadOptions(material_key="mine"))
    assert explicit.trajectories[0].material_key == "mine"
    assert explicit.label_ticket is None


def test_a_label_folder_gives_ingest_one_calculation_its_last(tmp_path: Path) -> None:
    from atlas2d.io.files import LABEL_TICKET, expand_paths

    folder = tmp_path / "labels" / "iter1" / "mos2"
    folder.mkdir(parents=True)
    (folder / LABEL_TICKET).write_text("{}")
    for name in (
        "INCAR",
        "OUTCAR",
        "vasprun.xml.relax1.gz",
        "vasprun.xml.relax2.gz",
        "custodian.json",
    ):
        (folder / name).write_text("")
    other = tmp_path / "labels" / "notes.json"
    other.write_text("{}")
    assert expand_paths([tmp_path / "labels"]) == [other, folder / "vasprun.xml.relax2.gz"]
    (folder / "vasprun.xml.gz").write_text("")  # the final run, as custodian leaves it
    assert expand_paths([tmp_path / "labels"])[-1] == folder / "vasprun.xml.gz"
    for path in folder.glob("vasprun*"):
        path.unlink()
    assert expand_paths([tmp_path / "labels"])[-1] == folder / "OUTCAR"
