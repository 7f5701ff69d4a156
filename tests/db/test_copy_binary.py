"""The vectorised binary-COPY encoder round-trips every field kind through PostgreSQL."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.copy_binary import COPY_HEADER, COPY_TRAILER, Field, encode_rows
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
