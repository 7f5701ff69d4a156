"""Many rows as one bound parameter, for ``jsonb_to_recordset`` in set-based writes."""

from __future__ import annotations

from typing import Any

import msgspec


def json_rows(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array: one parameter, parsed server-side by ``jsonb_to_recordset``
    (much cheaper than adapting one Python list per column)."""
    return msgspec.json.encode(rows).decode()


def numbered_rows(table: str, record: str) -> str:
    """SQL of a CTE ``numbered``: the rows of ``:rows`` (columns ``record``, as for
    ``jsonb_to_recordset``), each with a new ``id`` from ``table``'s identity drawn in
    the order of the rows, as a plain ``INSERT … SELECT`` would draw them.

    An insert can then take its rows in another order (``FROM numbered ORDER BY key``)
    while ids still follow the input: writers that insert the same unique keys sorted
    wait for each other in one direction only and cannot deadlock.
    """
    names = ", ".join(column.split()[0] for column in record.split(","))
    return (
        "WITH numbered AS MATERIALIZED ("
        f" SELECT nextval((SELECT pg_get_serial_sequence('{table}', 'id')::regclass)) AS id,"
        f" {names} FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS ({record}))"
        f" WITH ORDINALITY AS t({names}, input_order) ORDER BY input_order)"
    )
