"""One entry point for every input format: a path in, a ``ParsedFile`` out."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atlas2d.analysis.units import StressUnit
from atlas2d.errors import InvalidInput
from atlas2d.io import alexandria, extxyz, vasp
from atlas2d.io.files import FORMATS, detect_format, read_bytes, sha256_hex
from atlas2d.io.records import ParsedFile


@dataclass(frozen=True)
class ReadOptions:
    """How to read input files.

    Attributes:
        format: one of ``io.files.FORMATS`` or ``auto`` (from name and content).
        stress_unit: stress unit and sign in extxyz/Alexandria files; None picks the
            format's own (eV/Å³ ASE sign for extxyz, kBar VASP sign for Alexandria).
            VASP files always carry kBar with VASP's sign.
        group_key: extxyz info key that groups frames into relaxations.
        material_key: key for a VASP or single-relaxation extxyz file (default: from
            the path).
    """

    format: str = "auto"
    stress_unit: StressUnit | None = None
    group_key: str | None = None
    material_key: str | None = None

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

    Raises:
        InvalidInput: unknown format, unreadable or malformed content.
    """
    content = read_bytes(path)
    fmt = options.format
    if fmt == "auto":
        fmt = detect_format(path, content)
    elif fmt == "vasp":  # vasprun.xml or OUTCAR, whatever the file is called
        fmt = "vasprun" if content.lstrip()[:5] == b"<?xml" else "outcar"
    if fmt not in FORMATS:
        raise InvalidInput(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    parsed = ParsedFile(
        path=str(path),
        format=fmt,
        sha256=sha256_hex(content),
        parser=f"atlas2d.io.{fmt}",
        options=options.recorded(),
    )
    with _collector_paused():
        _parse(parsed, content, path, fmt, options)
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


def _parse(parsed: ParsedFile, content: bytes, path: Path, fmt: str, options: ReadOptions) -> None:
    name = str(path)
    if fmt in ("vasprun", "outcar"):
        key = options.material_key or vasp.default_material_key(path)
        reader = vasp.read_vasprun if fmt == "vasprun" else vasp.read_outcar
        parsed.trajectories = [reader(content, name, key)]
    elif fmt == "extxyz":
        trajectories = extxyz.read_ase_trajectories(
            content, path, options.group_key, options.stress_unit or StressUnit.EV_A3
        )
        if options.material_key and len(trajectories) == 1:
            trajectories[0].material_key = options.material_key
            trajectories[0].record = f"material {options.material_key}"
        parsed.trajectories = trajectories
    elif fmt == "alexandria-traj":
        parsed.trajectories = alexandria.read_alexandria_trajectories(
            content, name, options.stress_unit or StressUnit.VASP_KBAR
        )
    else:
        parsed.entries, materials = alexandria.read_alexandria_hull(content, name)
        parsed.materials = {m.key: m for m in materials}
