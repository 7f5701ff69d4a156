"""Per-frame content digests: xxh3-128 of a frame's stored content.

The digest input is the frame's step, energy, cell, positions, forces and stress laid
out by the binary-COPY encoder (so ingest, which already encodes rows, and
``trainset verify``, which re-encodes rows read back, hash the very same bytes).
A digest detects any change to a frame; training-set hashes are sha256 over digests.
"""

from __future__ import annotations

import numpy as np
import xxhash

from atlas2d.db.copy_binary import Field, encode_rows

DIGEST_BYTES = 16
DIGEST_COLUMNS = ("step", "energy", "cell", "positions", "forces", "stress")
"""The ``frames`` columns a digest covers, in the order they are encoded."""


def frame_digests(
    steps: np.ndarray,
    energies: np.ndarray,
    cells: np.ndarray,
    positions: np.ndarray,
    forces: np.ndarray,
    stresses: np.ndarray | None,
) -> np.ndarray:
    """Digests of F frames of one size.

    Args:
        steps: (F,) ints; energies: (F,) eV; cells: (F, 3, 3) Å; positions, forces:
            (F, N, 3) Å, eV/Å; stresses: (F, 3, 3) eV/Å³ or None.

    Returns:
        (F, 16) uint8.
    """
    rows = encode_rows(
        [
            Field("int4", steps),
            Field("float8", energies),
            Field("matrix3", cells),
            Field("vec3", positions),
            Field("vec3", forces),
            Field("matrix3", stresses) if stresses is not None else Field("null"),
        ]
    )
    n_frames = len(energies)
    size = len(rows) // n_frames if n_frames else 0
    view = memoryview(rows)
    digests = np.empty((n_frames, DIGEST_BYTES), dtype=np.uint8)
    for f in range(n_frames):
        digests[f] = np.frombuffer(
            xxhash.xxh3_128_digest(view[f * size : (f + 1) * size]), dtype=np.uint8
        )
    return digests


def digest_of_fields(fields: bytes | memoryview) -> bytes:
    """The digest of one frame from its :data:`DIGEST_COLUMNS` as a binary COPY sends
    them (each field's length and value, without the row's field count): the same bytes
    ``frame_digests`` hashes, so no column is decoded."""
    return xxhash.xxh3_128_digest(len(DIGEST_COLUMNS).to_bytes(2, "big") + fields)
