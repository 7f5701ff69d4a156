"""``atlas2d hull update`` and ``atlas2d stable``."""

from __future__ import annotations

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, print_frame
from atlas2d.vocabulary import DFT, counted

hull_app = typer.Typer(
    help="Convex hulls per energy source (DFT or a model).", no_args_is_help=True
)

ENERGY_HELP = "dft, or a model (NAME or NAME:VERSION) whose ML-relaxed energies to place."


@hull_app.command("update")
@writes("hull update")
def update(
    energy: str = typer.Option(DFT, "--energy", help=ENERGY_HELP),
    chemsys: list[str] = typer.Option(
        [], help="Only these chemical systems and their subsystems (repeatable)."
    ),
    all_: bool = typer.Option(
        False, "--all", help="Recompute every system, not only those with new energies."
    ),
) -> None:
    """Recompute convex hulls (one per chemical system) and store every material's stability."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from atlas2d.cli.context import connect
    from atlas2d.services.stability import update_hull

    with Progress(
        TextColumn("hulls"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar only for a person, no stray line
    ) as bar:
        task = bar.add_task("hulls", total=None)
        result = update_hull(
            connect().sessions,
            energy,
            tuple(chemsys),
            all_,
            lambda done, total: bar.update(task, completed=done, total=total),
        )
    if result.hull_run is None:
        console.print(
            f"{result.energy_source}: nothing to do (no new energies since the last hull run; "
            "--all recomputes everything)",
            highlight=False,
        )
        return
    console.print(
        f"{result.energy_source}: hull run {result.hull_run} "
        f"({'incremental' if result.incremental else 'full'}): "
        f"{counted(result.chemsys_recomputed, 'chemical system')}, "
        f"{counted(result.materials_written, 'material')}, "
        f"{result.stable} on or below the hull, {result.wall_time_s:.1f} s",
        highlight=False,
    )
    for reason, keys in result.skipped.items():
        shown = ", ".join(keys[:5]) + (f", … ({len(keys)} in all)" if len(keys) > 5 else "")
        console.print(f"[yellow]skipped ({reason}): {shown}[/yellow]", highlight=False)


def stable(
    energy: str = typer.Option(DFT, "--energy", help=ENERGY_HELP),
    max_ehull: float = typer.Option(
        0.0, "--max-ehull", help="Largest energy above hull to list (eV/atom)."
    ),
    dimensionality: int | None = typer.Option(None, help="2 layers, 3 bulk."),
    chemsys: list[str] = typer.Option([], help="Only these chemical systems (repeatable)."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """List stable (or nearly stable) compounds by DFT or by a model."""
    from atlas2d.cli.context import connect
    from atlas2d.services.stability import stable_list

    table = stable_list(connect().sessions, energy, max_ehull, dimensionality, tuple(chemsys))
    print_frame(
        table,
        format,
        title=f"{counted(len(table), 'material')} with e_above_hull ≤ {max_ehull * 1000:g} meV/atom "
        f"({energy})",
    )
