"""``atlas2d sql`` and ``atlas2d materials …``: read the database from the shell."""

from __future__ import annotations

import typer

from atlas2d.cli.output import OutputFormat, console, print_frame, print_json

materials_app = typer.Typer(help="List and inspect materials.", no_args_is_help=True)


def sql(
    statement: str = typer.Argument(..., help="One SQL statement, run READ ONLY."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Run one SQL statement in a READ ONLY transaction and print its rows."""
    from atlas2d.cli.context import connect
    from atlas2d.services.sql import run_readonly

    frame = run_readonly(connect().sessions, statement)
    print_frame(frame, format)


@materials_app.command("list")
def list_command(
    chemsys: str | None = typer.Option(None, help="Chemical system, e.g. Mo-S."),
    formula: str | None = typer.Option(None, help="Reduced formula, e.g. MoS2."),
    dimensionality: int | None = typer.Option(None, help="2 for layers, 3 for bulk."),
    limit: int = typer.Option(1000, help="At most this many rows."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """List materials with their numbers of relaxations and frames."""
    from atlas2d.cli.context import connect
    from atlas2d.services.materials import list_materials

    frame = list_materials(connect().sessions, chemsys, formula, dimensionality, limit)
    print_frame(frame, format, title=f"{len(frame)} materials")


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
