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

import io
import json
import re
from collections.abc import Generator
from typing import Annotated, Any

import msgspec
import numpy as np

from atlas2d.analysis.units import StressUnit, stress_to_ev_a3
from atlas2d.io.json_stream import Readable, object_members
from atlas2d.io.records import EnergyEntryRecord, MaterialRecord, Trajectory
from atlas2d.io.validate import (
    atomic_number,
    bad_record,
    check_key,
    shown,
    stress_at_every_step,
)
from atlas2d.read_ahead import read_ahead

# Numbers are typed as float: msgspec then refuses strings ("1.5"), booleans and
# integers beyond float range where a number is expected, naming the place.
_Vector = list[float]
_Matrix = list[list[float]]


class _Species(msgspec.Struct, gc=False):
    element: str


class _Site(msgspec.Struct, gc=False):
    # One species per site: atlas2d stores ordered structures.
    species: Annotated[list[_Species], msgspec.Meta(min_length=1, max_length=1)]
    xyz: _Vector | None = None
    abc: _Vector | None = None


class _Lattice(msgspec.Struct, gc=False):
    matrix: _Matrix


class _Structure(msgspec.Struct, gc=False):
    lattice: _Lattice
    sites: list[_Site]


class _Step(msgspec.Struct, gc=False):
    structure: _Structure
    energy: Any = None  # checked by _number, to name a missing energy precisely
    forces: _Matrix | None = None
    stress: _Matrix | None = None


class _Entry(msgspec.Struct, gc=False):
    structure: _Structure
    energy: Any = None
    correction: Any = None
    energy_adjustments: Any = None
    data: dict[str, Any] = {}


class _HullFile(msgspec.Struct, gc=False):
    entries: list[_Entry]


_TrajectoryFile = dict[str, list[dict[str, Any]]]


_SURROGATE = "a text holds a lone surrogate (half of a UTF-16 pair), which is not valid Unicode"


def _layout_problem(err: msgspec.ValidationError) -> str:
    """msgspec's message, with its JSON path (``$[2].forces[1][0]``) kept as is."""
    return f"does not have the expected layout: {err}"


def _decode(content: bytes, schema: Any, path: str) -> Any:
    """Decode ``content`` into ``schema``; JSON with NaN/Infinity goes through Python's json.

    Raises:
        InvalidInput: the file is not JSON (e.g. truncated), not UTF-8, nested too
            deeply, or does not fit the schema.
    """
    try:
        return msgspec.json.decode(content, type=schema)
    except msgspec.ValidationError as err:
        raise bad_record(path, "", "json", _layout_problem(err)) from err
    except msgspec.DecodeError:
        pass  # maybe NaN/Infinity, which Python's json reads; else truly malformed
    try:
        document = json.loads(content)
    except UnicodeDecodeError as err:
        raise bad_record(
            path, "", "json", f"not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from err
    except RecursionError as err:
        raise bad_record(path, "", "json", "nested too deeply to be an atlas2d input") from err
    except ValueError as err:
        raise bad_record(
            path, "", "json", f"not valid JSON, the file may be truncated ({err})"
        ) from err
    try:
        return msgspec.convert(document, type=schema)
    except msgspec.ValidationError as err:
        raise bad_record(path, "", "json", _layout_problem(err)) from err
    except UnicodeEncodeError as err:  # a lone surrogate where a name is expected
        raise bad_record(path, "", "json", _SURROGATE) from err


_STEP_PATH = re.compile(r"`\$\[(\d+)\]\.?([A-Za-z_]*)(\S*)`")


def _steps(value: Any, path: str, record: str) -> list[_Step]:
    """A trajectory's steps as typed structs (``value`` is raw JSON or Python lists).

    Raises:
        InvalidInput: a step does not fit, naming the step and field from msgspec's path.
    """
    try:
        if isinstance(value, msgspec.Raw):
            return msgspec.json.decode(value, type=list[_Step])
        return msgspec.convert(value, type=list[_Step])
    except msgspec.ValidationError as err:
        where = _STEP_PATH.search(str(err))
        if where is None or not where.group(2):
            raise bad_record(path, record, "steps", f"malformed: {err}") from err
        problem = str(err).split(" - at ")[0]
        if where.group(3).endswith(".species"):
            problem = "a site has no species or several (disordered); atlas2d stores ordered ones"
        raise bad_record(
            path,
            record,
            where.group(2),
            f"{problem[:1].lower()}{problem[1:]} at {where.group(2)}{where.group(3)}",
            step=int(where.group(1)),
        ) from err
    except msgspec.DecodeError as err:
        raise bad_record(path, record, "steps", f"malformed: {err}") from err
    except UnicodeEncodeError as err:  # msgspec.convert meeting a lone surrogate
        raise bad_record(path, record, "steps", _SURROGATE) from err


def _site_arrays(
    structure: _Structure, path: str, record: str, step: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(cell (3, 3) Å, Cartesian positions (N, 3) Å, element symbols) of a structure."""
    sites = structure.sites
    symbols = [site.species[0].element for site in sites]  # one each: see _Site
    try:
        cell = np.asarray(structure.lattice.matrix, dtype=np.float64)
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
    except (ValueError, TypeError, OverflowError):
        pass
    for step, value in enumerate(values):
        _array(value, shape, path, record, field, step)
    raise bad_record(path, record, field, f"expected shape {shape} in every step")


def _number(value: Any, path: str, record: str, field: str, step: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_record(path, record, field, f"expected a number, got {shown(value)}", step=step)
    try:
        return float(value)
    except OverflowError as err:
        raise bad_record(
            path, record, field, "the integer is too large for a float", step=step
        ) from err


def _species_change(first: list[str], other: list[str]) -> str:
    if len(other) != len(first):
        return f"expected {len(first)} sites as in step 0, got {len(other)}"
    site = next(i for i, (a, b) in enumerate(zip(first, other, strict=True)) if a != b)
    return (
        f"species differ from step 0 (site {site} is {shown(other[site])}, was "
        f"{shown(first[site])}); a relaxation keeps its atoms, in one order"
    )


def _parameters(run: dict[str, Any], path: str, record: str) -> dict[str, Any]:
    """A trajectory's settings: every key of the run but ``steps``, decoded."""
    parameters = {}
    for key, value in run.items():
        if key == "steps":
            continue
        try:
            parameters[key] = (
                msgspec.json.decode(value) if isinstance(value, msgspec.Raw) else value
            )
        except msgspec.DecodeError as err:
            raise bad_record(path, record, key, f"not valid JSON ({err})") from err
    return parameters


def _trajectory(
    mat_id: str, sequence: int, run: dict[str, Any], path: str, stress_unit: StressUnit
) -> Trajectory:
    record = f"mat_id {mat_id}, trajectory {sequence}"
    check_key(mat_id, path, record, "mat_id")
    if "steps" not in run:
        raise bad_record(path, record, "steps", "missing: a trajectory needs a list of steps")
    steps = _steps(run["steps"], path, record)
    if not steps:
        raise bad_record(path, record, "steps", "the trajectory has no step")
    _, _, symbols = _site_arrays(steps[0].structure, path, record, 0)
    n_sites = len(symbols)
    # Atom order is fixed within a relaxation: every step lists the same species in the
    # same order (so every step has the same number of sites too).
    for step, item in enumerate(steps[1:], start=1):
        step_symbols = [site.species[0].element for site in item.structure.sites]
        if step_symbols != symbols:
            raise bad_record(
                path, record, "structure.sites", _species_change(symbols, step_symbols), step=step
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
        cells = np.array([c for c, _, _ in per_step])
        positions = np.array([p for _, p, _ in per_step])
    energies = [
        _number(item.energy, path, record, "energy", step) for step, item in enumerate(steps)
    ]
    forces = _stacked([item.forces for item in steps], (n_sites, 3), path, record, "forces")
    present = stress_at_every_step([item.stress for item in steps], path, record)
    stresses = (
        None
        if present is None
        else stress_to_ev_a3(_stacked(present, (3, 3), path, record, "stress"), stress_unit)
    )
    species = np.array(
        [atomic_number(s, path, record, "structure.sites", i) for i, s in enumerate(symbols)]
    )
    return Trajectory(
        material_key=mat_id,
        species=species,
        cells=cells,
        positions=positions,
        energies=np.array(energies),
        forces=forces,
        stresses=stresses,
        parameters=_parameters(run, path, record),
        record=record,
        sequence=sequence,
    )


def iter_alexandria_trajectories(
    stream: Readable, path: str, stress_unit: StressUnit = StressUnit.VASP_KBAR
) -> Generator[Trajectory, None, None]:
    """The trajectories of an Alexandria geometry-optimisation file, one material at a
    time: the file is read as a stream, so memory is bounded by the largest material's
    trajectories, not by the file (``io.json_stream``).

    Raises:
        InvalidInput: invalid JSON, a material key given twice, or a record with a
            missing or malformed field (raised when the iteration reaches it).
    """
    seen: set[str] = set()
    # Read and cut ahead in a thread while the members before are decoded and written.
    for member in read_ahead(object_members(stream, path), depth=8):
        try:
            document = msgspec.json.decode(member, type=dict[str, list[dict[str, msgspec.Raw]]])
        except (msgspec.ValidationError, msgspec.DecodeError):
            document = _decode(member, _TrajectoryFile, path)
        for mat_id, runs in document.items():
            # Decoded whole, a repeated key kept its last value silently; say so instead.
            if mat_id in seen:
                raise bad_record(
                    path,
                    f"mat_id {mat_id}",
                    "mat_id",
                    "appears twice at the top level; put all its trajectories in one list",
                )
            seen.add(mat_id)
            for sequence, run in enumerate(runs):
                yield _trajectory(str(mat_id), sequence, run, path, stress_unit)


def read_alexandria_trajectories(
    content: bytes, path: str, stress_unit: StressUnit = StressUnit.VASP_KBAR
) -> list[Trajectory]:
    """Every trajectory of an Alexandria geometry-optimisation file held in memory.

    Raises:
        InvalidInput: as ``iter_alexandria_trajectories``.
    """
    return list(iter_alexandria_trajectories(io.BytesIO(content), path, stress_unit))


def _correction(entry: _Entry, path: str, record: str) -> float:
    if entry.correction is not None:
        return _number(entry.correction, path, record, "correction")
    adjustments = entry.energy_adjustments
    if not adjustments:
        return 0.0
    # MontyDecoder imports the module an "@module" names: only pymatgen's adjustments.
    if not isinstance(adjustments, list) or not all(
        isinstance(adj, dict) and str(adj.get("@module", "")).startswith("pymatgen.")
        for adj in adjustments
    ):
        raise bad_record(
            path, record, "energy_adjustments", "expected a list of pymatgen energy adjustments"
        )
    from monty.json import MontyDecoder

    decoder = MontyDecoder()
    try:
        return float(sum(decoder.process_decoded(adj).value for adj in adjustments))
    except Exception as err:  # pymatgen and monty raise many types for a malformed dict
        raise bad_record(
            path,
            record,
            "energy_adjustments",
            f"cannot be read ({type(err).__name__}: {err}); give the total as 'correction'",
        ) from err


def _material(data: dict[str, Any], key: str, path: str, record: str) -> MaterialRecord:
    """What a hull entry's ``data`` says of its material; absent fields stay None."""
    dimensionality = data.get("dimensionality")
    if dimensionality is not None and (
        isinstance(dimensionality, bool) or dimensionality not in (0, 1, 2, 3)
    ):
        raise bad_record(
            path,
            record,
            "data.dimensionality",
            f"expected 0, 1, 2 or 3, got {shown(dimensionality)}",
        )
    spg = data.get("spg")
    if spg is not None and (
        isinstance(spg, bool) or not isinstance(spg, int) or not 1 <= spg <= 230
    ):
        raise bad_record(
            path, record, "data.spg", f"expected a space-group number 1..230, got {shown(spg)}"
        )
    prototype = data.get("prototype_id")
    if prototype is not None and not isinstance(prototype, str):
        raise bad_record(
            path, record, "data.prototype_id", f"expected text, got {shown(prototype)}"
        )
    return MaterialRecord(
        key=key,
        dimensionality=None if dimensionality is None else int(dimensionality),
        prototype=prototype,
        spacegroup_number=spg,
    )


def read_alexandria_hull(
    content: bytes, path: str
) -> tuple[list[EnergyEntryRecord], list[MaterialRecord]]:
    """Entries of an Alexandria convex-hull file, with what their ``data`` says of each material.

    Raises:
        InvalidInput: invalid JSON, an entry without ``data.mat_id``, energy or structure,
            or a ``data`` field of the wrong kind (``spg``, ``dimensionality``,
            ``prototype_id``).
    """
    document = _decode(content, _HullFile, path)
    entries, materials = [], []
    for index, entry in enumerate(document.entries):
        data = entry.data
        mat_id = data.get("mat_id")
        if mat_id is None:
            raise bad_record(
                path, f"entry {index}", "data.mat_id", "missing; every entry needs its material id"
            )
        check_key(mat_id, path, f"entry {index}", "data.mat_id")
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
        materials.append(_material(data, mat_id, path, record))
    return entries, materials
