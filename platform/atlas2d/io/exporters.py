"""Training-set exporters: plain ASE extxyz, MACE extxyz and a matgl dataset.

Every writer takes an iterable of :class:`~atlas2d.io.records.ExportFrame` in the stored
canonical units (eV, Å, eV/Å, stress in eV/Å³ with ASE's sign, σ = (1/V) ∂E/∂ε, positive
= tensile), writes frame by frame (nothing holds all frames in memory) and returns the
number of frames written. ASE writes per-atom columns (positions, forces) with 8 decimals
and comment-line values (energy, stress, identifiers) at full precision. Output goes to a
hidden ``.part`` file that is renamed into place only when every frame has been written,
so a frame rejected half-way leaves no truncated training set behind. The caller has
already zeroed the z-index stress components of 2D layers; the writers only convert units
and signs.

Conventions, each checked in ``tests/io/test_exporters.py`` (for MACE and matgl by a
finite-difference strain derivative of a small model's energy):

* ``write_extxyz``: energy (eV), forces (eV/Å) and stress (eV/Å³, ASE sign, stored by
  ASE as Voigt xx, yy, zz, yz, xz, xy) as ``SinglePointCalculator`` results, so
  ``ase.io.read(path, ":")`` gives them back through ``atoms.get_*``; ``pbc`` as given.
* ``write_mace_extxyz`` (mace-torch 0.3.16): ``REF_energy`` (info, eV), ``REF_forces``
  (per-atom array, eV/Å), ``REF_stress`` (info, Voigt, eV/Å³, ASE sign) and
  ``config_type``. These are the default keys of ``mace.tools.DefaultKeys``
  (``mace/tools/default_keys.py``) that ``mace.data.utils.load_from_xyz`` hands to
  ``config_from_atoms``. No conversion: MACE's model stress is the strain derivative
  over the volume, ``stress = virials / volume`` with ``virials = ∂E/∂ε`` from
  ``torch.autograd.grad`` (``mace/modules/utils.py``, ``compute_forces_virials``), which
  is ASE's convention in eV/Å³. Frames are written with ``pbc = T T T`` whatever their
  own flags: ``get_neighborhood`` (``mace/data/neighborhood.py``) replaces the cell
  vector of every non-periodic axis by one ``5 · cutoff · max|r|`` long, so for a layer
  flagged ``(T, T, F)`` MACE would divide its strain derivative by that fictitious
  volume and its stress could never match the DFT stress, which was computed for the
  real 3D-periodic cell. The vacuum along c keeps the layers apart, as in the DFT run.
* ``write_matgl_dataset`` (matgl 4.1.2, PyG): stress in **GPa with matgl's sign, which
  is ASE's sign** (tensile positive, compressive negative), i.e. σ_matgl [GPa] =
  +160.21766208 · σ_ase [eV/Å³]. matgl's ``Potential.forward`` strains the lattice as
  ``lattice = lat @ (I + st)`` and returns ``stresses = grads[1] * (EV_PER_ANG3_TO_GPA /
  volume)`` with ``grads[1] = ∂E/∂st``, no minus sign; its ASE calculator
  (``PESCalculator``) turns that into an ASE stress by multiplying by ``units.GPa``
  only, again no sign flip; and its trainer's loss compares ``labels["stresses"]`` with
  that output directly, so the labels here are exactly what a matgl ``Potential``
  outputs for the same energy surface. ``tests/io/test_exporters.py`` checks the sign
  by a finite difference of a trained model's energy.

matgl on-disk layout (``out_dir``):

* ``frames.jsonl``: one JSON object per line in the MatPES record shape that
  ``matgl.MGLDatasetLoader.from_json`` reads: ``structure`` (pymatgen
  ``Structure.as_dict()``, Å, always 3D periodic because matgl's ``Structure2Graph``
  builds periodic graphs in all three directions), ``energy`` (eV, total), ``forces``
  ((N, 3) eV/Å), ``stress`` ((3, 3) GPa, matgl sign; absent when the frames have no
  stress), plus ``info`` (the frame identifiers) and ``pbc`` (the frame's own flags),
  which matgl ignores.
* ``manifest.json``: format name and version, frame count, units and sign, whether
  stress is present, and the element symbols present (sorted by Z, as matgl's
  ``get_element_list`` orders them).

:func:`load_matgl_dataset` rebuilds matgl's ``MGLDataset`` from that directory with
``MGLDatasetLoader.from_json(..., stress_unit="GPa")``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from atlas2d.analysis.units import GPA_PER_EV_PER_A3
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.records import ExportBatch, ExportFrame

if TYPE_CHECKING:
    from ase import Atoms
    from matgl.graph.data import MGLDataset

MATGL_FRAMES_FILE = "frames.jsonl"
MATGL_MANIFEST_FILE = "manifest.json"
MATGL_FORMAT = "atlas2d-matgl-pes-jsonl"
MATGL_FORMAT_VERSION = 1

MACE_ENERGY_KEY = "REF_energy"
"""``atoms.info`` key, eV (``mace.tools.DefaultKeys.ENERGY``)."""
MACE_FORCES_KEY = "REF_forces"
"""``atoms.arrays`` key, (N, 3) eV/Å (``mace.tools.DefaultKeys.FORCES``)."""
MACE_STRESS_KEY = "REF_stress"
"""``atoms.info`` key, Voigt (6,) eV/Å³, ASE sign (``mace.tools.DefaultKeys.STRESS``)."""
MACE_DEFAULT_CONFIG_TYPE = "Default"
"""``mace.data.utils.DEFAULT_CONFIG_TYPE``: the type MACE assumes when none is given."""

# Identifiers travel in the extxyz comment line; ASE's reader turns these names into
# calculator results or cell/pbc, so an info entry with one of them would be lost.
_EXTXYZ_RESERVED_INFO_KEYS = frozenset(
    {
        "Lattice",
        "Properties",
        "pbc",
        "energy",
        "free_energy",
        "forces",
        "stress",
        "stresses",
        "energies",
        "charges",
        "magmom",
        "magmoms",
        "dipole",
    }
)
# MACE's loader overwrites "head" with the head name; the REF_ keys are ours.
_MACE_RESERVED_INFO_KEYS = _EXTXYZ_RESERVED_INFO_KEYS | {
    MACE_ENERGY_KEY,
    MACE_FORCES_KEY,
    MACE_STRESS_KEY,
    "head",
}
# ASE's extxyz reader decodes string values that start with this prefix as JSON; we use
# it for values its plain parser would change (None, "", strings that look like numbers
# or booleans, nested containers).
_JSON_PREFIX = "_JSON "
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")
_EXTXYZ_BOOLEANS = frozenset({"T", "F", "true", "false", "True", "False", "TRUE", "FALSE"})
"""The texts ASE's extxyz reader turns into booleans (``key_val_str_to_dict``)."""


def write_extxyz(frames: Iterable[ExportFrame], path: str | os.PathLike[str]) -> int:
    """Write frames as plain ASE extxyz with energy, forces and stress as calculator results.

    Args:
        frames: frames in canonical units; ``stress`` (3, 3) eV/Å³ with ASE's sign or None.
        path: the .extxyz file to create (replaced if it exists).

    Returns:
        The number of frames written.

    Raises:
        InvalidInput: a frame has arrays of the wrong shape, non-finite labels, or an info
            key that extxyz reserves; nothing is written then.
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.stress import full_3x3_to_voigt_6_stress

    n_written = 0
    with atomic_file(Path(path), "w") as handle:
        for index, frame in enumerate(frames):
            arrays = _checked_arrays(frame, index)
            atoms = _atoms(arrays, pbc=frame.pbc)
            atoms.info.update(_extxyz_info(frame, index, _EXTXYZ_RESERVED_INFO_KEYS))
            results: dict[str, Any] = {"energy": float(frame.energy), "forces": arrays.forces}
            if arrays.stress is not None:
                # ASE's reader hands stress back as Voigt 6 built from one triangle; give
                # it the symmetrised tensor so both triangles count, as in the MACE export.
                results["stress"] = full_3x3_to_voigt_6_stress(arrays.stress)
            atoms.calc = SinglePointCalculator(atoms, **results)
            ase.io.write(handle, atoms, format="extxyz")
            n_written += 1
    return n_written


def write_mace_extxyz(frames: Iterable[ExportFrame], path: str | os.PathLike[str]) -> int:
    """Write frames as extxyz for MACE training (``REF_energy``/``REF_forces``/``REF_stress``).

    Labels are plain info/array entries, not calculator results, because MACE reads
    exactly these keys (see the module docstring). ``config_type`` is the frame's
    ``info["config_type"]`` or ``"Default"``. Cells are written 3D periodic (module
    docstring: MACE's stress for a non-periodic axis uses a fictitious volume).

    The text is formatted here from the arrays, in ASE's extxyz layout (the comment line
    through ASE's own ``key_val_dict_to_str``, per-atom columns ``%16.8f``), and written
    in blocks: ``ase.io.write`` built an ``Atoms`` per frame and wrote 3,800 frames/s.
    ``tests/io/test_exporters.py`` checks the text equals ASE's.

    Args:
        frames: frames in canonical units; ``stress`` (3, 3) eV/Å³ with ASE's sign or None
            (then no ``REF_stress``, and MACE gives the frame's stress zero weight).
        path: the .extxyz file to create (replaced if it exists).

    Returns:
        The number of frames written.

    Raises:
        InvalidInput: a frame has arrays of the wrong shape, non-finite labels, a
            non-string ``config_type`` or an info key MACE or extxyz reserves.
    """
    n_written = 0
    block: list[str] = []
    with atomic_file(Path(path), "w") as handle:
        for index, frame in enumerate(frames):
            block.append(_mace_frame_text(frame, index))
            n_written += 1
            if len(block) >= _BLOCK_FRAMES:
                handle.write("".join(block))
                block.clear()
        handle.write("".join(block))
    return n_written


def write_mace_extxyz_batches(
    batches: Iterable[ExportBatch], path: str | os.PathLike[str], first_index: int = 0
) -> int:
    """``write_mace_extxyz`` for frames given column-wise, a batch at a time: the same
    text, byte for byte (``tests/io/test_exporters.py`` compares the two).

    A batch's text comes from ``%`` templates, a few hundred frames each, filled from
    one array of its float values, so the per-frame Python work is the template's
    pieces; formatting frame by frame was two thirds of the export of a large set. A batch the template cannot take
    (an info value that is no plain text or integer, a key to escape, a non-finite
    label) goes frame by frame, which formats it the general way or refuses it.

    Args:
        batches: the frames, column-wise.
        path: the .extxyz file to create (replaced if it exists).
        first_index: the first frame's place in the whole file (errors name frames by
            it), when this writes one part of a file.

    Returns:
        The number of frames written.

    Raises:
        InvalidInput: as ``write_mace_extxyz``.
    """
    n_written = 0
    with atomic_file(Path(path), "w") as handle:
        for batch in batches:
            text = _mace_batch_text(batch)
            if text is None:
                first = first_index + n_written
                text = "".join(
                    _mace_frame_text(batch.frame(i), first + i) for i in range(len(batch))
                )
            handle.write(text)
            n_written += len(batch)
    return n_written


def _mace_frame_text(frame: ExportFrame, index: int) -> str:
    """One frame of a MACE extxyz file: count line, comment line and atom lines."""
    arrays = _checked_arrays(frame, index)
    items = _mace_info_items(frame, index)
    items.append(f"{MACE_ENERGY_KEY}={float(frame.energy)}")
    if arrays.stress is not None:
        # Voigt in ASE order (xx, yy, zz, yz, xz, xy): a plain 6-vector every
        # extxyz reader parses; mace.tools.torch_tools.voigt_to_matrix expands it.
        # ASE's full_3x3_to_voigt_6_stress, on Python floats (same arithmetic).
        (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = arrays.stress.tolist()
        voigt = (xx, yy, zz, (yz + zy) / 2, (xz + zx) / 2, (xy + yx) / 2)
        items.append(f'{MACE_STRESS_KEY}="{" ".join(map(str, voigt))}"')
    items.append('pbc="T T T"')
    lattice = ""
    if arrays.cell.any():  # ASE leaves out a zero cell
        # ASE writes the cell's transpose in Fortran order: the rows, in order.
        lattice = 'Lattice="' + " ".join(map(str, arrays.cell.reshape(9).tolist())) + '" '
    columns = np.concatenate((arrays.positions, arrays.forces), axis=1).ravel().tolist()
    return (
        f"{len(arrays.species)}\n{lattice}Properties={_MACE_PROPERTIES} {' '.join(items)}\n"
        + _mace_rows(arrays.species.tobytes()) % tuple(columns)
    )


def _mace_batch_text(batch: ExportBatch) -> str | None:
    """The batch's frames as ``_mace_frame_text`` writes them, or None when the batch
    needs the frame-by-frame way (see ``write_mace_extxyz_batches``).

    The template holds each frame's count, identifiers and symbols as text and a
    ``%`` field per float: ``%r`` (``repr``, what ``str`` gives, as ASE writes the
    comment line) for the cell, energy and stress, ``%16.8f`` for positions and forces.
    """
    n_frames = len(batch)
    if n_frames == 0:
        return ""
    n_atoms = int(batch.bounds[-1])
    shapes = (batch.species.shape, batch.cells.shape, batch.positions.shape, batch.forces.shape)
    if shapes != (
        (n_atoms,),
        (n_frames, 3, 3),
        (n_atoms, 3),
        (n_atoms, 3),
    ) or batch.stresses.shape != (n_frames, 3, 3):
        return None  # frame by frame: the error names the frame
    info = _batch_info_texts(batch.info, n_frames)
    if info is None:
        return None
    cells = batch.cells.reshape(n_frames, 9)
    stressed = np.asarray(batch.has_stress, dtype=bool)
    stresses = batch.stresses[stressed]
    # One sum per array: only a NaN or inf (or an overflow) makes one non-finite.
    with np.errstate(over="ignore", invalid="ignore"):
        totals = [
            values.sum()
            for values in (cells, batch.positions, batch.forces, batch.energies, stresses)
        ]
    if not all(math.isfinite(total) for total in totals):
        return None
    # ASE's full_3x3_to_voigt_6_stress in float64, the same arithmetic as on Python floats.
    s = batch.stresses.reshape(n_frames, 9)
    voigt = np.stack(
        (
            s[:, 0],
            s[:, 4],
            s[:, 8],
            (s[:, 5] + s[:, 7]) / 2,
            (s[:, 2] + s[:, 6]) / 2,
            (s[:, 1] + s[:, 3]) / 2,
        ),
        axis=1,
    )
    with_cell = np.any(cells, axis=1)  # ASE leaves out a zero cell
    header = np.concatenate((cells, batch.energies.reshape(n_frames, 1), voigt), axis=1)
    taken = np.ones((n_frames, 16), dtype=bool)
    taken[:, :9] = with_cell[:, np.newaxis]
    taken[:, 10:] = stressed[:, np.newaxis]
    rows = np.concatenate((batch.positions, batch.forces), axis=1)
    header_sizes = taken.sum(axis=1)
    row_sizes = 6 * np.diff(batch.bounds)
    values = _interleaved(header[taken], header_sizes, rows.ravel(), row_sizes)
    value_bounds = np.concatenate(([0], np.cumsum(header_sizes + row_sizes))).tolist()

    species = np.asarray(batch.species, dtype=np.int64)
    bounds = batch.bounds.tolist()
    templates = [
        f"{b - a}\n{_MACE_COMMENT_START[cell]}{identifiers}{_MACE_LABELS_TEMPLATE[stress]}"
        + _mace_rows(species[a:b].tobytes())
        for a, b, cell, stress, identifiers in zip(
            bounds, bounds[1:], with_cell.tolist(), stressed.tolist(), info, strict=False
        )
    ]
    # A few hundred frames per % call: each holds the GIL for a few ms only, so a
    # read-ahead thread can take the server's next rows in between (``read_ahead``).
    texts = []
    for first in range(0, n_frames, _FRAMES_PER_FORMAT):
        last = min(first + _FRAMES_PER_FORMAT, n_frames)
        chunk = values[value_bounds[first] : value_bounds[last]]
        texts.append("".join(templates[first:last]) % tuple(chunk.tolist()))
    return "".join(texts)


def _interleaved(
    header: np.ndarray, header_sizes: np.ndarray, rows: np.ndarray, row_sizes: np.ndarray
) -> np.ndarray:
    """Frame by frame, its header values then its row values: (Σ sizes,) floats.

    Args:
        header, rows: (Σ header_sizes,) and (Σ row_sizes,) values, frame after frame.
        header_sizes, row_sizes: (B,) each frame's number of values in each.
    """
    sizes = header_sizes + row_sizes
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), dtype=np.float64)
    out[_positions(starts, header_sizes)] = header
    out[_positions(starts + header_sizes, row_sizes)] = rows
    return out


def _positions(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] … starts[i] + sizes[i] - 1`` of every i, in order."""
    ends = np.cumsum(sizes)
    return np.arange(int(ends[-1])) + np.repeat(starts - (ends - sizes), sizes)


def _batch_info_texts(info: dict[str, list[Any]], n_frames: int) -> list[str] | None:
    """Each frame's identifiers and ``config_type`` as ``_mace_info_items`` writes them,
    joined, ``%`` doubled for the template; None when a column needs the general way
    (a value that is no text or integer, a key to escape or refuse, a config_type)."""
    if "config_type" in info:
        return None
    columns = []
    for key, values in info.items():
        if len(values) != n_frames or _plain_key(key) is None:
            return None
        kinds = set(map(type, values))
        if kinds == {str}:
            text_of = {value: _template_text_item(key, value) for value in set(values)}
            if None in text_of.values():
                return None
            texts = [text_of[value] for value in values]
        elif kinds == {int}:
            template_key = key.replace("%", "%%")
            texts = [f"{template_key}={value}" for value in values]
        else:
            return None
        columns.append(texts)
    config_type = _template_text_item("config_type", MACE_DEFAULT_CONFIG_TYPE)
    columns.append([config_type] * n_frames)
    return [" ".join(items) for items in zip(*columns, strict=True)]  # type: ignore[arg-type]


def _template_text_item(key: str, value: str) -> str | None:
    """``_plain_text_item`` (cached) with ``%`` doubled, for a ``%`` template."""
    item = _plain_text_item(key, value)
    return None if item is None else item.replace("%", "%%")


def _mace_info_items(frame: ExportFrame, index: int) -> list[str]:
    """The comment line's ``key=value`` texts for the frame's info and config_type, as
    ASE's ``key_val_dict_to_str`` writes them (``_extxyz_info`` conversions).

    Identifiers repeat from frame to frame, so each (key, text) is formatted once; a
    value of another kind, or a key to refuse, goes the general way.
    """
    from ase.io.extxyz import key_val_dict_to_str

    items = []
    if "config_type" not in frame.info:
        for key, value in frame.info.items():
            kind = type(value)
            if kind is str:
                text = _plain_text_item(key, value)
            elif kind is int or kind is float:
                plain = _plain_key(key)
                text = None if plain is None else f"{plain}={value}"
            else:
                text = None
            if text is None:
                break
            items.append(text)
        else:
            items.append(_plain_text_item("config_type", MACE_DEFAULT_CONFIG_TYPE) or "")
            return items
    info = _extxyz_info(frame, index, _MACE_RESERVED_INFO_KEYS)
    config_type = frame.info.get("config_type", MACE_DEFAULT_CONFIG_TYPE)
    if not isinstance(config_type, str) or not config_type:
        raise InvalidInput(
            f"{_frame_name(frame, index)} has config_type {config_type!r}; MACE needs "
            "a non-empty string. Fix the frame's info before exporting."
        )
    info["config_type"] = _extxyz_value(config_type)
    return [key_val_dict_to_str({key: value}) for key, value in info.items()]


@lru_cache(maxsize=1 << 10)
def _plain_key(key: str) -> str | None:
    """``key`` if it may go in the comment line as it is (else None: the general way
    refuses or escapes it)."""
    if key in _MACE_RESERVED_INFO_KEYS or not key:
        return None
    if any(c.isspace() or c in "=\"'\\" or not c.isprintable() for c in key):
        return None
    return key


@lru_cache(maxsize=1 << 16)
def _plain_text_item(key: str, value: str) -> str | None:
    """``key=value`` for a text value, as ``_extxyz_info`` and ASE write it."""
    from ase.io.extxyz import key_val_dict_to_str

    if _plain_key(key) is None:
        return None
    if (
        _IDENTIFIER.fullmatch(key)
        and _IDENTIFIER.fullmatch(value)
        and _ase_reads_back_unchanged(value)
    ):
        # One token on both sides: ASE's escape() leaves both as they are. A fifth of
        # an export's time went to the general way below, once per material key.
        return f"{key}={value}"
    return key_val_dict_to_str({key: _extxyz_value(value)})


@lru_cache(maxsize=1 << 10)
def _mace_rows(species: bytes) -> str:
    """The per-atom lines of a frame with these species (int64 bytes), as a ``%``
    template of positions and forces: ASE's ``%-2s`` symbol and ``%16.8f`` columns."""
    from ase.data import chemical_symbols

    numbers = np.frombuffer(species, dtype=np.int64).tolist()
    return "".join(f"{chemical_symbols[z]:<2s}" + " %16.8f" * 6 + "\n" for z in numbers)


_MACE_PROPERTIES = f"species:S:1:pos:R:3:{MACE_FORCES_KEY}:R:3"
_BLOCK_FRAMES = 1000
"""Frames gathered before one write."""
_FRAMES_PER_FORMAT = 256
"""Frames formatted by one ``%`` call of ``_mace_batch_text`` (about 5 ms)."""
_MACE_COMMENT_START = {
    True: f'Lattice="{" ".join(["%r"] * 9)}" Properties={_MACE_PROPERTIES} ',
    False: f"Properties={_MACE_PROPERTIES} ",  # ASE leaves out a zero cell
}
"""A frame's comment line up to its identifiers, with and without a cell (``%`` template)."""
_MACE_LABELS_TEMPLATE = {
    True: f' {MACE_ENERGY_KEY}=%r {MACE_STRESS_KEY}="{" ".join(["%r"] * 6)}" pbc="T T T"\n',
    False: f' {MACE_ENERGY_KEY}=%r pbc="T T T"\n',
}
"""A frame's comment line after its identifiers, with and without stress."""


def write_matgl_dataset(frames: Iterable[ExportFrame], out_dir: str | os.PathLike[str]) -> int:
    """Write frames as a matgl dataset directory (``frames.jsonl`` + ``manifest.json``).

    Stress is converted from eV/Å³ (ASE sign) to GPa with matgl's sign, which is the
    same sign: σ_matgl = +GPA_PER_EV_PER_A3 · σ_ase (module docstring).

    Args:
        frames: frames in canonical units; either all with stress or all without
            (matgl refuses a dataset where only some frames have one).
        out_dir: directory to write into (created if missing; its two files are replaced).

    Returns:
        The number of frames written.

    Raises:
        InvalidInput: a frame has arrays of the wrong shape, non-finite labels, info that
            is not JSON-serialisable, or stress where earlier frames had none (or the
            reverse); nothing is written then.
    """
    from pymatgen.core import Element, Lattice, Structure

    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    n_written = 0
    has_stress: bool | None = None
    atomic_numbers_seen: set[int] = set()
    with atomic_file(directory / MATGL_FRAMES_FILE, "w") as handle:
        for index, frame in enumerate(frames):
            arrays = _checked_arrays(frame, index)
            frame_has_stress = arrays.stress is not None
            if has_stress is None:
                has_stress = frame_has_stress
            elif frame_has_stress != has_stress:
                first = "had a stress" if has_stress else "had no stress"
                raise InvalidInput(
                    f"{_frame_name(frame, index)} {'has' if frame_has_stress else 'lacks'} a "
                    f"stress but the frames before it {first}; matgl needs stress on every "
                    "frame or on none. Select frames consistently before exporting."
                )
            # Lattice() is periodic along a, b and c: matgl's Structure2Graph treats every
            # structure as 3D periodic, like the DFT cell the labels come from.
            structure = Structure(
                Lattice(arrays.cell),
                [Element.from_Z(int(z)) for z in arrays.species],
                arrays.positions,
                coords_are_cartesian=True,
            )
            record: dict[str, Any] = {
                "structure": structure.as_dict(),
                "energy": float(frame.energy),
                "forces": arrays.forces.tolist(),
            }
            if arrays.stress is not None:
                record["stress"] = (arrays.stress * GPA_PER_EV_PER_A3).tolist()
            record["info"] = frame.info
            record["pbc"] = [bool(flag) for flag in frame.pbc]
            try:
                line = json.dumps(record, default=_json_default, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise InvalidInput(
                    f"{_frame_name(frame, index)} has info that cannot be written as JSON "
                    f"({err}); keep info to strings, numbers, booleans, None, lists and dicts."
                ) from err
            handle.write(line + "\n")
            atomic_numbers_seen.update(int(z) for z in arrays.species)
            n_written += 1
    manifest = {
        "format": MATGL_FORMAT,
        "version": MATGL_FORMAT_VERSION,
        "frames_file": MATGL_FRAMES_FILE,
        "n_frames": n_written,
        "has_stress": bool(has_stress),
        "element_types": [Element.from_Z(z).symbol for z in sorted(atomic_numbers_seen)],
        "units": {"energy": "eV", "forces": "eV/Å", "stress": "GPa"},
        "stress_sign": "matgl = ASE: sigma = (1/V) dE/d(strain), tensile positive",
    }
    with atomic_file(directory / MATGL_MANIFEST_FILE, "w") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return n_written


def load_matgl_dataset(
    out_dir: str | os.PathLike[str],
    *,
    cutoff: float = 5.0,
    element_types: Sequence[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    save_cache: bool = False,
) -> MGLDataset:
    """Build matgl's ``MGLDataset`` from a directory written by :func:`write_matgl_dataset`.

    Args:
        out_dir: the directory holding ``frames.jsonl`` and ``manifest.json``.
        cutoff: neighbour cutoff for ``Structure2Graph``, Å.
        element_types: element symbols in the order the model's ``element_types`` uses.
            Pass ``model.element_types`` when training or fine-tuning an existing model;
            None uses the elements in the export, sorted by Z.
        root: ``MGLDataset`` root directory; default ``out_dir/mgl_dataset``.
        save_cache: whether matgl stores the processed graphs under ``root``. Off by
            default because matgl reuses a cache whose converter settings match without
            checking that the frames are the same, so a stale cache would go unnoticed.

    Returns:
        The dataset: ``labels`` holds ``energies`` (eV), ``forces`` (eV/Å) and, when the
        frames had stress, ``stresses`` ((3, 3) GPa per frame, matgl sign).

    Raises:
        NotFound: the directory has no manifest or frames file.
        InvalidInput: the manifest is not one this module wrote.
    """
    from matgl import MGLDatasetLoader

    directory = Path(out_dir)
    manifest_path = directory / MATGL_MANIFEST_FILE
    if not manifest_path.is_file():
        raise NotFound(
            f"No matgl export in {directory}: {MATGL_MANIFEST_FILE} is missing. "
            "Write the dataset with write_matgl_dataset first."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != MATGL_FORMAT or manifest.get("version") != MATGL_FORMAT_VERSION:
        raise InvalidInput(
            f"{manifest_path} describes format {manifest.get('format')!r} version "
            f"{manifest.get('version')!r}; this atlas2d reads {MATGL_FORMAT!r} version "
            f"{MATGL_FORMAT_VERSION}. Export the dataset again."
        )
    frames_path = directory / manifest["frames_file"]
    if not frames_path.is_file():
        raise NotFound(f"{frames_path} named by {manifest_path} is missing; export again.")
    types = tuple(element_types) if element_types is not None else tuple(manifest["element_types"])
    return MGLDatasetLoader.from_json(
        frames_path,
        cutoff=cutoff,
        element_types=types,
        save_cache=save_cache,
        root=str(root) if root is not None else str(directory / "mgl_dataset"),
        # The file already holds GPa with matgl's sign; "GPa" is matgl's factor 1.0.
        stress_unit="GPa",
    )


@contextmanager
def atomic_file(path: Path, mode: Literal["w", "wb"]) -> Iterator[Any]:
    """Open a hidden sibling of ``path`` for writing (text as UTF-8 with ``"w"``) and move
    it into place on success; on failure nothing is left."""
    partial = path.with_name(f".{path.name}.part")
    try:
        with partial.open(mode, encoding="utf-8" if mode == "w" else None) as handle:
            yield handle
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _frame_name(frame: ExportFrame, index: int) -> str:
    """How error messages name a frame: its position and the identifiers it carries."""
    ids = ", ".join(
        f"{key}={frame.info[key]}"
        for key in ("material_key", "relaxation_id", "frame_id", "step")
        if key in frame.info
    )
    return f"Frame {index}" + (f" ({ids})" if ids else "")


@dataclass(frozen=True)
class _FrameArrays:
    """A frame's arrays after checking, as float64 (species int64)."""

    species: np.ndarray
    """(N,) atomic numbers."""
    cell: np.ndarray
    """(3, 3) lattice vectors as rows, Å."""
    positions: np.ndarray
    """(N, 3) Cartesian positions, Å."""
    forces: np.ndarray
    """(N, 3) eV/Å."""
    stress: np.ndarray | None
    """(3, 3) eV/Å³, ASE sign, or None."""


def _checked_arrays(frame: ExportFrame, index: int) -> _FrameArrays:
    """The frame's arrays after checking their shapes and that every label is finite."""
    species = np.asarray(frame.species, dtype=np.int64).reshape(-1)
    n_atoms = len(species)
    expected = {"cell": (3, 3), "positions": (n_atoms, 3), "forces": (n_atoms, 3)}
    if frame.stress is not None:
        expected["stress"] = (3, 3)
    checked: dict[str, np.ndarray] = {}
    for field_name, shape in expected.items():
        values = np.asarray(getattr(frame, field_name), dtype=np.float64)
        if values.shape != shape:
            raise InvalidInput(
                f"{_frame_name(frame, index)} has {field_name} of shape {values.shape}; "
                f"expected {shape} for its {n_atoms} atoms. Fix the frame before exporting."
            )
        checked[field_name] = values
    # A NaN or inf makes a sum non-finite; only then (or when finite values overflow
    # it) is every element looked at. One sum is 5× cheaper than isfinite, and one
    # errstate per frame a third of the check's time less than one per array.
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: refused below
        totals = [values.sum() for values in checked.values()]
    for (field_name, values), total in zip(checked.items(), totals, strict=True):
        if not math.isfinite(total) and not np.isfinite(values).all():
            raise InvalidInput(
                f"{_frame_name(frame, index)} has non-finite {field_name}; drop or fix the "
                "frame before exporting."
            )
    if not math.isfinite(float(frame.energy)):
        raise InvalidInput(
            f"{_frame_name(frame, index)} has energy {frame.energy}; drop or fix the frame first."
        )
    return _FrameArrays(
        species=species,
        cell=checked["cell"],
        positions=checked["positions"],
        forces=checked["forces"],
        stress=checked.get("stress"),
    )


def _atoms(arrays: _FrameArrays, pbc: tuple[bool, bool, bool]) -> Atoms:
    """An ``ase.Atoms`` with the frame's species, Cartesian positions (Å) and cell rows (Å)."""
    from ase import Atoms

    return Atoms(
        numbers=arrays.species,
        positions=arrays.positions,
        cell=arrays.cell,
        pbc=[bool(flag) for flag in pbc],
    )


def _extxyz_info(
    frame: ExportFrame, index: int, reserved: frozenset[str] | set[str]
) -> dict[str, Any]:
    """``frame.info`` with every value in a form ASE's extxyz reader returns unchanged."""
    clash = sorted(key for key in frame.info if key in reserved)
    if clash:
        raise InvalidInput(
            f"{_frame_name(frame, index)} has info keys {clash} that extxyz (or MACE) uses "
            "for labels or the cell; rename them before exporting."
        )
    info: dict[str, Any] = {}
    for key, value in frame.info.items():
        if not isinstance(key, str) or not key or any(c.isspace() or c in "=\"'" for c in key):
            raise InvalidInput(
                f"{_frame_name(frame, index)} has info key {key!r}; extxyz keys must be "
                "non-empty strings without spaces, quotes or '='. Rename it."
            )
        try:
            info[key] = _extxyz_value(value)
        except (TypeError, ValueError) as err:
            raise InvalidInput(
                f"{_frame_name(frame, index)} has info {key!r} = {value!r} that extxyz cannot "
                "hold; keep info to strings, numbers, booleans, None, lists and dicts."
            ) from err
    return info


def _extxyz_value(value: Any) -> Any:
    """A value ASE writes to the comment line and reads back equal (same type for str/None)."""
    if isinstance(value, str):
        return value if _ase_reads_back_unchanged(value) else _JSON_PREFIX + json.dumps(value)
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "biuf":
        return value
    # None, containers and anything nested: JSON keeps types ASE's plain parser would
    # change (None would come back as True, ["1"] as [1]).
    return _JSON_PREFIX + json.dumps(value, default=_json_default, allow_nan=False)


@lru_cache(maxsize=1 << 14)
def _ase_reads_back_unchanged(text: str) -> bool:
    """Whether ASE's extxyz parser returns ``text`` itself for a plain string value."""
    from ase.io.extxyz import key_val_dict_to_str, key_val_str_to_dict

    # An empty value swallows the next key in ASE's parser, and line breaks would end
    # the comment line: neither can be checked in isolation, so they always go as JSON.
    if not text or text.startswith(_JSON_PREFIX) or not text.isprintable():
        return False
    if _IDENTIFIER.fullmatch(text) and text not in _EXTXYZ_BOOLEANS:
        # One token, no quotes or separators: ASE keeps it unless it reads as a number
        # (``1_000``, ``inf`` and ``nan`` do); checking that here is 100× faster.
        try:
            float(text)
        except ValueError:
            return True
    parsed = key_val_str_to_dict(key_val_dict_to_str({"key": text}))
    return isinstance(parsed.get("key"), str) and parsed["key"] == text


def _json_default(value: Any) -> Any:
    """``json.dumps`` hook for the numpy values frames carry."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_structures_extxyz(
    structures: Iterable[tuple[Atoms, dict[str, Any]]], path: str | os.PathLike[str]
) -> int:
    """Write unlabelled structures (generated candidates) as extxyz, each with its info.

    Args:
        structures: (structure, info) pairs; info values are strings or numbers (e.g.
            ``material_key``, ``parent_key``), dicts are written as JSON.
        path: the .extxyz file to create (replaced if it exists, renamed into place when
            complete).

    Returns:
        The number of structures written.
    """
    import ase.io

    n_written = 0
    with atomic_file(Path(path), "w") as handle:
        for atoms, info in structures:
            copy = atoms.copy()
            copy.info.update(
                {
                    key: json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
                    for key, value in info.items()
                }
            )
            ase.io.write(handle, copy, format="extxyz")
            n_written += 1
    return n_written
