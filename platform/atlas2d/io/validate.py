"""Checks every record before anything is written, with messages that say where and what."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
from ase.data import atomic_numbers

from atlas2d.errors import InvalidInput
from atlas2d.io.records import EnergyEntryRecord, Trajectory

MAX_ATOMIC_NUMBER = 118
MAX_KEY_LENGTH = 256
"""Characters of a material key (PostgreSQL's unique index holds keys of ~2.7 kB at most)."""
MAX_JSON_DEPTH = 32
"""Nesting of the free-form metadata (parameters, a hull entry's data) stored as JSONB."""
T = TypeVar("T")


def printable(text: str) -> str:
    """``text`` with newlines, other control characters and lone surrogates escaped
    (``\\x00``, ``\\n``, ``\\ud800``): one line that any terminal can print."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (a 10**400 or a long
    string stays readable)."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4300 digits
        return "an integer of thousands of digits"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def bad_record(
    path: str, record: str, field: str, problem: str, step: int | None = None
) -> InvalidInput:
    """An ``InvalidInput`` naming file, record, step and field, on one printable line."""
    where = f"{path}: {record}" if record else path
    if step is not None:
        where += f", step {step}"
    return InvalidInput(
        printable(
            f"{where}, field '{field}': {problem}. Nothing from this file was written; fix "
            "or remove the record, or pass --skip-bad to ingest the other files."
        )
    )


def _text_problem(text: str) -> str | None:
    """What PostgreSQL cannot store in ``text``: NUL, or a lone surrogate (not Unicode)."""
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (half of a UTF-16 pair), which is not valid Unicode"
    return None


def check_key(key: object, path: str, record: str, field: str) -> None:
    """Refuse a material key that is not text, empty, too long, or unstorable."""
    if not isinstance(key, str):
        raise bad_record(path, record, field, f"expected text, got {shown(key)}")
    if not key.strip():
        raise bad_record(path, record, field, f"the material key {key!r} is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise bad_record(
            path, record, field, f"the material key is longer than {MAX_KEY_LENGTH} characters"
        )
    problem = _text_problem(key)
    if problem is not None:
        raise bad_record(path, record, field, f"the material key {key!r} {problem}")


def check_json(value: Any, path: str, record: str, root: str = "") -> None:
    """Refuse metadata that PostgreSQL's JSONB cannot hold: NUL and lone surrogates in
    text, keys that are not text, and nesting deeper than ``MAX_JSON_DEPTH``. The field
    is named as a path from ``root`` (``incar.PSTRESS``, ``data.spg``, ``LDAUL[1]``).

    NaN and infinite numbers pass: JSON has none, so they are stored as null (files
    written by Python's json carry them in fields atlas2d never reads, and refusing a
    whole hull file for one of those would lose every good entry in it)."""
    stack: list[tuple[str, Any, int]] = [(root, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
        elif item is None or isinstance(item, (bool, int, float)):
            problem = None
        elif depth >= MAX_JSON_DEPTH:
            problem = f"is nested deeper than {MAX_JSON_DEPTH} levels"
        elif isinstance(item, dict):
            problem = None
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if not isinstance(key, str):
                    raise bad_record(path, record, name, "a key is not text")
                if (key_problem := _text_problem(key)) is not None:
                    raise bad_record(path, record, name, f"the name {key_problem}")
                stack.append((name, child, depth + 1))
        elif isinstance(item, (list, tuple)):
            problem = None
            stack.extend((f"{where}[{i}]", child, depth + 1) for i, child in enumerate(item))
        else:
            problem = f"is a {type(item).__name__}, not a JSON value"
        if problem is not None:
            raise bad_record(path, record, where or "parameters", f"the value {problem}")


def atomic_number(symbol: str, path: str, record: str, field: str, site: int) -> int:
    """Atomic number of an element symbol; refuses dummy symbols such as ``X``."""
    z = atomic_numbers.get(symbol.strip())
    if not z:  # ASE maps the dummy 'X' to 0
        raise bad_record(
            path,
            record,
            field,
            f"species {symbol.strip()!r} of site {site} is not a chemical element",
        )
    return z


def stress_at_every_step(stresses: list[T | None], path: str, record: str) -> list[T] | None:
    """Each step's stress when every step has one, None when none has.

    Raises:
        InvalidInput: some steps have a stress and others not. Storing the relaxation
            without stress would drop it silently, so the file is refused.
    """
    missing = [step for step, stress in enumerate(stresses) if stress is None]
    if len(missing) == len(stresses):
        return None
    if missing:
        raise bad_record(
            path,
            record,
            "stress",
            "missing, though other steps of the relaxation have one; atlas2d stores a "
            "relaxation with stress at every step or at none",
            step=missing[0],
        )
    return cast("list[T]", stresses)


def _expect_shape(
    values: np.ndarray, shape: tuple[int, ...], path: str, record: str, field: str
) -> None:
    if values.shape != shape:
        raise bad_record(path, record, field, f"expected shape {shape}, got {values.shape}")


def validate_trajectory(traj: Trajectory, path: str) -> None:
    """Check the shapes and species of a trajectory (values are checked per block, see
    ``queries.row_encoding``).

    Raises:
        InvalidInput: naming the file, record, step and field at fault.
    """
    record = traj.record or f"material {traj.material_key}"
    check_key(traj.material_key, path, record, "material_key")
    check_json(traj.parameters, path, record)
    check_json(traj.info, path, record, "info")
    species = np.asarray(traj.species)
    if species.ndim != 1 or species.size == 0:
        raise bad_record(path, record, "species", "expected a non-empty list of atomic numbers")
    if species.min() < 1 or species.max() > MAX_ATOMIC_NUMBER:
        raise bad_record(path, record, "species", "atomic numbers must lie in 1..118")
    n_frames, n_sites = len(traj.energies), len(species)
    if n_frames == 0:
        raise bad_record(path, record, "steps", "the trajectory has no step")
    _expect_shape(traj.energies, (n_frames,), path, record, "energy")
    _expect_shape(traj.cells, (n_frames, 3, 3), path, record, "cell")
    _expect_shape(traj.positions, (n_frames, n_sites, 3), path, record, "positions")
    _expect_shape(traj.forces, (n_frames, n_sites, 3), path, record, "forces")
    if traj.stresses is not None:
        _expect_shape(traj.stresses, (n_frames, 3, 3), path, record, "stress")


def validate_entry(entry: EnergyEntryRecord, path: str) -> None:
    """Check a convex-hull entry's shapes, species and finiteness."""
    record = entry.record or f"entry {entry.material_key}"
    check_key(entry.material_key, path, record, "data.mat_id")
    check_json(entry.data, path, record, "data")
    species = np.asarray(entry.species)
    if species.ndim != 1 or species.size == 0 or species.min() < 1:
        raise bad_record(path, record, "structure.species", "expected atomic numbers ≥ 1")
    _expect_shape(entry.cell, (3, 3), path, record, "structure.lattice")
    _expect_shape(entry.positions, (len(species), 3), path, record, "structure.sites")
    for field, value in (("energy", entry.energy), ("correction", entry.correction)):
        if not np.isfinite(value):
            raise bad_record(path, record, field, "value is NaN or infinite")
    if not (np.isfinite(entry.cell).all() and np.isfinite(entry.positions).all()):
        raise bad_record(path, record, "structure", "coordinates are NaN or infinite")
