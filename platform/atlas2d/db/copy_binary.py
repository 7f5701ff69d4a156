"""Vectorised encoder for PostgreSQL's binary COPY format, and the framing of a binary
COPY read back.

A batch of rows whose fields all have a fixed width (numbers, 3×3 float8 arrays,
``bytea`` of one length, NULL for the whole batch) is laid out as one numpy
structured array and turned into bytes in a single pass: no Python loop per row.
Format: https://www.postgresql.org/docs/16/sql-copy.html ("Binary Format").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_HEADER = COPY_SIGNATURE + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
FLOAT8_OID = 701

_SCALARS = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "bool": "?"}
_MATRIX3_HEADER = np.array([2, 0, FLOAT8_OID, 3, 1, 3, 1], dtype=">i4")
_MATRIX3_ELEMENTS = np.dtype([("length", ">i4"), ("value", ">f8")])


@dataclass(frozen=True)
class Field:
    """One column of a batch.

    Attributes:
        kind: ``int2``, ``int4``, ``int8``, ``float8``, ``bool``, ``matrix3`` (a 3×3
            ``double precision[]``), ``vec3`` (an (n, 3) float64 array as little-endian
            ``bytea``), ``bytes`` (a fixed-length ``bytea``) or ``null``.
        values: (rows,) for scalars, (rows, 3, 3) for matrix3, (rows, n, 3) for vec3,
            (rows, k) uint8 for bytes, None for null.
    """

    kind: str
    values: Any = None


def _field_dtype(field: Field) -> list[tuple[Any, ...]]:
    if field.kind == "null":
        return [("length", ">i4")]
    if field.kind in _SCALARS:
        return [("length", ">i4"), ("value", _SCALARS[field.kind])]
    if field.kind == "matrix3":
        return [("length", ">i4"), ("header", ">i4", (7,)), ("elements", _MATRIX3_ELEMENTS, (9,))]
    if field.kind == "vec3":
        n_values = int(np.prod(field.values.shape[1:]))
        return [("length", ">i4"), ("value", "<f8", (n_values,))]
    if field.kind == "bytes":
        return [("length", ">i4"), ("value", "u1", (field.values.shape[1],))]
    raise ValueError(f"unknown field kind {field.kind!r}")


def encode_rows(fields: list[Field]) -> bytes:
    """Encode rows (without COPY header/trailer) from column-wise ``fields``."""
    n_rows = next(len(f.values) for f in fields if f.values is not None)
    dtype = np.dtype(
        [("n_fields", ">i2")] + [(f"f{i}", _field_dtype(f)) for i, f in enumerate(fields)]
    )
    rows = np.empty(n_rows, dtype=dtype)
    rows["n_fields"] = len(fields)
    for i, field in enumerate(fields):
        column = rows[f"f{i}"]
        if field.kind == "null":
            column["length"] = -1
        elif field.kind in _SCALARS:
            column["length"] = np.dtype(_SCALARS[field.kind]).itemsize
            column["value"] = field.values
        elif field.kind == "matrix3":
            column["length"] = 7 * 4 + 9 * _MATRIX3_ELEMENTS.itemsize
            column["header"] = _MATRIX3_HEADER
            column["elements"]["length"] = 8
            column["elements"]["value"] = np.asarray(field.values, dtype=np.float64).reshape(
                n_rows, 9
            )
        elif field.kind == "bytes":
            column["length"] = field.values.shape[1]
            column["value"] = field.values
        elif field.kind == "vec3":
            values = np.asarray(field.values, dtype=np.float64).reshape(n_rows, -1)
            column["length"] = values.shape[1] * 8
            column["value"] = values
    return rows.tobytes()


def copied_rows(messages: Iterable[bytes | memoryview]) -> Iterator[memoryview]:
    """The rows of a binary ``COPY … TO STDOUT``, from the messages the driver reads
    (psycopg's ``Copy`` iterated), without the header and the trailer.

    PostgreSQL sends every row as one message ("Messages sent from the backend will
    always correspond to single data rows"), the header at the start of the first, the
    trailer alone in the last; so each message is one row, laid out as ``encode_rows``
    lays out rows.
    """
    for message in messages:
        row = memoryview(message)
        if row[: len(COPY_SIGNATURE)] == COPY_SIGNATURE:
            extension = int.from_bytes(row[len(COPY_HEADER) - 4 : len(COPY_HEADER)], "big")
            row = row[len(COPY_HEADER) + extension :]
        if len(row) and row != COPY_TRAILER:
            yield row
