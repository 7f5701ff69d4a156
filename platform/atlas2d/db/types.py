"""Column types for numpy arrays.

* ``Vec3Array``: per-atom (n, 3) float64 arrays stored as little-endian ``bytea``
  (8 bytes × 3 × n). Tables pair it with an ``n_sites`` column and a length CHECK.
* ``Matrix3``: a 3×3 float64 matrix stored as ``double precision[][]``.
* ``SmallIntArray``: a 1-D integer array (e.g. atomic numbers) as ``int2[]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Double, LargeBinary, SmallInteger
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator

LITTLE_ENDIAN_F8 = np.dtype("<f8")


def vec3_to_bytes(array: Any) -> bytes:
    """Encode an (n, 3) array as little-endian float64 bytes (24·n bytes)."""
    values = np.ascontiguousarray(array, dtype=LITTLE_ENDIAN_F8)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"expected an (n, 3) array, got shape {values.shape}")
    return values.tobytes()


def vec3_from_bytes(raw: bytes) -> np.ndarray:
    """Decode little-endian float64 bytes into an (n, 3) array in native order."""
    return np.frombuffer(raw, dtype=LITTLE_ENDIAN_F8).astype(np.float64).reshape(-1, 3)


class Vec3Array(TypeDecorator[np.ndarray]):
    """Per-atom (n, 3) float64 array ⇄ little-endian ``bytea``."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        return None if value is None else vec3_to_bytes(value)

    def process_result_value(self, value: Any, dialect: Any) -> np.ndarray | None:
        return None if value is None else vec3_from_bytes(bytes(value))


class Matrix3(TypeDecorator[np.ndarray]):
    """A 3×3 float64 matrix ⇄ ``double precision[][]``."""

    impl = ARRAY(Double, dimensions=2)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> list[list[float]] | None:
        if value is None:
            return None
        # psycopg refuses lists mixing ints and floats: go through float64.
        matrix = np.asarray(value, dtype=np.float64)
        if matrix.shape != (3, 3):
            raise ValueError(f"expected a 3x3 matrix, got shape {matrix.shape}")
        return matrix.tolist()

    def process_result_value(self, value: Any, dialect: Any) -> np.ndarray | None:
        return None if value is None else np.asarray(value, dtype=np.float64)


class SmallIntArray(TypeDecorator[np.ndarray]):
    """A 1-D integer array ⇄ ``smallint[]`` (atomic numbers fit in int2)."""

    impl = ARRAY(SmallInteger, dimensions=1)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> list[int] | None:
        return None if value is None else [int(v) for v in np.asarray(value).ravel()]

    def process_result_value(self, value: Any, dialect: Any) -> np.ndarray | None:
        return None if value is None else np.asarray(value, dtype=np.int64)
