"""The batch decoder of binary COPY rows gives what psycopg decodes from the same rows,
NULLs and empty arrays included, and refuses rows that are not laid out as asked."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.copy_binary import copied_rows
from atlas2d.db.copy_columns import CopiedBatch
from atlas2d.db.session import driver_connection

ROWS = """SELECT * FROM (VALUES
    (1::int8, 2::int2, '-0'::float8, true, 'a'::text, '{1,2,3}'::int2[],
     '{{1,2,3},{4,5,6},{7,8,-0.0}}'::float8[], '\\x000000000000f03f'::bytea),
    (NULL, NULL, NULL, NULL, NULL, '{}'::int2[], NULL, ''::bytea),
    ('-9223372036854775808'::int8, (-32768)::int2, '1.7976931348623157e308'::float8, false, 'µ «q»', '{-5}',
     '{{0,0,0},{0,0,0},{0,0,5e-324}}', '\\x000000000000f0bf0000000000000080')
) v(i, s, f, b, t, z, m, v) ORDER BY i NULLS FIRST"""
NAMES = ("i", "s", "f", "b", "t", "z", "m", "v")


def _copied(session: Session, query: str) -> list[memoryview]:
    with (
        driver_connection(session).cursor() as cursor,
        cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy,
    ):
        return list(copied_rows(copy))


def test_batch_equals_psycopg_decoding(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        batch = CopiedBatch(_copied(session, ROWS), NAMES)
        expected = session.execute(text(ROWS)).all()
    assert batch.n_rows == 3
    for field, dtype in enumerate((">i8", ">i2", ">f8", "?")):
        values = batch.scalars(field, dtype)
        assert values == [row[field] for row in expected]
        assert [type(v) for v in values] == [type(row[field]) for row in expected]
    assert np.signbit(batch.scalars(2, ">f8")[2])  # -0.0 kept (rows by i, NULL first)
    assert batch.texts(4) == [row[4] for row in expected]
    species, bounds = batch.vectors(5, ">i2")
    assert species.dtype == np.int16 and bounds.tolist() == [0, 0, 1, 4]
    assert [species[a:b].tolist() for a, b in pairwise(bounds)] == [row[5] for row in expected]
    matrices, nulls = batch.matrices(6, (3, 3))
    assert nulls.tolist() == [True, False, False]
    for matrix, row in zip(matrices[1:], expected[1:], strict=True):
        assert matrix.tobytes() == np.asarray(row[6], dtype=np.float64).tobytes()
    # bytea of 8 and 16 bytes is no (n, 3) float64 array.
    with pytest.raises(ValueError, match="v holds a bytea whose length is not 24"):
        batch.vec3_bytes(7)


def test_vec3_bytea_of_every_row(sessions: sessionmaker[Session]) -> None:
    arrays = [np.array([[-0.0, 1.0, 2.0]]), np.zeros((0, 3)), np.arange(6.0).reshape(2, 3)]
    query = "SELECT * FROM unnest(CAST(:v AS bytea[])) WITH ORDINALITY u(v, n) ORDER BY n"
    literal = "{" + ",".join('"\\\\x' + a.astype("<f8").tobytes().hex() + '"' for a in arrays) + "}"
    with sessions.begin() as session:
        rows = _copied(session, query.replace(":v", f"'{literal}'"))
    values, bounds = CopiedBatch(rows, ("v", "n")).vec3_bytes(0)
    assert bounds.tolist() == [0, 1, 1, 3]
    assert values.tobytes() == np.concatenate(arrays).tobytes()


@pytest.mark.parametrize(
    ("query", "read", "message"),
    [
        ("SELECT '{1,NULL}'::int2[]", lambda b: b.vectors(0, ">i2"), "NULL elements"),
        ("SELECT '{{1,2},{3,4}}'::int2[]", lambda b: b.vectors(0, ">i2"), "not 1-D"),
        ("SELECT '{1,2}'::int4[]", lambda b: b.vectors(0, ">i2"), "another size"),
        ("SELECT NULL::int2[]", lambda b: b.vectors(0, ">i2"), "is NULL"),
        ("SELECT '{1,2,3,4,5,6,7,8,9}'::float8[]", lambda b: b.matrices(0, (3, 3)), "3×3"),
        ("SELECT 1::int4", lambda b: b.scalars(0, ">i8"), "is not >i8"),
    ],
)
def test_a_field_not_as_asked_is_refused(
    sessions: sessionmaker[Session], query: str, read, message: str
) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        batch = CopiedBatch(_copied(session, query), ("x",))
    with pytest.raises(ValueError, match=message):
        read(batch)


def test_rows_of_another_field_count_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        rows = _copied(session, "SELECT 1, 2")
    with pytest.raises(ValueError, match="do not all have 3 fields"):
        CopiedBatch(rows, ("a", "b", "c"))
