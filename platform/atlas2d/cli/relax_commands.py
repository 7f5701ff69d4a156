"""``atlas2d relax`` and ``atlas2d evaluate``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from atlas2d.cli.choices import Device, Split
from atlas2d.cli.output import OutputFormat, console, print_frame, print_json


class Engine(str, Enum):
    ase = "ase"
    batched = "batched"


class Start(str, Enum):
    first = "first"
    final = "final"


def _request(
    model, trainset, split, chemsys, formula, dimensionality, source, start, fmax, steps, **extra
):  # type: ignore[no-untyped-def]
    from atlas2d.mlff.relax import RelaxSettings
    from atlas2d.queries.materials import MaterialFilter, normalise_chemsys
    from atlas2d.services.relax import RelaxRequest

    materials = None
    if trainset is None:
        materials = MaterialFilter(
            chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys),
            formulas=tuple(formula),
            dimensionality=dimensionality,
            sources=tuple(source),
        )
    settings = RelaxSettings(
        fmax=fmax, max_steps=steps, save_trajectory=extra.pop("save_trajectory", False)
    )
    return RelaxRequest(
        model=model,
        training_set=trainset,
        split=split.value,
        materials=materials,
        start=start.value,
        settings=settings,
        **extra,
    )


def relax(
    model: str = typer.Option(..., "--model", help="NAME (latest ready) or NAME:VERSION."),
    trainset: str | None = typer.Option(
        None, "--trainset", help="Relax the materials of this training set's split."
    ),
    split: Split = typer.Option(Split.test, "--split"),
    chemsys: list[str] = typer.Option(
        [], help="Without --trainset: these chemical systems (repeatable)."
    ),
    formula: list[str] = typer.Option(
        [], help="Without --trainset: these reduced formulas (repeatable)."
    ),
    dimensionality: int | None = typer.Option(None, help="Without --trainset: 2 layers, 3 bulk."),
    source: list[str] = typer.Option(
        [], help="Without --trainset: DFT data from these sources (path or id)."
    ),
    from_file: list[Path] = typer.Option(
        [], "--from-file", help="Relax the structures in these files (any ingest format) instead."
    ),
    start: Start = typer.Option(
        Start.first, help="first: the unrelaxed DFT structure; final: the DFT-relaxed one."
    ),
    fmax: float = typer.Option(0.1, help="Force criterion (eV/Å)."),
    steps: int = typer.Option(1000, help="Maximum FIRE steps."),
    engine: Engine = typer.Option(Engine.ase, help="ase (one at a time) or batched (torch-sim)."),
    batch_size: int | None = typer.Option(
        None, help="Materials relaxed and committed together [ase 32, batched 512]."
    ),
    max_atoms: int | None = typer.Option(
        None, help="Batched engine: atoms per model call [CPU 2000, GPU 50000]."
    ),
    save_trajectory: bool = typer.Option(
        False, "--save-trajectory", help="Store every step, not only the final one."
    ),
    force: bool = typer.Option(
        False, "--force", help="Relax again what is already stored, replacing it."
    ),
    workers: int = typer.Option(0, help="Dask worker processes on this machine (one thread each)."),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler."),
    device: Device = typer.Option(Device.cpu),
) -> None:
    """Relax materials with a model (FIRE, in-plane cell for layers) and store the results."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.relax import relax as relax_service

    request = _request(
        model, trainset, split, chemsys, formula, dimensionality, source, start, fmax, steps,
        engine=engine.value, chunk_size=batch_size, force=force, device=device.value,
        max_atoms=max_atoms, save_trajectory=save_trajectory,
        files=tuple(from_file),
    )  # fmt: skip
    with Progress(
        TextColumn("relaxing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} structures/s · {task.fields[converged]} converged"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("relax", total=None, rate=0.0, converged=0)

        def progress(done: int, total: int, converged: int) -> None:
            elapsed = bar.tasks[task].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=done / elapsed, converged=converged)

        report = relax_service(
            connect().sessions, request, get_settings().artifacts_dir, workers, scheduler, progress
        )
    console.print(
        f"{report.model}: {report.requested} requested, {report.already_done} already done, "
        f"{report.relaxed} relaxed ({report.converged} converged) in {report.wall_time_s:.1f} s "
        f"({report.structures_per_s:.2f} structures/s, engine {report.engine})",
        highlight=False,
    )
    if report.skipped:
        console.print(f"[yellow]skipped: {', '.join(report.skipped)}[/yellow]", highlight=False)
    if report.diverged:
        console.print(
            f"[yellow]not stored (non-finite results): {', '.join(report.diverged)}[/yellow]"
        )


def evaluate(
    model: str = typer.Option(..., "--model"),
    trainset: str | None = typer.Option(None, "--trainset"),
    split: Split = typer.Option(Split.test, "--split"),
    start: Start = typer.Option(Start.first, help="The relaxations' start (as given to relax)."),
    fmax: float = typer.Option(0.1, help="The relaxations' fmax (eV/Å)."),
    steps: int = typer.Option(1000, help="The relaxations' step limit."),
    report: Path | None = typer.Option(
        None, "--report", help="Write report.md and PNG plots here."
    ),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    stability: bool = typer.Option(
        False, "--stability", help="Instead: how well the model's hull results match DFT's."
    ),
    threshold: float = typer.Option(
        0.0, help="With --stability: stable means e_above_hull ≤ this (eV/atom)."
    ),
) -> None:
    """Compare a model's relaxations with DFT (energy and area after relaxation), or with
    --stability its stability classification (after `atlas2d hull update`)."""
    from atlas2d.cli.context import connect
    from atlas2d.services.evaluate import evaluate_relaxations, thesis_table

    if stability:
        _evaluate_stability(model, threshold, format)
        return

    request = _request(model, trainset, split, [], [], None, [], start, fmax, steps)
    evaluation = evaluate_relaxations(
        connect().sessions, model, trainset, split.value if trainset else None, request, report
    )
    if format is OutputFormat.json:
        print_json(
            {
                "evaluation": evaluation.id,
                "model": evaluation.model,
                "training_set": evaluation.training_set,
                "split": evaluation.split,
                "parameters": evaluation.parameters,
                "metrics": evaluation.metrics,
                "per_element": evaluation.per_element,
                "per_spacegroup": evaluation.per_spacegroup,
            }
        )
        return
    print_frame(
        thesis_table([evaluation]), format, title=f"relaxation vs DFT (evaluation {evaluation.id})"
    )
    print_frame(
        evaluation.per_element.head(20), format, title="per element (worst energy MAE first)"
    )
    if evaluation.report_dir is not None:
        console.print(f"report: {evaluation.report_dir / 'report.md'}")


STABILITY_COLUMNS = [
    ("n_materials", "materials"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("accuracy", "accuracy"),
    ("daf", "DAF"),
    ("e_above_hull_mae_mev_per_atom", "E_hull MAE (meV/atom)"),
    ("e_above_hull_rmse_mev_per_atom", "E_hull RMSE (meV/atom)"),
    ("e_above_hull_r2", "E_hull R²"),
]


def _evaluate_stability(model: str, threshold: float, format: OutputFormat) -> None:
    import pandas as pd

    from atlas2d.cli.context import connect
    from atlas2d.services.evaluate_stability import evaluate_stability

    evaluation = evaluate_stability(connect().sessions, model, threshold)
    if format is OutputFormat.json:
        print_json(
            {
                "evaluation": evaluation.id,
                "model": evaluation.model,
                "threshold_ev_per_atom": evaluation.threshold_ev_per_atom,
                "metrics": evaluation.metrics,
                "per_element": evaluation.per_element,
            }
        )
        return
    row = {"model": evaluation.model} | {
        title: evaluation.metrics.get(key) for key, title in STABILITY_COLUMNS
    }
    print_frame(
        pd.DataFrame([row]),
        format,
        title=f"stability vs DFT, stable ≤ {threshold * 1000:g} meV/atom "
        f"(evaluation {evaluation.id})",
    )
