"""``atlas2d ingest``: DFT trajectories and convex-hull entries into the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from atlas2d.analysis.units import StressUnit
from atlas2d.cli.context import writes
from atlas2d.cli.output import console, error_console
from atlas2d.vocabulary import ReadFormat

if TYPE_CHECKING:
    from atlas2d.services.ingest import FileResult


@writes("ingest")
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or directories (plain, .gz, .bz2 or .xz)."),
    format: ReadFormat = typer.Option(
        "auto", "--format", help="Input format; auto guesses from names."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Ingest the good files and report the bad ones."
    ),
    stress_unit: StressUnit | None = typer.Option(
        None,
        "--stress-unit",
        help="Stress unit/sign of extxyz or Alexandria files (default: ev-a3 for extxyz, vasp-kbar for Alexandria).",
    ),
    group_key: str | None = typer.Option(
        None,
        "--group-key",
        help="extxyz info key grouping frames into relaxations, e.g. material_key.",
    ),
    material_key: str | None = typer.Option(
        None, "--material-key", help="Material key for a VASP or single-relaxation file."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write a JSON report of every file's outcome here."
    ),
) -> None:
    """Ingest DFT geometry optimisations (every ionic step) and convex-hull entries.

    One transaction per file: a bad record aborts its file and nothing of it is written.
    Re-ingesting the same content does nothing ("already present").
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atlas2d.cli.context import connect
    from atlas2d.io.files import expand_paths
    from atlas2d.io.readers import ReadOptions
    from atlas2d.services.ingest import ALREADY_PRESENT, INGESTED, REJECTED, ingest_paths

    fmt = format
    files = expand_paths(paths, fmt)
    if not files:
        raise typer.BadParameter("no readable file found under the given paths")
    if report is not None:
        _check_report_path(report)
    options = ReadOptions(
        format=fmt, stress_unit=stress_unit, group_key=group_key, material_key=material_key
    )
    database = connect()
    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar only for a person, no stray line
    ) as progress:
        task = progress.add_task("", total=len(files))

        def advance(result: FileResult) -> None:
            progress.update(task, advance=1, description=Path(result.path).name)
            if result.status == REJECTED:
                error_console.print(
                    f"[red]rejected[/red] {escape(result.message)}", highlight=False, soft_wrap=True
                )

        summary = ingest_paths(
            database.sessions, files, options, skip_bad=skip_bad, on_file=advance
        )

    for result in summary.results:
        if result.status == ALREADY_PRESENT:
            console.print(f"{result.path}: already present, nothing written")
    ingested = summary.with_status(INGESTED)
    rejected = summary.with_status(REJECTED)
    console.print(
        f"files: {len(ingested)} ingested, {len(summary.with_status(ALREADY_PRESENT))} already present, "
        f"{len(rejected)} rejected | materials: {summary.count('materials_new')} new | "
        f"relaxations: {summary.count('relaxations')} new, {summary.count('relaxations_present')} already stored | "
        f"frames: {summary.count('frames')} | energy entries: {summary.count('entries')}"
    )
    if report is not None:
        report.write_text(json.dumps([vars(r) for r in summary.results], indent=2))
        console.print(f"report written to {report}")
    if rejected:
        raise typer.Exit(code=1)


def _check_report_path(report: Path) -> None:
    """Refuse a ``--report`` path that cannot be written, before anything is ingested
    (else the data would be committed and only the report lost).

    Raises:
        InvalidInput: the folder is missing or not writable, or the path is a folder.
    """
    import os

    from atlas2d.errors import InvalidInput

    folder = report.parent
    problem = None
    if report.is_dir():
        problem = "is a folder; give a file name, e.g. report.json inside it"
    elif not folder.is_dir():
        problem = f"is in {folder}, which does not exist or is not a folder; create it first"
    elif not os.access(folder, os.W_OK):
        problem = f"is in {folder}, which you may not write to; choose another folder"
    elif report.exists() and not os.access(report, os.W_OK):
        problem = "exists and you may not overwrite it; choose another file"
    if problem:
        raise InvalidInput(f"--report {report}: {problem}. Nothing was ingested.")
