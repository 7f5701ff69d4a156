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
        max_decompressed_mb: refuse a file read whole whose content, once
            decompressed, is larger (MB; a streamed file read in batches is not
            limited); None: the ``ATLAS2D_MAX_DECOMPRESSED_MB`` setting.
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


STREAMED_FORMATS = ("alexandria-traj",)
"""Formats read in batches (``InputFile.batches``); the others are parsed whole."""


class InputFile:
    """One input file, open: decompressed and hashed as it is read, its format known.

    Use as a context manager. A file of a ``STREAMED_FORMATS`` format is read in batches
    of trajectories, so memory is bounded by the batch size, not by the file, and
    ``options.max_decompressed_mb`` does not apply (unless ``hold_whole``); the others
    (VASP, extxyz, convex-hull JSON) are parsed whole, within it.

    Args:
        hold_whole: the caller keeps every batch at once (``read_file``), so the size
            limit applies to a streamed format too.

    Raises:
        InvalidInput: unknown format, unreadable or too large content, or a file name
            that is not UTF-8.
    """

    def __init__(self, path: Path, options: ReadOptions, hold_whole: bool = False) -> None:
        try:
            str(path).encode()
        except UnicodeEncodeError as err:  # undecodable bytes of the name, kept as surrogates
            raise InvalidInput(
                f"{printable(str(path))}: the file name is not valid UTF-8 (the database keeps "
                "it with what the file holds); rename the file."
            ) from err
        self.path = path
        self.options = options
        self._content = ContentStream(path, max_content_bytes(options.max_decompressed_mb))
        try:
            self.format = self._format()
        except BaseException:
            self._content.close()
            raise
        if self.streamed and not hold_whole:
            self._content.max_bytes = None  # memory follows the batch, not the file

    def _format(self) -> str:
        fmt = self.options.format
        if fmt == "auto":
            fmt = detect_format(self.path, self._content.head(64))
        elif fmt == "vasp":  # vasprun.xml or OUTCAR, whatever the file is called
            fmt = "vasprun" if self._content.head(256).lstrip()[:5] == b"<?xml" else "outcar"
        if fmt not in FORMATS:
            raise InvalidInput(
                f"{self.path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}."
            )
        return fmt

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._content.close()

    @property
    def streamed(self) -> bool:
        """Whether ``batches`` reads the file piece by piece (else it yields it whole)."""
        return self.format in STREAMED_FORMATS

    def _empty(self) -> ParsedFile:
        return ParsedFile(
            path=str(self.path),
            format=self.format,
            sha256="",
            parser=f"atlas2d.io.{self.format}",
            options=self.options.recorded(),
        )

    def batches(self, batch_frames: int) -> Iterator[ParsedFile]:
        """The file's records as ``ParsedFile`` batches of about ``batch_frames`` frames
        (whole trajectories; one batch for a format that is not streamed). Their
        ``sha256`` is empty: ``sha256()`` gives the content's once they are all read.

        Raises:
            InvalidInput: malformed content, naming the record (when the iteration
                reaches it).
        """
        if not self.streamed:
            with _parsing():
                yield self._parse_whole()
            return
        stress_unit = self.options.stress_unit or StressUnit.VASP_KBAR
        trajectories = alexandria.iter_alexandria_trajectories(
            self._content, str(self.path), stress_unit
        )
        batch = self._empty()
        frames = 0
        try:
            while True:
                with _parsing():
                    for trajectory in trajectories:
                        batch.trajectories.append(trajectory)
                        frames += trajectory.n_frames
                        if frames >= batch_frames:
                            break
                    else:
                        break
                yield batch
                batch, frames = self._empty(), 0
            if batch.trajectories:
                yield batch
        finally:
            trajectories.close()  # stops the read-ahead thread when a batch was refused

    def sha256(self) -> str:
        """Hex sha256 of the whole (decompressed) content: reads what is left first."""
        return self._content.sha256()

    def _parse_whole(self) -> ParsedFile:
        parsed = self._empty()
        _parse(parsed, self._content, self.path, self.format, self.options)
        return parsed


def read_file(path: Path, options: ReadOptions) -> ParsedFile:
    """Read, decompress and parse one file whole (see ``InputFile`` to read it in batches).

    Raises:
        InvalidInput: unknown format, unreadable, too large or malformed content, or a
            file name that is not UTF-8.
    """
    with InputFile(path, options, hold_whole=True) as reading:
        parsed = reading._empty()
        for batch in reading.batches(batch_frames=1 << 62):
            parsed.trajectories += batch.trajectories
            parsed.entries += batch.entries
            parsed.materials.update(batch.materials)
            parsed.label_ticket = batch.label_ticket
            parsed.options = batch.options
        parsed.sha256 = reading.sha256()
    return parsed


@contextmanager
def _parsing() -> Iterator[None]:
    """Parse with the cyclic collector paused and numpy's overflow warnings off.

    Overflow to inf or NaN is refused, naming the field, once the records are checked
    (io.validate, queries.row_encoding): numpy need not warn on stderr too.
    """
    with _collector_paused(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        yield


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
    else:
        parsed.entries, materials = alexandria.read_alexandria_hull(content.read_all(), name)
        parsed.materials = {m.key: m for m in materials}
