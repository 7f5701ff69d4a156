"""VASP readers: every ionic step of a geometry optimisation.

vasprun.xml is parsed directly (ElementTree ``iterparse``) so that every value can be
checked and named in errors. OUTCAR goes through ASE's reader. Stress leaves this
module in eV/Å³ with ASE's sign (VASP writes kBar, positive = compressive).
"""

from __future__ import annotations

import io
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from atlas2d.analysis.units import KBAR_PER_EV_PER_A3, StressUnit, stress_to_ev_a3
from atlas2d.io.records import Trajectory
from atlas2d.io.validate import atomic_number, bad_record

if TYPE_CHECKING:
    from ase import Atoms

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
    except ValueError:
        return raw


def _varray(parent: ET.Element, name: str) -> ET.Element | None:
    for child in parent.iter("varray"):
        if child.get("name") == name:
            return child
    return None


def _matrix(
    element: ET.Element | None, path: str, record: str, field: str, step: int
) -> np.ndarray:
    if element is None:
        raise bad_record(path, record, field, "missing from the ionic step", step=step)
    try:
        return np.array([[float(x) for x in (v.text or "").split()] for v in element.findall("v")])
    except ValueError as err:
        raise bad_record(path, record, field, f"not a number ({err})", step=step) from err


def _species(atominfo: ET.Element, path: str, record: str) -> np.ndarray:
    for array in atominfo.iter("array"):
        if array.get("name") == "atoms":
            symbols = [rc.find("c").text or "" for rc in array.iter("rc")]  # type: ignore[union-attr]
            return np.array(
                [atomic_number(s, path, record, "atominfo/atoms", i) for i, s in enumerate(symbols)]
            )
    raise bad_record(path, record, "atominfo", "the atom list is missing")


def read_vasprun(content: bytes, path: str, material_key: str) -> Trajectory:
    """Every ionic step of a vasprun.xml.

    Args:
        content: the decompressed file.
        path: file name for messages.
        material_key: key of the material this relaxation belongs to.

    Raises:
        InvalidInput: truncated XML, a non-element species, a missing or non-numeric value.
    """
    record = f"material {material_key}"
    incar: dict[str, Any] = {}
    species: np.ndarray | None = None
    cells, positions, forces, stresses, energies = [], [], [], [], []
    step = 0
    try:
        for _, element in ET.iterparse(io.BytesIO(content), events=("end",)):
            if element.tag == "incar":
                incar = {i.get("name"): _parse_incar_value(i) for i in element.findall("i")}
            elif element.tag == "atominfo":
                species = _species(element, path, record)
            elif element.tag == "calculation":
                pstress = float(incar.get("PSTRESS", 0.0) or 0.0)
                cell, frac, force, stress, energy = _ionic_step(
                    element, path, record, step, pstress
                )
                cells.append(cell)
                positions.append(frac @ cell)
                forces.append(force)
                stresses.append(stress)
                energies.append(energy)
                step += 1
                element.clear()
    except ET.ParseError as err:
        raise bad_record(
            path,
            record,
            "xml",
            f"the XML is truncated or malformed after {step} complete ionic steps ({err}); "
            "copy the file again once VASP has finished",
        ) from err
    if species is None:
        raise bad_record(path, record, "atominfo", "the atom list is missing")
    if not energies:
        raise bad_record(path, record, "calculation", "the file holds no ionic step")
    has_stress = all(s is not None for s in stresses)
    nsw = int(incar.get("NSW", 0) or 0)
    return Trajectory(
        material_key=material_key,
        species=species,
        cells=np.array(cells),
        positions=np.array(positions),
        energies=np.array(energies),
        forces=np.array(forces),
        stresses=stress_to_ev_a3(np.array(stresses), StressUnit.VASP_KBAR) if has_stress else None,
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
    calc: ET.Element, path: str, record: str, step: int, pstress_kbar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]:
    structure = calc.find("structure")
    if structure is None:
        raise bad_record(path, record, "structure", "missing from the ionic step", step=step)
    cell = _matrix(_varray(structure, "basis"), path, record, "basis", step)
    frac = _matrix(_varray(structure, "positions"), path, record, "positions", step)
    force = _matrix(_varray(calc, "forces"), path, record, "forces", step)
    stress_element = _varray(calc, "stress")
    stress = (
        None if stress_element is None else _matrix(stress_element, path, record, "stress", step)
    )
    energy = _sigma0_energy(calc, path, record, step, np.linalg.det(cell), pstress_kbar)
    if force.shape != frac.shape:
        raise bad_record(
            path, record, "forces", f"expected shape {frac.shape}, got {force.shape}", step=step
        )
    return cell, frac, force, stress, energy


def read_outcar(content: bytes, path: str, material_key: str) -> Trajectory:
    """Every ionic step of an OUTCAR (through ASE's ``vasp-out`` reader).

    Raises:
        InvalidInput: ASE cannot parse the file, or a step lacks energy or forces.
    """
    from ase.io import read

    record = f"material {material_key}"
    try:
        # ASE's reader wants a named file; hand it the decompressed text in a scratch folder.
        with tempfile.TemporaryDirectory() as scratch:
            outcar = Path(scratch) / "OUTCAR"
            outcar.write_bytes(content)
            # index=":" always gives a list (ASE annotates Atoms | list[Atoms]).
            images = cast("list[Atoms]", read(outcar, index=":", format="vasp-out"))
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
    try:
        stresses = np.array([a.get_stress(voigt=False) for a in images])  # eV/Å³, ASE sign
    except Exception:
        stresses = None
    return Trajectory(
        material_key=material_key,
        species=np.asarray(species),
        cells=np.array([a.cell.array for a in images]),
        positions=np.array([a.positions for a in images]),
        energies=energies,
        forces=forces,
        stresses=stresses,
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
