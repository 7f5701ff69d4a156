"""Structures to relax or label from a file, in any format atlas2d or ASE reads."""

from __future__ import annotations

import io
from pathlib import Path

import ase.io
import numpy as np

from atlas2d.errors import InvalidInput
from atlas2d.io.files import base_name, format_from_name, read_bytes, sha256_hex
from atlas2d.io.readers import ReadOptions, read_file
from atlas2d.io.records import ParsedFile, Trajectory


def read_candidates(path: Path) -> ParsedFile:
    """Structures to relax from a file. Files with DFT labels (vasprun, OUTCAR,
    Alexandria) go through the ingest readers; extxyz, ASE trajectories and whatever
    else ASE reads (CIF, POSCAR) need no labels: each structure becomes a record keyed
    by its ``material_key`` info or the file name and its index."""
    content = read_bytes(path)
    fmt = format_from_name(path)
    if fmt not in (None, "extxyz"):
        return read_file(path, ReadOptions())
    try:
        if base_name(path).lower().endswith((".xyz", ".extxyz")):
            structures = ase.io.read(io.StringIO(content.decode()), ":", format="extxyz")
        else:
            structures = ase.io.read(path, ":")
    except Exception as err:  # ASE raises many types for unreadable files
        raise InvalidInput(f"{path}: ASE cannot read a structure from it ({err}).") from err
    parsed = ParsedFile(str(path), "records", sha256_hex(content), "ase.io.read")
    # Default keys carry the file's hash: a/POSCAR and b/POSCAR are not one material.
    stem = f"{base_name(path).rsplit('.', 1)[0]}-{sha256_hex(content)[:8]}"
    for index, atoms in enumerate(structures):
        n_sites = len(atoms)
        parsed.trajectories.append(
            Trajectory(
                material_key=str(atoms.info.get("material_key", f"{stem}-{index}")),
                species=atoms.get_atomic_numbers(),
                cells=atoms.cell.array[None].copy(),
                positions=atoms.positions[None].copy(),
                energies=np.zeros(1),  # unlabelled: only the geometry is used
                forces=np.zeros((1, n_sites, 3)),
                stresses=None,
                record=f"structure {index}",
            )
        )
    return parsed
