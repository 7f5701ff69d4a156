"""Printing an audit report: titled tables for people, or one JSON document."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from atlas2d.cli.output import OutputFormat, console, print_frame

if TYPE_CHECKING:
    import pandas as pd

    from atlas2d.queries.audits_source import Listing

SHORT_SHA256 = 12
"""Hex characters of a sha256 shown in tables (JSON keeps all 64)."""


class ReportFormat(str, Enum):
    """A report has several tables: a table each for people, or one JSON document."""

    table = "table"
    json = "json"


def for_people(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy to print: times to the minute, sha256 shortened (the JSON has them whole)."""
    import pandas as pd

    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            shown[column] = values.dt.strftime("%Y-%m-%d %H:%M")
        elif column == "sha256" or column.endswith("_sha256"):
            shown[column] = values.str.slice(0, SHORT_SHA256)
    return shown


def print_section(frame: pd.DataFrame, title: str, none: str) -> None:
    """One titled table, or the line ``none`` when ``frame`` is empty."""
    if frame.empty:
        console.print(f"[dim]{escape(none)}[/dim]", highlight=False)
        return
    print_frame(for_people(frame), OutputFormat.table, title=title)


def listing_line(label: str, listing: Listing, everything: str) -> str:
    """``label: N — a, b, c … (first 10; EVERYTHING lists all)``, escaped."""
    if not listing.count:
        return f"{escape(label)}: none"
    shown = ", ".join(escape(str(item)) for item in listing.items)
    more = "" if listing.complete else f" … (first {len(listing.items)}; {everything} lists all)"
    return f"{escape(label)}: {listing.count:,} — {shown}{more}"


def listing_json(listing: Listing) -> dict[str, Any]:
    """``{"count": n, "items": [...], "complete": bool}``."""
    return {"count": listing.count, "items": listing.items, "complete": listing.complete}
