"""Vectorised decoding of binary ``COPY … TO STDOUT`` rows into numpy columns.

A batch of rows (the messages ``copy_binary.copied_rows`` yields, one row each) is
joined into one buffer and walked field by field for every row at once: each field's
4-byte length is gathered at each row's current offset, so variable-width fields
(``bytea``, arrays, text, NULLs) cost a few numpy passes per batch instead of Python
work per row and field. psycopg decoding the same rows into Python lists, then numpy,
cost as much as writing them out as MACE extxyz.

Format: https://www.postgresql.org/docs/16/sql-copy.html ("Binary Format"): per row an
int16 field count, then per field an int32 length (−1 for NULL) and that many bytes,
in network order. An array field is ``array_send``'s layout: int32 number of
dimensions, int32 has-NULLs flag, int32 element type OID, (int32 size, int32 lower
bound) per dimension, then each element as int32 length and value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NULL_LENGTH = -1
ARRAY_HEADER_BYTES = 12
"""ndim, has-NULLs flag, element type OID (int32 each); then 8 bytes per dimension."""


class CopiedBatch:
    """The fields of a batch of binary COPY rows, located but not yet decoded.

    Args:
        rows: each a row without the COPY header or trailer (``copied_rows``).
        names: the fields' names, in order (for messages); every row must have as
            many fields.

    Raises:
        ValueError: a row has another field count, or its fields do not end where
            the row ends (not a binary COPY row of this statement).
    """

    def __init__(self, rows: Sequence[bytes | memoryview], names: Sequence[str]) -> None:
        self.names = list(names)
        n_fields = len(self.names)
        row_lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        self.raw = b"".join(rows)
        self.buffer = np.frombuffer(self.raw, dtype=np.uint8)
        self.n_rows = len(rows)
        self._views: dict[str, np.ndarray] = {}
        starts = np.zeros(self.n_rows, dtype=np.int64)
        np.cumsum(row_lengths[:-1], out=starts[1:])
        if (self._read(starts, ">i2") != n_fields).any():
            raise ValueError(f"binary COPY rows do not all have {n_fields} fields")
        self.offsets: list[np.ndarray] = []
        """Per field: (rows,) byte offsets of its values in ``buffer``."""
        self.lengths: list[np.ndarray] = []
        """Per field: (rows,) byte lengths of its values, −1 for NULL."""
        position = starts + 2
        for _ in range(n_fields):
            length = self._read(position, ">i4").astype(np.int64)
            self.offsets.append(position + 4)
            self.lengths.append(length)
            position = position + 4 + np.maximum(length, 0)
        if (position != starts + row_lengths).any():
            raise ValueError("binary COPY rows do not end where their fields end")

    def _read(self, offsets: np.ndarray, dtype: str) -> np.ndarray:
        """(len(offsets),) values of a fixed-size ``dtype`` at byte ``offsets``."""
        view = self._views.get(dtype)
        if view is None:
            # Element i is the value whose first byte is byte i: any offset, no copy.
            item = np.dtype(dtype)
            size = max(len(self.raw) - item.itemsize + 1, 0)
            view = np.ndarray((size,), dtype=item, buffer=self.raw, strides=(1,))
            self._views[dtype] = view
        return view[offsets]

    def _series(self, starts: np.ndarray, counts: np.ndarray, step: int, dtype: str) -> np.ndarray:
        """``counts[i]`` values of ``dtype`` from ``starts[i]``, ``step`` bytes apart, for
        every i, concatenated."""
        ends = np.cumsum(counts)
        index = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) * step
        index += np.repeat(starts - (ends - counts) * step, counts)
        return self._read(index, dtype)

    def _not_null(self, field: int, what: str) -> None:
        if (self.lengths[field] == NULL_LENGTH).any():
            raise ValueError(f"{self.names[field]} is NULL ({what})")

    def scalars(self, field: int, dtype: str) -> list[Any]:
        """A fixed-size field as Python values (int, float, bool), None where NULL.

        ``dtype``: its network-order numpy type (``>i8``, ``>i4``, ``>i2``, ``>f8``,
        ``?`` for boolean).
        """
        lengths = self.lengths[field]
        nulls = lengths == NULL_LENGTH
        if ((lengths != np.dtype(dtype).itemsize) & ~nulls).any():
            raise ValueError(f"{self.names[field]} is not {dtype} in every row")
        if not nulls.any():
            return self._read(self.offsets[field], dtype).tolist()  # type: ignore[no-any-return]
        values: list[Any] = [None] * self.n_rows
        present = np.flatnonzero(~nulls)
        for row, value in zip(
            present.tolist(), self._read(self.offsets[field][present], dtype).tolist(), strict=True
        ):
            values[row] = value
        return values

    def texts(self, field: int) -> list[str | None]:
        """A ``text`` field as str, None where NULL."""
        raw = self.raw
        return [
            None if length == NULL_LENGTH else raw[start : start + length].decode()
            for start, length in zip(
                self.offsets[field].tolist(), self.lengths[field].tolist(), strict=True
            )
        ]

    def vec3_bytes(self, field: int) -> tuple[np.ndarray, np.ndarray]:
        """A non-NULL ``bytea`` of little-endian float64 (n, 3) arrays (``Vec3Array``).

        Returns:
            values: (Σn, 3) float64, every row's array in row order. bounds: (rows + 1,)
            int64; row i is ``values[bounds[i]:bounds[i + 1]]``.
        """
        self._not_null(field, "bytea")
        lengths = self.lengths[field]
        if (lengths % 24).any():
            raise ValueError(f"{self.names[field]} holds a bytea whose length is not 24·n")
        values = self._series(self.offsets[field], lengths // 8, 8, "<f8")
        return values.astype(np.float64, copy=False).reshape(-1, 3), _bounds(lengths // 24)

    def vectors(self, field: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """A non-NULL 1-D array field without NULL elements (e.g. ``int2[]``).

        Returns:
            values: (Σn,) in native order, every row's elements in row order. bounds:
            (rows + 1,) int64; row i is ``values[bounds[i]:bounds[i + 1]]``.
        """
        self._not_null(field, "array")
        offsets = self.offsets[field]
        ndim = self._read(offsets, ">i4")
        # An empty array has 0 dimensions and no further header.
        if ((ndim != 1) & (ndim != 0)).any():
            raise ValueError(f"{self.names[field]} holds an array that is not 1-D")
        counts = np.where(ndim == 1, self._read(offsets + ARRAY_HEADER_BYTES, ">i4"), 0)
        values = self._elements(field, offsets + ARRAY_HEADER_BYTES + 8 * ndim, counts, dtype)
        return values, _bounds(counts)

    def matrices(self, field: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """A ``double precision[][]`` field whose every non-NULL value has ``shape``.

        Returns:
            values: (rows, *shape) float64 (zeros where NULL). nulls: (rows,) bool.
        """
        nulls = self.lengths[field] == NULL_LENGTH
        present = np.flatnonzero(~nulls)
        offsets = self.offsets[field][present]
        header = np.stack([self._read(offsets + 4 * k, ">i4") for k in (0, 3, 5)], axis=-1)
        if (header != (2, *shape)).any():
            raise ValueError(
                f"{self.names[field]} holds an array that is not {shape[0]}×{shape[1]}"
            )
        size = shape[0] * shape[1]
        counts = np.full(len(present), size, dtype=np.int64)
        values = np.zeros((self.n_rows, *shape), dtype=np.float64)
        elements = self._elements(field, offsets + ARRAY_HEADER_BYTES + 16, counts, ">f8", present)
        values[present] = elements.reshape(-1, *shape)
        return values, nulls

    def _elements(
        self,
        field: int,
        starts: np.ndarray,
        counts: np.ndarray,
        dtype: str,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """The ``counts`` elements (length + value each) from ``starts``, in native order.

        Raises:
            ValueError: an element is NULL or of another size, or the elements do not
                fill the rest of the field (``rows``: the rows ``starts`` belong to).
        """
        item = np.dtype(dtype).itemsize
        offsets = self.offsets[field] if rows is None else self.offsets[field][rows]
        lengths = self.lengths[field] if rows is None else self.lengths[field][rows]
        if (self._read(offsets + 4, ">i4") != 0).any():  # the header's has-NULLs flag
            raise ValueError(f"{self.names[field]} holds an array with NULL elements")
        if (starts + counts * (4 + item) != offsets + lengths).any():
            raise ValueError(f"{self.names[field]} holds elements of another size than {dtype}")
        if (self._series(starts, counts, 4 + item, ">i4") != item).any():
            raise ValueError(f"{self.names[field]} holds elements of another size than {dtype}")
        values = self._series(starts + 4, counts, 4 + item, dtype)
        return values.astype(np.dtype(dtype).newbyteorder("="))


def _bounds(counts: np.ndarray) -> np.ndarray:
    """(len(counts) + 1,) running totals from 0: where each row's items start and end."""
    bounds = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    return bounds
