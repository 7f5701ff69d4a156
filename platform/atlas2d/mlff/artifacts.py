"""Model files on disk: their sha256, refusing one that changed, and writing a verified
copy into the local cache.

Model files are pickles (torch.save); loading one runs code. The registry stores each
file's sha256 and every load reads the bytes once, checks them, and loads those same
bytes, so a file swapped between the check and the load is never used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from atlas2d.errors import ArtifactChanged, NotFound


def sha256_of_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_verified(path: Path, expected_sha256: str, label: str) -> bytes:
    """The bytes of ``path`` after checking them against ``expected_sha256``.

    Args:
        label: how to name the model in messages, e.g. ``mos2:3``.

    Raises:
        NotFound: the file is missing or cannot be read.
        ArtifactChanged: the file's sha256 differs from the registered one.
    """
    if not path.is_file():
        raise NotFound(
            f"The artifact of model {label} is missing: {path} does not exist. Restore it "
            "from a backup or train the model again."
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NotFound(
            f"The artifact of model {label} cannot be read: {path}: "
            f"{error.strerror or error}. Check its permissions, or delete it to have the "
            "database's copy fetched on the next load."
        ) from error
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactChanged(
            f"Refusing to load model {label}: {path} has sha256 {actual[:16]}…, the registry "
            f"recorded {expected_sha256[:16]}…. The file changed after it was written (model "
            "files are pickles and run code when loaded); delete it to have the database's "
            "verified copy fetched on the next load, or restore the original."
        )
    return data


def write_verified(path: Path, chunks: Iterable[bytes], expected_sha256: str, label: str) -> None:
    """Write ``chunks`` to ``path`` only if together they hash to ``expected_sha256``.

    The bytes go to a temporary file beside ``path`` (one chunk in memory at a time)
    and replace ``path`` in one rename once checked, so that a reader never sees part
    of a file and concurrent writers of the same file do not interfere. The file is
    synced before the rename (and the folder after) so that a crash leaves the old file
    or the whole new one, and gets the mode a plain new file would (``0o666`` less the
    umask), so other users sharing ``ATLAS2D_HOME`` (Dask workers) can read it.

    Args:
        label: how to name the model in messages, e.g. ``mos2:3``.

    Raises:
        ArtifactChanged: the bytes' sha256 differs; nothing is written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise ArtifactChanged(
                f"Refusing to load model {label}: the database's copy of its file has sha256 "
                f"{actual[:16]}…, the registry recorded {expected_sha256[:16]}…; the stored "
                "copy is damaged (`atlas2d audit model` checks it). Restore the database from "
                "a backup or train the model again."
            )
        Path(temporary).chmod(0o666 & ~_umask())  # mkstemp makes it 0600
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _umask() -> int:
    """The process's umask: from ``/proc`` where Linux shows it (setting and restoring
    it, the fallback, changes it for other threads for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (not every platform or file
    system can open or sync a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
