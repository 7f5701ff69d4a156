"""Model files on disk: their sha256, and refusing one that changed.

Model files are pickles (torch.save); loading one runs code. The registry stores each
file's sha256 and every load reads the bytes once, checks them, and loads those same
bytes, so a file swapped between the check and the load is never used.
"""

from __future__ import annotations

import hashlib
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
        NotFound: the file is missing.
        ArtifactChanged: the file's sha256 differs from the registered one.
    """
    if not path.is_file():
        raise NotFound(
            f"The artifact of model {label} is missing: {path} does not exist. Restore it "
            "from a backup or train the model again."
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ArtifactChanged(
            f"Refusing to load model {label}: {path} has sha256 {actual[:16]}…, the registry "
            f"recorded {expected_sha256[:16]}…. The file changed after training (model files "
            "are pickles and run code when loaded); restore the original or train again."
        )
    return data
