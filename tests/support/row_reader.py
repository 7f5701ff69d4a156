"""The reader ``queries.training_sets.split_frames`` replaced (SQLAlchemy rows from a
server-side cursor, psycopg's lists made arrays): the reference its binary COPY reader
is checked against, and with the export's frame building as it was
(``reference_export_frames``) the reference of the MACE export's bytes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from atlas2d.db.types import Vec3Array
from atlas2d.io.records import ExportFrame
from atlas2d.mlff.forcefield import zero_out_of_plane
from atlas2d.queries.training_sets import TrainingFrame
from atlas2d.vocabulary import Split

REFERENCE_SQL = """
SELECT t.frame_id, t.split, f.step, f.cell, f.positions, f.forces, f.stress, f.energy,
       r.id AS relaxation_id, r.species, r.pbc, m.key AS material_key, m.dimensionality
FROM training_set_frames t
JOIN frames f ON f.id = t.frame_id
JOIN relaxations r ON r.id = f.relaxation_id
JOIN materials m ON m.id = r.material_id
WHERE t.training_set_id = :id AND t.split = :split
ORDER BY t.frame_id
"""


def reference_frames(
    session: Session, training_set_id: int, split: Split
) -> Iterator[TrainingFrame]:
    """The reader ``split_frames`` replaced: SQLAlchemy rows from a server-side cursor,
    psycopg's lists made arrays."""
    rows = session.execute(
        text(REFERENCE_SQL)
        .columns(positions=Vec3Array, forces=Vec3Array)
        .execution_options(stream_results=True, yield_per=2000),
        {"id": training_set_id, "split": split},
    )
    for row in rows:
        yield TrainingFrame(
            frame_id=row.frame_id,
            relaxation_id=row.relaxation_id,
            step=row.step,
            split=row.split,
            material_key=row.material_key,
            dimensionality=row.dimensionality,
            species=np.asarray(row.species, dtype=np.int64),
            cell=np.asarray(row.cell, dtype=np.float64),
            positions=row.positions,
            energy=float(row.energy),
            forces=row.forces,
            stress=None if row.stress is None else np.asarray(row.stress, dtype=np.float64),
            pbc=(row.pbc[0], row.pbc[1], row.pbc[2]),
        )


def reference_export_frames(
    session: Session, training_set_id: int, name: str, split: Split
) -> Iterator[ExportFrame]:
    """``services.trainset_export._export_frames`` as it was over ``reference_frames``: frame
    by frame, a layer's stress zeroed out of plane one at a time."""
    for frame in reference_frames(session, training_set_id, split):
        stress = frame.stress
        if stress is not None and frame.dimensionality == 2:
            stress = zero_out_of_plane(stress)
        yield ExportFrame(
            species=frame.species,
            cell=frame.cell,
            positions=frame.positions,
            energy=frame.energy,
            forces=frame.forces,
            stress=stress,
            info={
                "material_key": frame.material_key,
                "relaxation_id": frame.relaxation_id,
                "frame_id": frame.frame_id,
                "step": frame.step,
                "split": frame.split,
                "training_set": name,
            },
            pbc=frame.pbc,
        )
