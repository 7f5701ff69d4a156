"""Reading input files: decompression by magic bytes, hashing, format detection."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from pathlib import Path

from atlas2d.errors import InvalidInput
from atlas2d.vocabulary import INPUT_FORMATS

FORMATS = INPUT_FORMATS
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip, bzip2 or xz (by magic bytes).

    Raises:
        InvalidInput: the file cannot be read or its compressed stream is truncated.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InvalidInput(f"{path}: cannot be read ({err.strerror}).") from err
    try:
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(raw)
    except (EOFError, OSError, ValueError, lzma.LZMAError) as err:
        raise InvalidInput(
            f"{path}: the compressed stream is truncated or corrupt ({err}). "
            "Copy the file again from where it was made; nothing was written."
        ) from err
    return raw


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
            for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                if format != "auto" or format_from_name(candidate) is not None:
                    files.append(candidate)
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or directory.")
    return files
