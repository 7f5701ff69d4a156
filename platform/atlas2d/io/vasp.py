"""VASP readers: every ionic step of a geometry optimisation.

vasprun.xml is parsed directly (ElementTree ``iterparse``) so that every value can be
checked and named in errors. OUTCAR goes through ASE's reader. Stress leaves this
module in eV/Å³ with ASE's sign (VASP writes kBar, positive = compressive).
"""

from __future__ import annotations

import io
import math
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from xml.parsers import expat

import numpy as np

from atlas2d.analysis.units import KBAR_PER_EV_PER_A3, StressUnit, stress_to_ev_a3
from atlas2d.errors import InvalidInput
from atlas2d.io.records import Trajectory
from atlas2d.io.validate import atomic_number, bad_record, shown, stress_at_every_step

if TYPE_CHECKING:
    from ase import Atoms


class Readable(Protocol):
    """A binary stream: what ``read_vasprun`` and ``read_outcar`` take besides bytes."""

    def read(self, size: int = -1, /) -> bytes | None: ...


ENERGY_TAG = "e_0_energy"
"""Energy per ionic step: VASP's ``energy(sigma->0)``, as ASE's readers report it."""


def _parse_incar_value(element: ET.Element) -> Any:
    raw = (element.text or "").strip()
    kind = element.get("type", "float")
    try:
        if kind == "int":
            return int(raw)
        if kind == "logical":
            return raw.upper().startswith(("T", ".T"))
        if kind == "string":
            return raw
        values = [float(v) for v in raw.split()]
        return values[0] if len(values) == 1 else values
    except ValueError:  # kept as written; the tags atlas2d uses are checked when used
        return raw


def _incar(element: ET.Element) -> dict[str, Any]:
    return {i.get("name", ""): _parse_incar_value(i) for i in element.findall("i") if i.get("name")}


def _incar_integer(incar: dict[str, Any], tag: str, path: str, record: str) -> int:
    """An integer INCAR tag (0 when absent); a float is taken when it is whole."""
    value = incar.get(tag, 0)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_record(
            path, record, f"incar.{tag}", f"expected an integer, got {shown(value)}; fix the INCAR"
        )
    return value


def _incar_number(incar: dict[str, Any], tag: str, path: str, record: str) -> float:
    """A finite real-number INCAR tag (0 when absent)."""
    value = incar.get(tag, 0.0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if math.isfinite(number):
            return number
    raise bad_record(
        path, record, f"incar.{tag}", f"expected a number, got {shown(value)}; fix the INCAR"
    )


def _varray(parent: ET.Element, name: str) -> ET.Element | None:
    for child in parent.iter("varray"):
        if child.get("name") == name:
            return child
    return None


def _matrix(
    element: ET.Element | None, rows: int, path: str, record: str, field: str, step: int
) -> np.ndarray:
    """A ``<varray>`` of ``rows`` rows of 3 numbers, as a (rows, 3) array."""
    if element is None:
        raise bad_record(path, record, field, "missing from the ionic step", step=step)
    values = [(v.text or "").split() for v in element.findall("v")]
    wrong = [i for i, row in enumerate(values) if len(row) != 3]
    if len(values) != rows or wrong:
        got = f"row {wrong[0]} has {len(values[wrong[0]])}" if wrong else f"got {len(values)} rows"
        raise bad_record(
            path, record, field, f"expected {rows} rows of 3 numbers, {got}", step=step
        )
    try:
        return np.array(values, dtype=np.float64)
    except ValueError as err:
        raise bad_record(path, record, field, f"not a number ({err})", step=step) from err


def _species(atominfo: ET.Element, path: str, record: str) -> np.ndarray:
    for array in atominfo.iter("array"):
        if array.get("name") == "atoms":
            symbols = []
            for rc in array.iter("rc"):
                column = rc.find("c")
                symbols.append("" if column is None else column.text or "")
            if not symbols:
                raise bad_record(path, record, "atominfo/atoms", "the atom list is empty")
            return np.array(
                [atomic_number(s, path, record, "atominfo/atoms", i) for i, s in enumerate(symbols)]
            )
    raise bad_record(path, record, "atominfo", "the atom list is missing")


class _DoctypeRefused:
    """A source for ``iterparse`` that refuses a document type declaration.

    VASP never writes one, and its entities are what XML attacks are made of: external
    entities read other files, nested ones expand without bound.
    """

    def __init__(self, source: Readable, path: str, record: str) -> None:
        self._source, self._path, self._record = source, path, record
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size) or b""
        window = self._tail + chunk  # a declaration may straddle two chunks
        if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
            raise bad_record(
                self._path,
                self._record,
                "xml",
                "the file declares a document type or entities (<!DOCTYPE>, <!ENTITY>), "
                "which VASP never writes and atlas2d does not expand (they can read other "
                "files or grow without bound); remove the declaration",
            )
        self._tail = window[-8:]
        return chunk


def _xml_problem(err: ET.ParseError, steps: int) -> str:
    if getattr(err, "code", None) == expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY]:
        return (
            f"the XML refers to an entity it does not define ({err}); atlas2d reads no "
            "external entity: write the value itself"
        )
    return (
        f"the XML is truncated or malformed after {steps} complete ionic steps ({err}); "
        "copy the file again once VASP has finished"
    )


def read_vasprun(content: bytes | Readable, path: str, material_key: str) -> Trajectory:
    """Every ionic step of a vasprun.xml, parsed as it is read.

    Args:
        content: the decompressed file, or a binary stream of it.
        path: file name for messages.
        material_key: key of the material this relaxation belongs to.

    Raises:
        InvalidInput: truncated XML, a DOCTYPE, a non-element species, a missing,
            misshapen or non-numeric value, a step without stress where others have one.
    """
    record = f"material {material_key}"
    stream = io.BytesIO(content) if isinstance(content, bytes) else content
    incar: dict[str, Any] = {}
    species: np.ndarray | None = None
    pstress_kbar: float | None = None
    cells, positions, forces, stresses, energies = [], [], [], [], []
    step = 0
    try:
        for _, element in ET.iterparse(_DoctypeRefused(stream, path, record), events=("end",)):
            if element.tag == "incar":
                incar = _incar(element)
            elif element.tag == "atominfo":
                species = _species(element, path, record)
            elif element.tag == "calculation":
                if species is None:
                    raise bad_record(
                        path, record, "atominfo", "the atom list is missing before the ionic steps"
                    )
                if pstress_kbar is None:
                    pstress_kbar = _incar_number(incar, "PSTRESS", path, record)
                cell, frac, force, stress, energy = _ionic_step(
                    element, path, record, step, pstress_kbar, len(species)
                )
                cells.append(cell)
                positions.append(frac @ cell)
                forces.append(force)
                stresses.append(stress)
                energies.append(energy)
                step += 1
                element.clear()
    except ET.ParseError as err:
        raise bad_record(path, record, "xml", _xml_problem(err, step)) from err
    if species is None:
        raise bad_record(path, record, "atominfo", "the atom list is missing")
    if not energies:
        raise bad_record(path, record, "calculation", "the file holds no ionic step")
    nsw = _incar_integer(incar, "NSW", path, record)
    return Trajectory(
        material_key=material_key,
        species=species,
        cells=np.array(cells),
        positions=np.array(positions),
        energies=np.array(energies),
        forces=np.array(forces),
        stresses=None
        if (present := stress_at_every_step(stresses, path, record)) is None
        else stress_to_ev_a3(np.array(present), StressUnit.VASP_KBAR),
        parameters={"incar": incar, "energy": ENERGY_TAG},
        record=record,
        # pymatgen's rule (Vasprun.converged_ionic): stopped before NSW steps.
        converged=(nsw <= 1 or len(energies) < nsw) if incar else None,
    )


def _energies(block: ET.Element | None) -> dict[str, str]:
    if block is None:
        return {}
    return {item.get("name", ""): item.text or "" for item in block.findall("i")}


def _sigma0_energy(
    calc: ET.Element, path: str, record: str, step: int, volume: float, pstress_kbar: float
) -> float:
    """Energy(sigma→0) of an ionic step, eV.

    VASP 5 writes a wrong ``e_0_energy`` in the step's own energy block (often 0), so,
    as ASE does, take the step's ``e_fr_energy``, remove the PSTRESS·V term VASP adds
    to it, and add the last SCF step's ``e_0_energy − e_fr_energy``.
    """
    step_energies = _energies(calc.find("energy"))
    scsteps = calc.findall("scstep")
    last_scf = _energies(scsteps[-1].find("energy")) if scsteps else {}
    try:
        free = float(step_energies["e_fr_energy"])
        smearing = (
            float(last_scf["e_0_energy"]) - float(last_scf["e_fr_energy"]) if last_scf else 0.0
        )
    except KeyError as err:
        raise bad_record(
            path, record, str(err.args[0]), "missing from the ionic step", step=step
        ) from err
    except ValueError as err:
        raise bad_record(path, record, ENERGY_TAG, f"not a number ({err})", step=step) from err
    return free - pstress_kbar / KBAR_PER_EV_PER_A3 * volume + smearing


def _ionic_step(
    calc: ET.Element, path: str, record: str, step: int, pstress_kbar: float, n_sites: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]:
    structure = calc.find("structure")
    if structure is None:
        raise bad_record(path, record, "structure", "missing from the ionic step", step=step)
    cell = _matrix(_varray(structure, "basis"), 3, path, record, "basis", step)
    frac = _matrix(_varray(structure, "positions"), n_sites, path, record, "positions", step)
    force = _matrix(_varray(calc, "forces"), n_sites, path, record, "forces", step)
    stress_element = _varray(calc, "stress")
    stress = (
        None if stress_element is None else _matrix(stress_element, 3, path, record, "stress", step)
    )
    energy = _sigma0_energy(calc, path, record, step, np.linalg.det(cell), pstress_kbar)
    return cell, frac, force, stress, energy


def read_outcar(content: bytes | Readable, path: str, material_key: str) -> Trajectory:
    """Every ionic step of an OUTCAR (through ASE's ``vasp-out`` reader).

    Args:
        content: the decompressed file, or a binary stream of it.
        path: file name for messages.
        material_key: key of the material this relaxation belongs to.

    Raises:
        InvalidInput: ASE cannot parse the file, a step lacks energy or forces, or some
            steps have a stress and others not.
    """
    from ase.io import read

    record = f"material {material_key}"
    try:
        # ASE's reader wants a named file; hand it the decompressed text in a scratch folder.
        with tempfile.TemporaryDirectory() as scratch:
            outcar = Path(scratch) / "OUTCAR"
            with outcar.open("wb") as copy:
                if isinstance(content, bytes):
                    copy.write(content)
                else:  # streamed: the decompressed file is never held whole
                    while chunk := content.read(256 << 10):
                        copy.write(chunk)
            # index=":" always gives a list (ASE annotates Atoms | list[Atoms]).
            images = cast("list[Atoms]", read(outcar, index=":", format="vasp-out"))
    except InvalidInput:
        raise  # over the size limit, or a corrupt compressed stream
    except Exception as err:
        raise bad_record(path, record, "OUTCAR", f"cannot be parsed ({err})") from err
    if not images:
        raise bad_record(path, record, "OUTCAR", "the file holds no ionic step")
    species = images[0].numbers
    if (species < 1).any():
        raise bad_record(path, record, "species", "a species is not a chemical element")
    try:
        energies = np.array([a.get_potential_energy() for a in images])
        forces = np.array([a.get_forces() for a in images])
    except Exception as err:
        raise bad_record(path, record, "energy/forces", f"missing in a step ({err})") from err
    stresses = []
    for atoms in images:
        try:
            stresses.append(atoms.get_stress(voigt=False))  # eV/Å³, ASE sign
        except Exception:  # this step printed no stress: ASE has none to give
            stresses.append(None)
    return Trajectory(
        material_key=material_key,
        species=np.asarray(species),
        cells=np.array([a.cell.array for a in images]),
        positions=np.array([a.positions for a in images]),
        energies=energies,
        forces=forces,
        stresses=None
        if (present := stress_at_every_step(stresses, path, record)) is None
        else np.array(present),
        parameters={"energy": ENERGY_TAG},
        record=record,
    )


def default_material_key(path: Path) -> str:
    """Key of a VASP run: its folder's name for ``…/NAME/vasprun.xml`` or ``OUTCAR``,
    else the file name without extensions (``Fe2O2_relax_vasprun.xml.gz`` → ``Fe2O2_relax``)."""
    name = path.name.split(".")[0]
    if name.lower() in ("vasprun", "outcar") and path.parent.name:
        return path.resolve().parent.name
    for suffix in ("_vasprun", "_OUTCAR", "_outcar", "-vasprun", "-OUTCAR"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
