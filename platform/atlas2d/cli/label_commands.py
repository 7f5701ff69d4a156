"""``atlas2d label``: relax structures with the reference labeller (CHGNet standing in for
DFT) and store every step as DFT data."""

from __future__ import annotations

from pathlib import Path

import typer

from atlas2d.cli.context import writes
from atlas2d.cli.output import console
from atlas2d.vocabulary import (
    DEFAULT_DEVICE,
    DEFAULT_LABEL_CHUNK_SIZE,
    LABEL_FMAX_EV_PER_A,
    LABEL_MAX_STEPS,
    Device,
)


@writes("label")
def label(
    from_file: list[Path] = typer.Option(
        [],
        "--from-file",
        help="Label the structures in these files (any ingest format; repeatable).",
    ),
    materials: bool = typer.Option(
        False,
        "--materials",
        help="Label stored materials (from step 0 of their first DFT relaxation), selected by the filters below.",
    ),
    chemsys: list[str] = typer.Option(
        [], help="With --materials: these chemical systems (repeatable)."
    ),
    formula: list[str] = typer.Option(
        [], help="With --materials: these reduced formulas (repeatable)."
    ),
    dimensionality: int | None = typer.Option(None, help="With --materials: 2 layers, 3 bulk."),
    source: list[str] = typer.Option(
        [], help="With --materials: DFT data from these sources (path or id)."
    ),
    pool: str | None = typer.Option(
        None, "--pool", help="Label the candidates of this pool (`atlas2d generate`)."
    ),
    fmax: float = typer.Option(LABEL_FMAX_EV_PER_A, help="Force criterion (eV/Å)."),
    steps: int = typer.Option(LABEL_MAX_STEPS, help="Maximum FIRE steps."),
    chunk_size: int = typer.Option(
        DEFAULT_LABEL_CHUNK_SIZE,
        help="Structures labelled and committed in one transaction; an interruption loses "
        "at most the chunk in progress.",
    ),
    device: Device = typer.Option(DEFAULT_DEVICE),
) -> None:
    """Relax structures with the reference labeller and store the full trajectories.

    FIRE with every step recorded (energy, forces, full stress); layers relax their
    cell in-plane, bulk the full cell. Stored as method dft with parameters
    reference=labeller, in sources of format labeller. Re-running labels nothing twice.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from atlas2d.cli.context import connect
    from atlas2d.errors import InvalidInput
    from atlas2d.mlff.labeller import LabelSettings
    from atlas2d.queries.materials import MaterialFilter, normalise_chemsys
    from atlas2d.services.label import LabelRequest
    from atlas2d.services.label import label as label_service

    filters = bool(chemsys or formula or source or dimensionality is not None)
    if bool(from_file) + materials + (pool is not None) > 1 or (filters and not materials):
        raise InvalidInput(
            "Give one of --from-file, --materials (with its filters) or --pool, not several."
        )
    if not from_file and not materials and pool is None:
        raise InvalidInput(
            "Nothing to label: give --from-file FILE (repeatable), --materials "
            "(with --chemsys/--formula/--dimensionality/--source to select) or --pool NAME."
        )
    selection = None
    if materials:
        selection = MaterialFilter(
            chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys),
            formulas=tuple(formula),
            dimensionality=dimensionality,
            sources=tuple(source),
        )
    request = LabelRequest(
        files=tuple(from_file),
        materials=selection,
        pool=pool,
        settings=LabelSettings(fmax=fmax, max_steps=steps, device=device),
        chunk_size=chunk_size,
    )
    with Progress(
        TextColumn("labelling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[converged]} converged"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar only for a person, no stray line
    ) as bar:
        task = bar.add_task("label", total=None, converged=0)

        def progress(done: int, total: int, converged: int) -> None:
            bar.update(task, completed=done, total=total, converged=converged)

        report = label_service(connect().sessions, request, progress)
    steps_taken = sorted(report.optimizer_steps)
    median = f", median {steps_taken[len(steps_taken) // 2]} FIRE steps" if steps_taken else ""
    console.print(
        f"labeller CHGNet: {report.requested} requested, {report.already_labelled} already "
        f"labelled, {report.labelled} labelled ({report.converged} converged{median}) | "
        f"relaxations: {report.stored} new | frames: {report.frames} | "
        f"materials: {report.materials_new} new | {report.wall_time_s:.1f} s",
        highlight=False,
    )
