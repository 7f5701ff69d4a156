"""The vectorised binary-COPY encoder round-trips every field kind through PostgreSQL, and
a binary COPY read back gives the encoder's rows byte for byte (what ``trainset verify``
hashes)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.copy_binary import COPY_HEADER, COPY_TRAILER, Field, copied_rows, encode_rows
from atlas2d.db.types import vec3_from_bytes


def test_rows_round_trip(sessions: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(0)
    n_rows, n_sites = 5, 4
    ints = np.arange(n_rows) - 2
    floats = rng.standard_normal(n_rows)
    matrices = rng.standard_normal((n_rows, 3, 3))
    vectors = rng.standard_normal((n_rows, n_sites, 3))
    flags = np.array([True, False, True, True, False])
    payload = encode_rows(
        [
            Field("int4", ints),
            Field("int2", ints),
            Field("int8", ints * 10**10),
            Field("float8", floats),
            Field("matrix3", matrices),
            Field("vec3", vectors),
            Field("null"),
            Field("bool", flags),
        ]
    )
    with sessions.begin() as session:
        session.execute(
            text(
                "CREATE TEMP TABLE copy_probe (a int4, b int2, c int8, d float8,"
                " m float8[], v bytea, n float8[], f boolean)"
            )
        )
        raw = session.connection().connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY copy_probe FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(COPY_HEADER + payload + COPY_TRAILER)
        rows = session.execute(text("SELECT a, b, c, d, m, v, n, f FROM copy_probe")).all()
    assert [r.a for r in rows] == ints.tolist()
    assert [r.b for r in rows] == ints.tolist()
    assert [r.c for r in rows] == (ints * 10**10).tolist()
    assert np.array_equal([r.d for r in rows], floats)  # bit-exact
    assert np.array_equal(np.array([r.m for r in rows]), matrices)
    assert np.array_equal(np.stack([vec3_from_bytes(r.v) for r in rows]), vectors)
    assert all(r.n is None for r in rows)
    assert [r.f for r in rows] == flags.tolist()


def test_rows_copied_out_are_the_encoded_rows(sessions: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(1)
    n_rows, n_sites = 4, 3
    fields = [
        Field("int4", np.arange(n_rows)),
        Field("float8", rng.standard_normal(n_rows)),
        Field("matrix3", rng.standard_normal((n_rows, 3, 3))),
        Field("vec3", rng.standard_normal((n_rows, n_sites, 3))),
        Field("null"),
    ]
    encoded = encode_rows(fields)
    size = len(encoded) // n_rows
    with sessions.begin() as session:
        session.execute(
            text("CREATE TEMP TABLE copy_out (a int4, d float8, m float8[], v bytea, n float8[])")
        )
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy("COPY copy_out FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_HEADER + encoded + COPY_TRAILER)
            with cursor.copy(
                "COPY (SELECT * FROM copy_out ORDER BY a) TO STDOUT (FORMAT BINARY)"
            ) as copy:
                rows = [bytes(row) for row in copied_rows(copy)]
    assert rows == [encoded[i * size : (i + 1) * size] for i in range(n_rows)]
    # A header extension area is skipped; nothing but the trailer: no row.
    extended = COPY_HEADER[:-4] + (3).to_bytes(4, "big") + b"abc" + rows[0]
    assert [bytes(r) for r in copied_rows([extended, rows[1], COPY_TRAILER])] == rows[:2]
    assert list(copied_rows([COPY_HEADER, COPY_TRAILER])) == []
