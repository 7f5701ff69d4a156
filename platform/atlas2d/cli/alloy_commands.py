"""``atlas2d alloys …``: formation energies of substitutional MX2 alloys."""

from __future__ import annotations

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, print_frame
from atlas2d.vocabulary import DFT, counted

app = typer.Typer(
    help="Substitutional MX2 alloys (e.g. Mo-W-S): formation energies per metal site from "
    "DFT, models and cluster expansions.",
    no_args_is_help=True,
)

SYSTEM_HELP = "Two metals and one chalcogen, in any order: Mo-W-S (= Mo-S-W)."


@app.command("formation")
@writes("alloys formation")
def formation(
    system: str = typer.Option(..., "--system", help=SYSTEM_HELP),
    energy: str = typer.Option(
        DFT,
        "--energy",
        help="dft, a model (NAME or NAME:VERSION) that relaxed the alloys and end members, "
        "or a cluster expansion (atlas2d alloys fit-ce).",
    ),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Compute, store and print formation energies per metal site (A = the alphabetically
    first metal, x = its fraction of the metal sites)."""
    from atlas2d.cli.context import connect
    from atlas2d.services.alloys import compute_formation_energies

    table = compute_formation_energies(connect().sessions, system, energy)
    print_frame(table, format, title=f"{counted(len(table), 'layer')} of {system} ({energy})")
