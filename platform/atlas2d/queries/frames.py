"""The ``frames`` table: binary COPY of new frames and reads of stored ones. Functions
take ``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.db.copy_binary import COPY_HEADER, COPY_TRAILER
from atlas2d.db.session import driver_connection

FRAME_COLUMNS = (
    "relaxation_id, step, n_sites, cell, positions, forces, stress, energy, energy_per_atom,"
    " energy_change, max_force, max_abs_stress, area_per_atom, has_isolated_atom, digest"
)


COPY_CHUNK_BYTES = 8 << 20


def copy_frames(session: Session, encoded_batches: Iterable[bytes]) -> None:
    """Stream binary-COPY rows (from ``copy_binary.encode_rows``) into ``frames``."""
    from psycopg.copy import QueuedLibpqWriter

    connection = driver_connection(session)
    with (
        connection.cursor() as cursor,
        cursor.copy(
            f"COPY frames ({FRAME_COLUMNS}) FROM STDIN (FORMAT BINARY)",
            # A writer thread sends while this thread encodes the next chunk, so the
            # server's work overlaps ours (the two cores are both busy).
            writer=QueuedLibpqWriter(cursor),
        ) as copy,
    ):
        copy.write(COPY_HEADER)
        pending: list[bytes] = []
        size = 0
        for batch in encoded_batches:
            pending.append(batch)
            size += len(batch)
            if size >= COPY_CHUNK_BYTES:
                copy.write(b"".join(pending))
                pending, size = [], 0
        if pending:
            copy.write(b"".join(pending))
        copy.write(COPY_TRAILER)


def frames_by_id(session: Session, frame_ids: Sequence[int]) -> list[Any]:
    """Geometry and labels of frames, by frame id."""
    return list(
        session.execute(
            text(
                "SELECT f.id AS frame_id, f.step, f.n_sites, f.cell, f.positions, f.forces,"
                " f.stress, f.energy, r.species, r.pbc, m.dimensionality"
                " FROM frames f JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id"
                " WHERE f.id = ANY(:ids) ORDER BY f.id"
            ),
            {"ids": list(frame_ids)},
        )
    )
