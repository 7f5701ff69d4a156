"""Printing results as a table, CSV or JSON."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    import pandas as pd

PIPE_WIDTH = 240
"""Columns of output written to a file or a pipe, where there is no screen to fit."""


def make_console(stderr: bool = False, file: IO[str] | None = None) -> Console:
    """Rich's console, except that written to a file or a pipe without ``COLUMNS`` set it
    folds at :data:`PIPE_WIDTH` columns, not Rich's 80: at 80 a table of results folded
    numbers across two lines in every log of ``atlas2d demo``."""
    console = Console(stderr=stderr, file=file)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, file=file, width=PIPE_WIDTH)
    return console


console = make_console()
error_console = make_console(stderr=True)


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _cell(value: Any) -> str:
    """A value as a table shows it: floats rounded for reading (CSV and JSON keep every
    digit): whole numbers without decimals, 1000 and above to the unit, smaller values
    to 4 significant digits (35.31, 0.5455, 2.1e-05)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return ""
    if isinstance(value, float):
        return readable_float(value)
    return str(value)


def readable_float(value: float) -> str:
    """``value`` to 4 significant digits, or to the unit from 1000 up (never 1.448e+04)."""
    if value.is_integer() or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):  # datetimes and pandas Timestamps
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def print_frame(frame: pd.DataFrame, fmt: OutputFormat, title: str | None = None) -> None:
    """Print a DataFrame in the chosen format (CSV and JSON go to stdout unadorned)."""
    if fmt is OutputFormat.csv:
        frame.to_csv(sys.stdout, index=False)
        return
    if fmt is OutputFormat.json:
        records = [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")  # wrap, never cut, values
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def print_json(value: Any) -> None:
    """Print a JSON document (dicts, lists, DataFrames inside are converted)."""

    import pandas as pd

    def default(obj: Any) -> Any:
        if isinstance(obj, pd.DataFrame):
            return [{k: _jsonable(v) for k, v in r.items()} for r in obj.to_dict("records")]
        return _jsonable(obj)

    sys.stdout.write(json.dumps(value, indent=2, default=default) + "\n")


def print_listing(frame: pd.DataFrame, fmt: OutputFormat, total: int, title: str, cut: str) -> None:
    """A listing of ``len(frame)`` of ``total`` rows, titled ``title`` (the whole count,
    e.g. "9,195 materials"). When the list is cut the title reads
    "showing N of TITLE``cut``" (``cut`` says how to see more): in a table's title, or on
    stderr after CSV and JSON so that stdout stays one clean document."""
    shown = len(frame)
    if shown < total:
        title = f"showing {shown:,} of {title}{cut}"
    if fmt is OutputFormat.table:
        print_frame(frame, fmt, title=title)
        return
    print_frame(frame, fmt)
    if shown < total:
        error_console.print(title, highlight=False, markup=False)
