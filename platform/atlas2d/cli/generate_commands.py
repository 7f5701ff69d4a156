"""``atlas2d generate``: candidate 2D layers by substitution or decoration, into pools."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, print_frame, print_json
from atlas2d.vocabulary import (
    CANDIDATE_OUTCOMES,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_MIN_DISTANCE_FACTOR,
    DEFAULT_PROTOTYPE_MAX_EHULL_EV,
    DEFAULT_SUBSTITUTION_THRESHOLD,
    DFT,
    counted,
)

if TYPE_CHECKING:
    from atlas2d.services.generate import GenerateReport, GenerateRequest

app = typer.Typer(no_args_is_help=True, help="Generate candidate layers into named pools.")

POOL = typer.Option(..., "--pool", help="Name of the pool the candidates go to.")
MAX_CANDIDATES = typer.Option(
    DEFAULT_MAX_CANDIDATES,
    "--max-candidates",
    help="Candidates stored at most (most probable first).",
)
ALLOW_UNBALANCED = typer.Option(
    False, "--allow-unbalanced", help="Keep candidates whose oxidation states do not balance."
)
MIN_DISTANCE = typer.Option(
    DEFAULT_MIN_DISTANCE_FACTOR,
    "--min-distance-factor",
    help="Reject when two atoms are closer than this × the sum of covalent radii.",
)
DRY_RUN = typer.Option(False, "--dry-run", help="Generate and count; store nothing.")


def _run(request: GenerateRequest) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from atlas2d.cli.context import connect
    from atlas2d.services.generate import generate

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar only for a person, no stray line
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "prototypes" if stage == "prototypes" else "deduplicating"
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = generate(connect().sessions, request, progress)
    _print_report(report)


def _print_report(report: GenerateReport) -> None:
    if report.already_done:
        console.print(
            f"pool {report.pool}: already made with these parameters; nothing added.",
            highlight=False,
        )
    counts = " | ".join(
        f"{outcome.replace('_', ' ')} {report.counts.get(outcome, 0)}"
        for outcome in CANDIDATE_OUTCOMES
    )
    prefix = "dry run, nothing stored: " if report.dry_run and not report.already_done else ""
    console.print(
        f"{prefix}pool {report.pool} ({report.generator}): {counts}"
        + (
            f" | {counted(report.prototypes, 'prototype')} in {report.wall_time_s:.1f} s"
            if report.prototypes
            else ""
        ),
        highlight=False,
    )
    if report.skipped_prototypes:
        shown = ", ".join(report.skipped_prototypes[:5])
        more = len(report.skipped_prototypes) - 5
        console.print(
            f"[yellow]prototypes without candidates: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + "[/yellow]",
            highlight=False,
        )


def _split(values: list[str]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command()
@writes("generate substitute")
def substitute(
    pool: str = POOL,
    chemsys: list[str] = typer.Option(
        [], help="Prototypes of these chemical systems (repeatable)."
    ),
    formula: list[str] = typer.Option(
        [], help="Prototypes of these reduced formulas (repeatable)."
    ),
    material: list[str] = typer.Option(
        [], "--material", help="These prototypes (key, repeatable)."
    ),
    max_ehull: float = typer.Option(
        DEFAULT_PROTOTYPE_MAX_EHULL_EV,
        "--max-ehull",
        help="Prototypes: layers at most this far above the hull of --energy (eV/atom).",
    ),
    energy: str = typer.Option(
        DFT,
        "--energy",
        help="Whose hull chooses the prototypes: dft, or a model (NAME or NAME:VERSION).",
    ),
    threshold: float = typer.Option(
        DEFAULT_SUBSTITUTION_THRESHOLD, help="Smallest substitution probability kept."
    ),
    max_candidates: int = MAX_CANDIDATES,
    partial: bool = typer.Option(
        False, "--partial", help="Also replace one layer orbit of an element (Janus layers)."
    ),
    elements: list[str] = typer.Option(
        [], "--elements", help="Only candidates made of these elements, e.g. Mo,W,S,Se."
    ),
    allow_unbalanced: bool = ALLOW_UNBALANCED,
    min_distance_factor: float = MIN_DISTANCE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Substitute species of layers on or near the DFT hull with pymatgen's data-mined
    probabilities (Hautier et al.), charge-balanced, deduplicated, into a pool."""
    from atlas2d.queries.materials import normalise_chemsys
    from atlas2d.services.generate import GenerateRequest

    _run(
        GenerateRequest(
            pool=pool,
            generator="substitute",
            chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys),
            formulas=tuple(formula),
            materials=tuple(material),
            max_ehull_ev=max_ehull,
            energy=energy,
            threshold=threshold,
            max_candidates=max_candidates,
            partial=partial,
            elements=_split(elements),
            allow_unbalanced=allow_unbalanced,
            min_distance_factor=min_distance_factor,
            dry_run=dry_run,
        )
    )


@app.command()
@writes("generate decorate")
def decorate(
    pool: str = POOL,
    prototype: list[str] = typer.Option(
        ..., "--prototype", help="Material key of a prototype layer (repeatable)."
    ),
    elements: list[str] = typer.Option(
        ..., "--elements", help="Elements to put on the orbits, e.g. Mo,W,S,Se."
    ),
    max_candidates: int = MAX_CANDIDATES,
    allow_unbalanced: bool = ALLOW_UNBALANCED,
    min_distance_factor: float = MIN_DISTANCE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Put element combinations on each prototype's symmetry orbits, keeping its
    stoichiometry pattern; charge-balanced, deduplicated, into a pool."""
    from atlas2d.services.generate import GenerateRequest

    _run(
        GenerateRequest(
            pool=pool,
            generator="decorate",
            materials=tuple(prototype),
            elements=_split(elements),
            max_candidates=max_candidates,
            allow_unbalanced=allow_unbalanced,
            min_distance_factor=min_distance_factor,
            dry_run=dry_run,
        )
    )


@app.command("list")
def list_command(format: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """List candidate pools with their counts per outcome."""
    from atlas2d.cli.context import connect
    from atlas2d.services.generate import list_pools

    print_frame(list_pools(connect().sessions), format, title="candidate pools")


@app.command()
def show(
    name: str = typer.Argument(...),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Show a pool: generator, parameters, counts per outcome and its candidates."""
    from dataclasses import asdict

    from atlas2d.cli.context import connect
    from atlas2d.services.generate import show_pool

    details = show_pool(connect().sessions, name)
    if format is OutputFormat.json:
        print_json({"pool": asdict(details.pool), "candidates": details.candidates})
        return
    if format is OutputFormat.csv:
        print_frame(details.candidates, format)
        return
    pool = details.pool
    console.print(
        f"[bold]{pool.name}[/bold]  {pool.generator}  {counted(pool.n_candidates, 'candidate')}  "
        f"created {pool.created_at:%Y-%m-%d %H:%M}",
        highlight=False,
    )
    console.print(f"parameters: {pool.parameters}", highlight=False)
    console.print(
        "counts: "
        + " | ".join(f"{k.replace('_', ' ')} {pool.counts.get(k, 0)}" for k in CANDIDATE_OUTCOMES),
        highlight=False,
    )
    print_frame(details.candidates, format, title=f"candidates of {pool.name}")


@app.command()
def export(
    name: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", help="The .extxyz file to write."),
) -> None:
    """Write a pool's candidates (unrelaxed) as extxyz with material_key and parent_key."""
    from atlas2d.cli.context import connect
    from atlas2d.services.generate import export_pool

    n = export_pool(connect().sessions, name, out)
    console.print(f"{name}: {counted(n, 'candidate')} written to {out}", highlight=False)
