"""Alexandria JSON: geometry-optimisation paths and convex-hull entries.

Trajectories: ``{mat_id: [trajectory, ...]}``, each trajectory
``{"functional": ..., "PREC": ..., "ENMAX": ..., "steps": [{"structure": <pymatgen
Structure dict>, "energy": <total eV>, "forces": N×3, "stress": 3×3}, ...]}``; stress
in VASP's kBar and sign unless told otherwise.

Convex hull: ``{"entries": [<ComputedStructureEntry dict>, ...]}`` with
``data.mat_id``; ``energy`` is uncorrected and ``correction`` the total correction.
Structures are read straight from the dicts (no pymatgen objects) for speed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from atlas2d.analysis.units import StressUnit, stress_to_ev_a3
from atlas2d.io.records import EnergyEntryRecord, MaterialRecord, Trajectory
from atlas2d.io.validate import atomic_number, bad_record


def _load_json(content: bytes, path: str) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as err:
        raise bad_record(
            path, "", "json", f"not valid JSON, the file may be truncated ({err})"
        ) from err


def _site_symbol(site: dict[str, Any]) -> str:
    species = site.get("species")
    if species:
        return str(species[0]["element"])
    return str(site["label"])


def _structure(
    structure: Any, path: str, record: str, step: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(cell (3, 3) Å, Cartesian positions (N, 3) Å, symbols) of a Structure dict."""
    try:
        cell = np.asarray(structure["lattice"]["matrix"], dtype=np.float64)
        sites = structure["sites"]
        symbols = [_site_symbol(site) for site in sites]
        if sites and "xyz" in sites[0]:
            positions = np.asarray([site["xyz"] for site in sites], dtype=np.float64)
        else:
            positions = np.asarray([site["abc"] for site in sites], dtype=np.float64) @ cell
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise bad_record(path, record, "structure", f"not a pymatgen Structure dict ({err!r})", step=step) from err
    if cell.shape != (3, 3) or positions.shape != (len(symbols), 3):
        raise bad_record(path, record, "structure", "lattice or site coordinates have the wrong shape", step=step)
    return cell, positions, symbols


def _array(value: Any, shape: tuple[int, ...], path: str, record: str, field: str, step: int) -> np.ndarray:
    if value is None:
        raise bad_record(path, record, field, "missing", step=step)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise bad_record(path, record, field, f"expected shape {shape}, got a ragged or non-numeric array", step=step) from err
    if array.shape != shape:
        raise bad_record(path, record, field, f"expected shape {shape}, got {array.shape}", step=step)
    return array


def _trajectory(
    mat_id: str, sequence: int, run: Any, path: str, stress_unit: StressUnit
) -> Trajectory:
    record = f"mat_id {mat_id}, trajectory {sequence}"
    if not isinstance(run, dict) or not isinstance(run.get("steps"), list):
        raise bad_record(path, record, "steps", "expected a trajectory object with a list of steps")
    steps = run["steps"]
    if not steps:
        raise bad_record(path, record, "steps", "the trajectory has no step")
    cells, positions, energies, forces, stresses = [], [], [], [], []
    first_symbols: list[str] = []
    for step, item in enumerate(steps):
        cell, pos, symbols = _structure(item.get("structure"), path, record, step)
        if step == 0:
            first_symbols = symbols
        elif symbols != first_symbols:
            raise bad_record(path, record, "structure.sites", "species differ from step 0", step=step)
        n_sites = len(symbols)
        energy = item.get("energy")
        if energy is None or isinstance(energy, bool) or not isinstance(energy, (int, float)):
            raise bad_record(path, record, "energy", f"expected a number, got {energy!r}", step=step)
        cells.append(cell)
        positions.append(pos)
        energies.append(float(energy))
        forces.append(_array(item.get("forces"), (n_sites, 3), path, record, "forces", step))
        stress = item.get("stress")
        stresses.append(None if stress is None else _array(stress, (3, 3), path, record, "stress", step))
    species = np.array(
        [atomic_number(s, path, record, "structure.sites", i) for i, s in enumerate(first_symbols)]
    )
    has_stress = all(s is not None for s in stresses)
    parameters = {k: v for k, v in run.items() if k != "steps"}
    return Trajectory(
        material_key=mat_id,
        species=species,
        cells=np.array(cells),
        positions=np.array(positions),
        energies=np.array(energies),
        forces=np.array(forces),
        stresses=stress_to_ev_a3(np.array(stresses), stress_unit) if has_stress else None,
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
    document = _load_json(content, path)
    if not isinstance(document, dict):
        raise bad_record(path, "", "json", "expected an object {mat_id: [trajectory, ...]}")
    trajectories = []
    for mat_id, runs in document.items():
        if not isinstance(runs, list):
            runs = [runs]
        for sequence, run in enumerate(runs):
            trajectories.append(_trajectory(str(mat_id), sequence, run, path, stress_unit))
    return trajectories


def _number(value: Any, path: str, record: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_record(path, record, field, f"expected a number, got {value!r}")
    return float(value)


def _correction(entry: dict[str, Any], path: str, record: str) -> float:
    if "correction" in entry:
        return _number(entry["correction"], path, record, "correction")
    if entry.get("energy_adjustments"):
        from pymatgen.entries.computed_entries import ComputedStructureEntry

        return float(ComputedStructureEntry.from_dict(entry).correction)
    return 0.0


def read_alexandria_hull(content: bytes, path: str) -> tuple[list[EnergyEntryRecord], list[MaterialRecord]]:
    """Entries of an Alexandria convex-hull file, with what their ``data`` says of each material.

    Raises:
        InvalidInput: invalid JSON, an entry without ``data.mat_id``, energy or structure.
    """
    document = _load_json(content, path)
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise bad_record(path, "", "entries", "expected an object with a list 'entries'")
    entries, materials = [], []
    for index, entry in enumerate(document["entries"]):
        record = f"entry {index}"
        data = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(data, dict) or not data.get("mat_id"):
            raise bad_record(path, record, "data.mat_id", "missing; every entry needs its material id")
        mat_id = str(data["mat_id"])
        record = f"entry {index} (mat_id {mat_id})"
        cell, positions, symbols = _structure(entry.get("structure"), path, record, None)
        species = np.array(
            [atomic_number(s, path, record, "structure.sites", i) for i, s in enumerate(symbols)]
        )
        entries.append(
            EnergyEntryRecord(
                material_key=mat_id,
                species=species,
                cell=cell,
                positions=positions,
                energy=_number(entry.get("energy"), path, record, "energy"),
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
