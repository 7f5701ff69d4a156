"""Many rows as one bound parameter, for ``jsonb_to_recordset`` in set-based writes."""

from __future__ import annotations

from typing import Any

import msgspec


def json_rows(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array: one parameter, parsed server-side by ``jsonb_to_recordset``
    (much cheaper than adapting one Python list per column)."""
    return msgspec.json.encode(rows).decode()
