"""Reading input files: decompression by magic bytes within a size limit, hashing,
format detection."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import zlib
from pathlib import Path
from typing import IO, Any

from atlas2d.errors import InvalidInput
from atlas2d.vocabulary import INPUT_FORMATS

FORMATS = INPUT_FORMATS
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
MAX_DECOMPRESSED_SETTING = "ATLAS2D_MAX_DECOMPRESSED_MB"
XZ_DECODER_MEMORY_LIMIT = 256 << 20
"""Bytes an xz decoder may allocate. Its dictionary is sized by the file's header (up
to 4 GiB, allocated at once); ``xz -9`` needs 65 MiB to decompress."""
_READ_CHUNK = 256 << 10
# What a damaged compressed stream raises: a cut stream, a bad header, bad data.
_CORRUPT = (EOFError, OSError, ValueError, lzma.LZMAError, zlib.error)


class _XzReader(io.RawIOBase):
    """xz streams (one or several, concatenated) decoded within ``XZ_DECODER_MEMORY_LIMIT``.

    ``lzma.open`` takes no memory limit, so a tiny file declaring a 4 GiB dictionary
    would make it allocate 4 GiB.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._decoder = lzma.LZMADecompressor(memlimit=XZ_DECODER_MEMORY_LIMIT)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        while True:
            if self._decoder.eof:  # a stream ended: another may follow, after zero padding
                rest = self._decoder.unused_data.lstrip(b"\0")
                while not rest:
                    more = self._raw.read(_READ_CHUNK)
                    if not more:
                        return 0
                    rest = more.lstrip(b"\0")
                self._decoder = lzma.LZMADecompressor(memlimit=XZ_DECODER_MEMORY_LIMIT)
                data = self._decoder.decompress(rest, size)
            elif self._decoder.needs_input:
                compressed = self._raw.read(_READ_CHUNK)
                if not compressed:
                    raise EOFError("the xz stream ends before its end-of-stream marker")
                data = self._decoder.decompress(compressed, size)
            else:
                data = self._decoder.decompress(b"", size)
            if data:
                buffer[: len(data)] = data
                return len(data)


def _decompressing(magic: bytes, raw: IO[bytes]) -> io.BufferedIOBase | None:
    """A decompressing reader of ``raw`` if ``magic`` (its first bytes) says it is
    gzip, bzip2 or xz; None if it is plain."""
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw, "rb")
    if magic[:6] == b"\xfd7zXZ\x00":
        return io.BufferedReader(_XzReader(raw))
    return None


class ContentStream(io.RawIOBase):
    """A file's content as a binary stream: decompressed (gzip, bzip2 or xz, told by
    magic bytes), hashed (sha256) and bounded as it is read.

    Reading past ``max_bytes`` raises ``InvalidInput`` naming the setting, so a small
    compressed file that expands without bound is refused after at most ``max_bytes``
    were produced, and never held whole. ``max_bytes`` None: no limit (a reader whose
    memory is bounded otherwise, e.g. by its batch).
    """

    def __init__(self, path: Path, max_bytes: int | None) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = hashlib.sha256()
        self._ahead = bytearray()
        try:
            raw = path.open("rb")
        except OSError as err:
            raise InvalidInput(f"{path}: cannot be read ({err.strerror}).") from err
        magic = raw.read(6)
        raw.seek(0)
        decompressing = _decompressing(magic, raw)
        self.compressed = decompressing is not None
        self._inner: io.BufferedIOBase = raw if decompressing is None else decompressing
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._ahead:  # bytes that head() read first
            count = min(len(buffer), len(self._ahead))
            buffer[:count] = self._ahead[:count]
            del self._ahead[:count]
            return count
        return self._read_inner(buffer)

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes of the content (fewer if it is shorter), left to be read."""
        while len(self._ahead) < size:
            chunk = bytearray(size - len(self._ahead))
            count = self._read_inner(chunk)
            if not count:
                break
            self._ahead += chunk[:count]
        return bytes(self._ahead[:size])

    def _read_inner(self, buffer: Any) -> int:
        """Decompress into ``buffer``; count, hash and bound what came."""
        try:
            count = self._inner.readinto(buffer)
        except _CORRUPT as err:
            if isinstance(err, lzma.LZMAError) and "Memory usage limit" in str(err):
                raise InvalidInput(
                    f"{self.path}: its xz stream needs more than "
                    f"{XZ_DECODER_MEMORY_LIMIT >> 20} MiB of memory to decompress (a "
                    "dictionary larger than xz's presets make); recompress it with "
                    "`xz -9` or less. Nothing was written."
                ) from err
            if not self.compressed:
                raise InvalidInput(f"{self.path}: cannot be read ({err}).") from err
            raise InvalidInput(
                f"{self.path}: the compressed stream is truncated or corrupt ({err}). "
                "Copy the file again from where it was made; nothing was written."
            ) from err
        self.size += count
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise InvalidInput(
                f"{self.path}: its content{' once decompressed' if self.compressed else ''} "
                f"is more than {self.max_bytes >> 20} MB, the limit set by "
                f"{MAX_DECOMPRESSED_SETTING}; nothing was written. If the file is genuine, "
                f"raise the limit (e.g. {MAX_DECOMPRESSED_SETTING}="
                f"{2 * (self.max_bytes >> 20)}) or split the file."
            )
        self._digest.update(memoryview(buffer)[:count])
        return count

    def read_all(self) -> bytes:
        """The rest of the content, held in memory (within the limit)."""
        # BytesIO hands its own buffer to getvalue(): the content is held once, not twice.
        held = io.BytesIO()
        chunk = bytearray(_READ_CHUNK)
        view = memoryview(chunk)
        while count := self.readinto(chunk):
            held.write(view[:count])
        return held.getvalue()

    def sha256(self) -> str:
        """Hex sha256 of the whole content: reads what is left first."""
        while self.read(_READ_CHUNK):
            pass
        return self._digest.hexdigest()

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
            self._raw.close()
        super().close()


def max_content_bytes(max_mb: int | None = None) -> int:
    """The content limit in bytes: ``max_mb``, or the ``ATLAS2D_MAX_DECOMPRESSED_MB`` setting."""
    if max_mb is None:
        from atlas2d.config import get_settings

        max_mb = get_settings().max_decompressed_mb
    return max_mb << 20


def read_bytes(path: Path, max_mb: int | None = None) -> bytes:
    """The file's content, decompressed when it is gzip, bzip2 or xz (by magic bytes).

    Args:
        path: the file.
        max_mb: refuse content larger than this, MB; None: the
            ``ATLAS2D_MAX_DECOMPRESSED_MB`` setting.

    Raises:
        InvalidInput: the file cannot be read, its compressed stream is truncated or
            corrupt, or its content is over the limit.
    """
    with ContentStream(path, max_content_bytes(max_mb)) as stream:
        return stream.read_all()


def content_sha256(path: Path, max_mb: int | None = None) -> str:
    """Hex sha256 of the file's content, decompressed as ingest reads it: what
    ``sources.sha256`` holds for a file ingested from wherever it lay. Streamed.

    Raises:
        InvalidInput: as ``read_bytes``.
    """
    with ContentStream(path, max_content_bytes(max_mb)) as stream:
        return stream.sha256()


def sha256_hex(content: bytes) -> str:
    """Hex sha256 of ``content``."""
    return hashlib.sha256(content).hexdigest()


def base_name(path: Path) -> str:
    """File name without compression suffix: ``a/vasprun.xml.gz`` → ``vasprun.xml``."""
    name = path.name
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def format_from_name(path: Path) -> str | None:
    name = base_name(path).lower()
    if "vasprun" in name or name.endswith(".xml"):
        return "vasprun"
    if "outcar" in name:
        return "outcar"
    if name.endswith((".extxyz", ".xyz", ".traj")):
        return "extxyz"
    if name.endswith(".json"):
        return "json"
    return None


def detect_format(path: Path, content: bytes) -> str:
    """A file's format from its name, and from its first bytes for JSON.

    Raises:
        InvalidInput: the name shows no format atlas2d reads.
    """
    by_name = format_from_name(path)
    if by_name is None:
        raise InvalidInput(
            f"{path}: cannot tell the format from the file name. Pass --format "
            f"({'|'.join(FORMATS)})."
        )
    if by_name == "json":
        return "alexandria-hull" if b'"entries"' in content[:64] else "alexandria-traj"
    return by_name


LABEL_TICKET = "atlas2d-label.json"
"""The sidecar naming the active-learning candidate a VASP folder labels
(``io.vasp_inputs``): read with the calculation, never ingested itself."""


def _calculation(folder: Path) -> Path | None:
    """The one calculation a VASP label folder holds: its vasprun.xml (compressed or
    not), else its OUTCAR; of custodian's ``.relax1``, ``.relax2``… the last; None while
    it has neither."""
    found = [p for p in folder.iterdir() if p.is_file()]
    for kind in ("vasprun", "outcar"):
        paths = [p for p in found if format_from_name(p) == kind]
        if paths:
            return max(paths, key=_relax_order)
    return None


def _relax_order(path: Path) -> tuple[int, int, str]:
    """A plain ``vasprun.xml`` last (the final run), then ``.relaxN`` by N."""
    name = base_name(path).lower()
    match = re.search(r"\.relax(\d+)", name)
    if match is None:
        return (1, 0, name)
    return (0, int(match.group(1)), name)


def expand_paths(paths: list[Path], format: str = "auto") -> list[Path]:
    """Files named directly, and the readable files under named directories (sorted).

    Inside a directory, with ``format="auto"``, only files whose name shows a format
    atlas2d reads are taken; a named file is always taken (and refused later with a
    clear message if its format is unknown).

    Raises:
        InvalidInput: a named path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            labelled = {ticket.parent for ticket in path.rglob(LABEL_TICKET)}
            for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                if candidate.parent in labelled:
                    continue  # one calculation per labelled folder, below
                if format != "auto" or format_from_name(candidate) is not None:
                    files.append(candidate)
            files += [c for folder in sorted(labelled) if (c := _calculation(folder))]
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory.")
    return files
