"""Model files stored in the database (``artifact_blobs``), content-addressed by sha256.
Functions take ``session`` first and never commit."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from atlas2d.db.models import ArtifactBlob


def store_blob(session: Session, sha256: str, content: bytes) -> bool:
    """Store ``content`` under ``sha256``, its hex digest.

    Returns:
        True when it was stored, False when a blob with that hash was already there
        (the same bytes: it is not stored twice).

    Raises:
        ValueError: ``content``'s sha256 is not ``sha256``: a blob stored under another
            hash would be refused by every load (checked here, cheaply, in Python).
    """
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256:
        raise ValueError(
            f"Refusing to store a model file under sha256 {sha256[:16]}…: its bytes hash "
            f"to {actual[:16]}…."
        )
    inserted = session.execute(
        insert(ArtifactBlob)
        .values(sha256=sha256, n_bytes=len(content), content=content)
        .on_conflict_do_nothing(index_elements=[ArtifactBlob.sha256])
        .returning(ArtifactBlob.sha256)
    ).first()
    return inserted is not None


def blob_size(session: Session, sha256: str) -> int | None:
    """The stored blob's length in bytes, None when there is none."""
    return session.execute(
        select(ArtifactBlob.n_bytes).where(ArtifactBlob.sha256 == sha256)
    ).scalar_one_or_none()


def read_blob_slice(session: Session, sha256: str, offset: int, length: int) -> bytes:
    """``length`` bytes of the blob from byte ``offset`` (0-based; fewer at its end).

    The column is stored uncompressed out of line, so PostgreSQL reads only the slice."""
    data = session.execute(
        select(func.substring(ArtifactBlob.content, offset + 1, length)).where(
            ArtifactBlob.sha256 == sha256
        )
    ).scalar_one()
    return bytes(data)


def rehash_blob(session: Session, sha256: str) -> str | None:
    """The stored blob's sha256 computed again by the server (hex), None when there is
    none: the audit's check that the database's copy is intact."""
    return session.execute(
        select(func.encode(func.sha256(ArtifactBlob.content), "hex")).where(
            ArtifactBlob.sha256 == sha256
        )
    ).scalar_one_or_none()
