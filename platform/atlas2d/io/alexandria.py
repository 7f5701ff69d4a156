"""Alexandria JSON: geometry-optimisation paths and convex-hull entries.

Trajectories: ``{mat_id: [trajectory, ...]}``, each trajectory
``{"functional": ..., "PREC": ..., "ENMAX": ..., "steps": [{"structure": <pymatgen
Structure dict>, "energy": <total eV>, "forces": N×3, "stress": 3×3}, ...]}``; stress
in VASP's kBar and sign unless told otherwise.

Convex hull: ``{"entries": [<ComputedStructureEntry dict>, ...]}`` with
``data.mat_id``; ``energy`` is uncorrected and ``correction`` the total correction.

Files are decoded with msgspec into typed structs that keep only the fields used:
files of hundreds of MB hold tens of millions of JSON values, and building a Python
dict for every site made decoding several times slower. A file that strict JSON
refuses (``NaN`` written by Python's json module) is decoded again with Python's
json so that the bad value can be named by record, step and field.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np

from atlas2d.analysis.units import StressUnit, stress_to_ev_a3
from atlas2d.io.records import EnergyEntryRecord, MaterialRecord, Trajectory
from atlas2d.io.validate import atomic_number, bad_record


class _Species(msgspec.Struct, gc=False):
    element: str


class _Site(msgspec.Struct, gc=False):
    species: list[_Species]
    xyz: list[float] | None = None
    abc: list[float] | None = None


class _Lattice(msgspec.Struct, gc=False):
    matrix: list[list[float]]


class _Structure(msgspec.Struct, gc=False):
    lattice: _Lattice
    sites: list[_Site]


class _Step(msgspec.Struct, gc=False):
    structure: _Structure
    energy: Any = None
    forces: Any = None
    stress: Any = None


class _Entry(msgspec.Struct, gc=False):
    structure: _Structure
    energy: Any = None
    correction: Any = None
    energy_adjustments: Any = None
    data: dict[str, Any] = {}


class _HullFile(msgspec.Struct, gc=False):
    entries: list[_Entry]


_TrajectoryFile = dict[str, list[dict[str, Any]]]


def _decode(content: bytes, schema: Any, path: str) -> Any:
    """Decode ``content`` into ``schema``; JSON with NaN/Infinity goes through Python's json.

    Raises:
        InvalidInput: the file is not JSON (e.g. truncated) or does not fit the schema.
    """
    try:
        return msgspec.json.decode(content, type=schema)
    except msgspec.ValidationError as err:
        raise bad_record(path, "", "json", f"does not have the expected layout: {err}") from err
    except msgspec.DecodeError:
        pass  # maybe NaN/Infinity, which Python's json reads; else truly malformed
    try:
        document = json.loads(content)
    except ValueError as err:
        raise bad_record(
            path, "", "json", f"not valid JSON, the file may be truncated ({err})"
        ) from err
    try:
        return msgspec.convert(document, type=schema)
    except msgspec.ValidationError as err:
        raise bad_record(path, "", "json", f"does not have the expected layout: {err}") from err


def _steps(value: Any, path: str, record: str) -> list[_Step]:
    """A trajectory's steps as typed structs (``value`` is raw JSON or Python lists)."""
    try:
        if isinstance(value, msgspec.Raw):
            return msgspec.json.decode(value, type=list[_Step])
        return msgspec.convert(value, type=list[_Step])
    except (msgspec.ValidationError, msgspec.DecodeError) as err:
        raise bad_record(path, record, "steps", f"malformed: {err}") from err


def _site_arrays(
    structure: _Structure, path: str, record: str, step: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(cell (3, 3) Å, Cartesian positions (N, 3) Å, element symbols) of a structure."""
    cell = np.asarray(structure.lattice.matrix, dtype=np.float64)
    sites = structure.sites
    if any(len(site.species) != 1 for site in sites):
        raise bad_record(
            path,
            record,
            "structure.sites",
            "a site is disordered (several species); atlas2d stores ordered structures",
            step=step,
        )
    symbols = [site.species[0].element for site in sites]
    try:
        if all(site.xyz is not None for site in sites):
            positions = np.asarray([site.xyz for site in sites], dtype=np.float64)
        else:
            positions = np.asarray([site.abc for site in sites], dtype=np.float64) @ cell
    except (ValueError, TypeError) as err:
        raise bad_record(
            path, record, "structure.sites", f"coordinates are malformed ({err})", step=step
        ) from err
    if cell.shape != (3, 3) or positions.shape != (len(symbols), 3):
        raise bad_record(
            path, record, "structure", "lattice or site coordinates have the wrong shape", step=step
        )
    return cell, positions, symbols


def _array(
    value: Any, shape: tuple[int, ...], path: str, record: str, field: str, step: int
) -> np.ndarray:
    if value is None:
        raise bad_record(path, record, field, "missing", step=step)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise bad_record(
            path,
            record,
            field,
            f"expected shape {shape}, got a ragged or non-numeric array",
            step=step,
        ) from err
    if array.shape != shape:
        raise bad_record(
            path, record, field, f"expected shape {shape}, got {array.shape}", step=step
        )
    return array


def _stacked(
    values: list[Any], shape: tuple[int, ...], path: str, record: str, field: str
) -> np.ndarray:
    """Stack per-step arrays into (F, *shape); on failure, name the first bad step."""
    try:
        array = np.asarray(values, dtype=np.float64)
        if array.shape == (len(values), *shape):
            return array
    except (ValueError, TypeError):
        pass
    for step, value in enumerate(values):
        _array(value, shape, path, record, field, step)
    raise bad_record(path, record, field, f"expected shape {shape} in every step")


def _number(value: Any, path: str, record: str, field: str, step: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_record(path, record, field, f"expected a number, got {value!r}", step=step)
    return float(value)


def _trajectory(
    mat_id: str, sequence: int, run: dict[str, Any], path: str, stress_unit: StressUnit
) -> Trajectory:
    record = f"mat_id {mat_id}, trajectory {sequence}"
    if "steps" not in run:
        raise bad_record(path, record, "steps", "missing: a trajectory needs a list of steps")
    steps = _steps(run["steps"], path, record)
    if not steps:
        raise bad_record(path, record, "steps", "the trajectory has no step")
    _, _, symbols = _site_arrays(steps[0].structure, path, record, 0)
    n_sites = len(symbols)
    # Atom order is fixed within a relaxation: species are read from the first and last
    # steps, site counts are checked at every step (by the stacking below).
    if _site_arrays(steps[-1].structure, path, record, len(steps) - 1)[2] != symbols:
        raise bad_record(
            path, record, "structure.sites", "species differ from step 0", step=len(steps) - 1
        )
    try:
        cells = np.array([item.structure.lattice.matrix for item in steps], dtype=np.float64)
        positions = np.array(
            [[site.xyz for site in item.structure.sites] for item in steps], dtype=np.float64
        )
        if cells.shape != (len(steps), 3, 3) or positions.shape != (len(steps), n_sites, 3):
            raise ValueError("shapes")
    except (ValueError, TypeError):  # fractional-only sites, or a malformed step: go step by step
        per_step = [
            _site_arrays(item.structure, path, record, step) for step, item in enumerate(steps)
        ]
        for step, (_, pos, _) in enumerate(per_step):
            if len(pos) != n_sites:
                raise bad_record(
                    path,
                    record,
                    "structure.sites",
                    f"expected {n_sites} sites, got {len(pos)}",
                    step=step,
                ) from None
        cells = np.array([c for c, _, _ in per_step])
        positions = np.array([p for _, p, _ in per_step])
    energies = [
        _number(item.energy, path, record, "energy", step) for step, item in enumerate(steps)
    ]
    forces = _stacked([item.forces for item in steps], (n_sites, 3), path, record, "forces")
    raw_stresses = [item.stress for item in steps]
    stresses = None
    if all(s is not None for s in raw_stresses):
        stresses = stress_to_ev_a3(
            _stacked(raw_stresses, (3, 3), path, record, "stress"), stress_unit
        )
    species = np.array(
        [atomic_number(s, path, record, "structure.sites", i) for i, s in enumerate(symbols)]
    )
    parameters = {
        key: msgspec.json.decode(value) if isinstance(value, msgspec.Raw) else value
        for key, value in run.items()
        if key != "steps"
    }
    return Trajectory(
        material_key=mat_id,
        species=species,
        cells=cells,
        positions=positions,
        energies=np.array(energies),
        forces=forces,
        stresses=stresses,
        parameters=parameters,
        record=record,
        sequence=sequence,
    )


def read_alexandria_trajectories(
    content: bytes, path: str, stress_unit: StressUnit = StressUnit.VASP_KBAR
) -> list[Trajectory]:
    """Every trajectory of an Alexandria geometry-optimisation file.

    Raises:
        InvalidInput: invalid JSON, or a record with a missing or malformed field.
    """
    try:
        document = msgspec.json.decode(content, type=dict[str, list[dict[str, msgspec.Raw]]])
    except (msgspec.ValidationError, msgspec.DecodeError):
        document = _decode(content, _TrajectoryFile, path)
    return [
        _trajectory(str(mat_id), sequence, run, path, stress_unit)
        for mat_id, runs in document.items()
        for sequence, run in enumerate(runs)
    ]


def _correction(entry: _Entry, path: str, record: str) -> float:
    if entry.correction is not None:
        return _number(entry.correction, path, record, "correction")
    if entry.energy_adjustments:
        from monty.json import MontyDecoder

        decoder = MontyDecoder()
        return float(sum(decoder.process_decoded(adj).value for adj in entry.energy_adjustments))
    return 0.0


def read_alexandria_hull(
    content: bytes, path: str
) -> tuple[list[EnergyEntryRecord], list[MaterialRecord]]:
    """Entries of an Alexandria convex-hull file, with what their ``data`` says of each material.

    Raises:
        InvalidInput: invalid JSON, an entry without ``data.mat_id``, energy or structure.
    """
    document = _decode(content, _HullFile, path)
    entries, materials = [], []
    for index, entry in enumerate(document.entries):
        data = entry.data
        if not data.get("mat_id"):
            raise bad_record(
                path, f"entry {index}", "data.mat_id", "missing; every entry needs its material id"
            )
        mat_id = str(data["mat_id"])
        record = f"entry {index} (mat_id {mat_id})"
        cell, positions, symbols = _site_arrays(entry.structure, path, record, None)
        species = np.array(
            [atomic_number(s, path, record, "structure.sites", i) for i, s in enumerate(symbols)]
        )
        entries.append(
            EnergyEntryRecord(
                material_key=mat_id,
                species=species,
                cell=cell,
                positions=positions,
                energy=_number(entry.energy, path, record, "energy"),
                correction=_correction(entry, path, record),
                data=data,
                record=record,
            )
        )
        dimensionality = data.get("dimensionality")
        spg = data.get("spg")
        materials.append(
            MaterialRecord(
                key=mat_id,
                dimensionality=int(dimensionality) if dimensionality in (0, 1, 2, 3) else None,
                prototype=data.get("prototype_id"),
                spacegroup_number=int(spg) if isinstance(spg, int) else None,
            )
        )
    return entries, materials
