"""The ``frames`` table: binary COPY of new frames and reads of stored ones. Functions
take ``session`` first and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from atlas2d.db.copy_binary import COPY_HEADER, COPY_TRAILER
from atlas2d.db.models import Frame, Relaxation
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


@dataclass(frozen=True)
class StoredFrame:
    """The structure of a stored frame.

    Attributes:
        frame_id: ``frames.id``.
        species: atomic numbers, shape (n_sites,).
        cell: lattice vectors as rows, shape (3, 3), Å.
        positions: Cartesian positions, shape (n_sites, 3), Å.
        pbc: the relaxation's periodic flags (a, b, c).
    """

    frame_id: int
    species: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    pbc: tuple[bool, bool, bool]

    @property
    def n_sites(self) -> int:
        return len(self.species)


def frames_by_id(session: Session, frame_ids: Sequence[int]) -> list[StoredFrame]:
    """The structures of frames, by frame id."""
    rows = session.execute(
        select(Frame.id, Relaxation.species, Frame.cell, Frame.positions, Relaxation.pbc)
        .join(Relaxation, Relaxation.id == Frame.relaxation_id)
        .where(Frame.id.in_(list(frame_ids)))
        .order_by(Frame.id)
    )
    return [
        StoredFrame(frame_id, species, cell, positions, (pbc[0], pbc[1], pbc[2]))
        for frame_id, species, cell, positions, pbc in rows
    ]


def frame_atoms(frame: StoredFrame) -> Atoms:
    """The structure of a stored frame, flagged 3D periodic (as it was labelled)."""
    return Atoms(numbers=frame.species, positions=frame.positions, cell=frame.cell, pbc=True)


def final_structures(session: Session, relaxation_ids: Sequence[int]) -> dict[int, Atoms]:
    """{relaxation id: the structure of its last frame} (flagged 3D periodic)."""
    rows = session.execute(
        text(
            "SELECT DISTINCT ON (relaxation_id) relaxation_id, id FROM frames"
            " WHERE relaxation_id = ANY(:ids) ORDER BY relaxation_id, step DESC"
        ),
        {"ids": list(relaxation_ids)},
    )
    frame_of: dict[int, int] = dict(rows.tuples().all())
    frames = {frame.frame_id: frame for frame in frames_by_id(session, list(frame_of.values()))}
    return {relaxation: frame_atoms(frames[frame]) for relaxation, frame in frame_of.items()}
