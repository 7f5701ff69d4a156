"""One entry point for every input format: a path in, a ``ParsedFile`` out."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atlas2d.analysis.units import StressUnit
from atlas2d.errors import InvalidInput
from atlas2d.io import alexandria, extxyz, vasp
from atlas2d.io.files import FORMATS, ContentStream, detect_format, max_content_bytes
from atlas2d.io.records import ParsedFile
from atlas2d.io.validate import printable
from atlas2d.io.vasp_inputs import read_label_ticket


@dataclass(frozen=True)
class ReadOptions:
    """How to read input files.

    Attributes:
        format: one of ``io.files.FORMATS`` or ``auto`` (from name and content).
        stress_unit: stress unit and sign in extxyz/Alexandria files; None picks the
            format's own (eV/Å³ ASE sign for extxyz, kBar VASP sign for Alexandria).
            VASP files always carry kBar with VASP's sign.
        group_key: extxyz info key that groups frames into relaxations.
        material_key: key for a VASP or single-relaxation extxyz file (default: the
            ``material_key`` of a label ticket in a VASP file's folder, else from the
            path).
        max_decompressed_mb: refuse a file whose content, once decompressed, is larger
            (MB); None: the ``ATLAS2D_MAX_DECOMPRESSED_MB`` setting.
    """

    format: str = "auto"
    stress_unit: StressUnit | None = None
    group_key: str | None = None
    material_key: str | None = None
    max_decompressed_mb: int | None = None

    def recorded(self) -> dict[str, str]:
        """The options worth recording with a source."""
        values = {
            "stress_unit": self.stress_unit.value if self.stress_unit else None,
            "group_key": self.group_key,
            "material_key": self.material_key,
        }
        return {k: v for k, v in values.items() if v is not None}


def read_file(path: Path, options: ReadOptions) -> ParsedFile:
    """Read, decompress and parse one file.

    vasprun.xml and OUTCAR files are parsed as they are decompressed; the other formats
    are held in memory once, decompressed. Either way the content is bounded by
    ``options.max_decompressed_mb``.

    Raises:
        InvalidInput: unknown format, unreadable, too large or malformed content, or a
            file name that is not UTF-8.
    """
    try:
        str(path).encode()
    except UnicodeEncodeError as err:  # undecodable bytes of the name, kept as surrogates
        raise InvalidInput(
            f"{printable(str(path))}: the file name is not valid UTF-8 (the database keeps "
            "it with what the file holds); rename the file."
        ) from err
    with ContentStream(path, max_content_bytes(options.max_decompressed_mb)) as content:
        fmt = options.format
        if fmt == "auto":
            fmt = detect_format(path, content.head(64))
        elif fmt == "vasp":  # vasprun.xml or OUTCAR, whatever the file is called
            fmt = "vasprun" if content.head(256).lstrip()[:5] == b"<?xml" else "outcar"
        if fmt not in FORMATS:
            raise InvalidInput(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        parsed = ParsedFile(
            path=str(path),
            format=fmt,
            sha256="",
            parser=f"atlas2d.io.{fmt}",
            options=options.recorded(),
        )
        # Overflow to inf or NaN is refused, naming the field, once the records are
        # checked (io.validate, queries.row_encoding): numpy need not warn on stderr too.
        with _collector_paused(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            _parse(parsed, content, path, fmt, options)
        parsed.sha256 = content.sha256()
    return parsed


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a file is parsed.

    Parsing builds millions of short-lived containers; the collections their
    allocations trigger made decoding a large JSON file 2-4× slower.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(
    parsed: ParsedFile, content: ContentStream, path: Path, fmt: str, options: ReadOptions
) -> None:
    name = str(path)
    if fmt in ("vasprun", "outcar"):
        key = options.material_key
        if key is None:
            ticket = read_label_ticket(path.parent)
            if ticket is not None:
                key = ticket.material_key
                parsed.label_ticket = ticket.to_json()
                parsed.options["label_ticket"] = ticket.to_json()
        key = key or vasp.default_material_key(path)
        reader = vasp.read_vasprun if fmt == "vasprun" else vasp.read_outcar
        parsed.trajectories = [reader(content, name, key)]
    elif fmt == "extxyz":
        trajectories = extxyz.read_ase_trajectories(
            content.read_all(), path, options.group_key, options.stress_unit or StressUnit.EV_A3
        )
        if options.material_key and len(trajectories) == 1:
            trajectories[0].material_key = options.material_key
            trajectories[0].record = f"material {options.material_key}"
        parsed.trajectories = trajectories
    elif fmt == "alexandria-traj":
        parsed.trajectories = alexandria.read_alexandria_trajectories(
            content.read_all(), name, options.stress_unit or StressUnit.VASP_KBAR
        )
    else:
        parsed.entries, materials = alexandria.read_alexandria_hull(content.read_all(), name)
        parsed.materials = {m.key: m for m in materials}
