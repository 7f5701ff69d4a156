"""``atlas2d sql`` and ``atlas2d materials …``: read the database from the shell."""

from __future__ import annotations

from typing import Any, Protocol

import typer

from atlas2d.cli.output import OutputFormat, console, print_frame, print_json, print_listing
from atlas2d.vocabulary import SQL_TIMEOUT_MAX_S, counted

materials_app = typer.Typer(help="List and inspect materials.", no_args_is_help=True)


def sql(
    statement: str = typer.Argument(
        ..., help="One SQL query that returns rows (SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN)."
    ),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    limit: int = typer.Option(
        10_000,
        "--limit",
        min=1,
        help="Print at most this many rows; stderr says when more were cut.",
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        min=0.001,
        max=SQL_TIMEOUT_MAX_S,
        help="Seconds the query may run, its rows included (default: ATLAS2D_SQL_TIMEOUT_S, 60).",
    ),
) -> None:
    """Run one SQL query as a read-only login, in a READ ONLY transaction, and print its
    rows as they arrive.

    The login is the embedded server's atlas2d_sql, or ATLAS2D_READER_DATABASE_URL with
    an external server; it may only read (a member of atlas2d_reader).
    """
    from atlas2d.cli.context import connect_reader
    from atlas2d.cli.output import error_console
    from atlas2d.config import get_settings
    from atlas2d.services.sql import run_user_sql

    timeout_s = timeout if timeout is not None else get_settings().sql_timeout_s
    reader = connect_reader()
    writer = _row_writer(format)
    run = run_user_sql(reader.sessions, statement, limit=limit, timeout_s=timeout_s, sink=writer)
    writer.finish()
    if run.truncated:
        error_console.print(
            f"showing the first {limit:,} rows; use --limit to see more",
            highlight=False,
            soft_wrap=True,
        )


class _RowWriter(Protocol):
    def start(self, columns: list[str]) -> None: ...

    def add(self, row: tuple[Any, ...]) -> None: ...

    def finish(self) -> None: ...


def _row_writer(fmt: OutputFormat) -> _RowWriter:
    """Rows printed as they come (CSV, JSON), or held for the table (whose widths need
    them all; at most ``--limit``)."""
    if fmt is OutputFormat.csv:
        return _CsvRows()
    if fmt is OutputFormat.json:
        return _JsonRows()
    return _TableRows()


class _CsvRows:
    def start(self, columns: list[str]) -> None:
        import csv
        import sys

        self.writer = csv.writer(sys.stdout, lineterminator="\n")
        self.writer.writerow(columns)

    def add(self, row: tuple[Any, ...]) -> None:
        self.writer.writerow(row)

    def finish(self) -> None:
        pass


class _JsonRows:
    """A JSON array of one object per row, written object by object, laid out as
    ``json.dumps(rows, indent=2)`` would."""

    def start(self, columns: list[str]) -> None:
        import sys

        self.columns = columns
        self.n_rows = 0
        sys.stdout.write("[")

    def add(self, row: tuple[Any, ...]) -> None:
        import json
        import sys

        record = {
            column: _json_value(value) for column, value in zip(self.columns, row, strict=True)
        }
        body = json.dumps(record, indent=2, default=str).replace("\n", "\n  ")
        sys.stdout.write(("," if self.n_rows else "") + "\n  " + body)
        self.n_rows += 1

    def finish(self) -> None:
        import sys

        sys.stdout.write("\n]\n" if self.n_rows else "]\n")


def _json_value(value: Any) -> Any:
    """``value`` as JSON can hold it: numeric as a number, bytea as ``\\x`` hex."""
    from decimal import Decimal

    from atlas2d.cli.output import _jsonable

    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return _jsonable(value)


class _TableRows:
    def start(self, columns: list[str]) -> None:
        from rich.table import Table

        self.table = Table()
        for column in columns:
            self.table.add_column(column, overflow="fold")  # wrap, never cut, values

    def add(self, row: tuple[Any, ...]) -> None:
        from atlas2d.cli.output import _cell

        self.table.add_row(*(_cell(value) for value in row))

    def finish(self) -> None:
        console.print(self.table)


@materials_app.command("list")
def list_command(
    chemsys: str | None = typer.Option(None, help="Chemical system, e.g. Mo-S."),
    formula: str | None = typer.Option(None, help="Reduced formula, e.g. MoS2."),
    dimensionality: int | None = typer.Option(None, help="2 for layers, 3 for bulk."),
    limit: int = typer.Option(1000, min=1, help="At most this many rows (by key)."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """List materials with their numbers of relaxations and frames; says how many
    matched when the limit cuts the list."""
    from atlas2d.cli.context import connect
    from atlas2d.services.materials import count_materials, list_materials

    sessions = connect().sessions
    frame = list_materials(sessions, chemsys, formula, dimensionality, limit)
    total = len(frame)
    if total == limit:  # cut, or exactly the limit: count them
        total = count_materials(sessions, chemsys, formula, dimensionality)
    print_listing(frame, format, total, counted(total, "material"), "; --limit to change")


@materials_app.command("show")
def show_command(
    key: str = typer.Argument(..., help="Material key, e.g. an Alexandria mat_id."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Show one material: composition, symmetry, relaxations and energy entries."""
    import dataclasses

    from atlas2d.cli.context import connect
    from atlas2d.services.materials import show_material

    detail = show_material(connect().sessions, key)
    if format is OutputFormat.json:
        print_json(
            {
                "material": dataclasses.asdict(detail.material),
                "relaxations": detail.relaxations,
                "entries": detail.entries,
            }
        )
        return
    m = detail.material
    console.print(
        f"[bold]{m.key}[/bold]  {m.formula}  chemsys {m.chemsys}  "
        f"dimensionality {m.dimensionality}  space group {m.spacegroup_number}  "
        f"prototype {m.prototype or '-'}"
    )
    print_frame(detail.relaxations, format, title="relaxations")
    if not detail.entries.empty:
        print_frame(detail.entries, format, title="energy entries")
