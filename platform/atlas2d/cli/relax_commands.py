"""``atlas2d relax`` and ``atlas2d evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, error_console, print_frame, print_json
from atlas2d.vocabulary import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEFAULT_MAX_ATOMS,
    DEFAULT_START,
    FIRE_FMAX_EV_PER_A,
    FIRE_MAX_STEPS,
    HELD_OUT_SPLIT,
    Device,
    Engine,
    Split,
    StartFrom,
)

if TYPE_CHECKING:
    from atlas2d.services.leakage import Leakage
    from atlas2d.services.relax import RelaxRequest

CHUNK_SIZES = ", ".join(f"{engine} {size}" for engine, size in DEFAULT_CHUNK_SIZE.items())
MAX_ATOMS = ", ".join(f"{device} {size:,}" for device, size in DEFAULT_MAX_ATOMS.items())
"""The default chunk size of each engine, for the help: ``ase 32, batched 512``."""


def _request(
    model: str,
    trainset: str | None,
    split: Split,
    start: StartFrom,
    fmax: float,
    steps: int,
    chemsys: list[str] | None = None,
    formula: list[str] | None = None,
    dimensionality: int | None = None,
    source: list[str] | None = None,
    save_trajectory: bool = False,
    **extra: Any,
) -> RelaxRequest:
    from atlas2d.mlff.relax import RelaxSettings
    from atlas2d.queries.materials import MaterialFilter, normalise_chemsys
    from atlas2d.services.relax import RelaxRequest

    materials = None
    if trainset is None:
        materials = MaterialFilter(
            chemsys=tuple(normalise_chemsys(c) or "" for c in chemsys or ()),
            formulas=tuple(formula or ()),
            dimensionality=dimensionality,
            sources=tuple(source or ()),
        )
    settings = RelaxSettings(fmax=fmax, max_steps=steps, save_trajectory=save_trajectory)
    return RelaxRequest(
        model=model,
        training_set=trainset,
        split=split,
        materials=materials,
        start=start,
        settings=settings,
        **extra,
    )


@writes("relax")
def relax(
    model: str = typer.Option(..., "--model", help="NAME (latest ready) or NAME:VERSION."),
    trainset: str | None = typer.Option(
        None, "--trainset", help="Relax the materials of this training set's split."
    ),
    split: Split = typer.Option(HELD_OUT_SPLIT, "--split"),
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
    pool: str | None = typer.Option(
        None, "--pool", help="Relax the candidates of this pool (`atlas2d generate`) instead."
    ),
    start: StartFrom = typer.Option(
        DEFAULT_START, help="first: the unrelaxed DFT structure; final: the DFT-relaxed one."
    ),
    fmax: float = typer.Option(FIRE_FMAX_EV_PER_A, help="Force criterion (eV/Å)."),
    steps: int = typer.Option(FIRE_MAX_STEPS, help="Maximum FIRE steps."),
    engine: Engine = typer.Option(
        DEFAULT_ENGINE, help="ase (one at a time) or batched (torch-sim)."
    ),
    chunk_size: int | None = typer.Option(
        None,
        # "\\[": a bracket Rich's markup prints instead of reading it as a style.
        help="Materials relaxed and committed in one transaction; an interruption loses at "
        f"most the chunks in flight \\[{CHUNK_SIZES}].",
    ),
    max_atoms: int | None = typer.Option(
        None, help=f"Batched engine: atoms per model call \\[{MAX_ATOMS}]."
    ),
    save_trajectory: bool = typer.Option(
        False, "--save-trajectory", help="Store every step, not only the final one."
    ),
    force: bool = typer.Option(
        False, "--force", help="Relax again what is already stored, replacing it."
    ),
    workers: int = typer.Option(0, help="Dask worker processes on this machine (one thread each)."),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler."),
    device: Device = typer.Option(DEFAULT_DEVICE),
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
        model,
        trainset,
        split,
        start,
        fmax,
        steps,
        chemsys=chemsys,
        formula=formula,
        dimensionality=dimensionality,
        source=source,
        save_trajectory=save_trajectory,
        engine=engine,
        chunk_size=chunk_size,
        force=force,
        device=device,
        max_atoms=max_atoms,
        files=tuple(from_file),
        pool=pool,
    )
    with Progress(
        TextColumn("relaxing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} structures/s · {task.fields[converged]} converged"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a bar only for a person, no stray line
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


@writes("evaluate")
def evaluate(
    model: str = typer.Option(..., "--model"),
    trainset: str | None = typer.Option(None, "--trainset"),
    split: Split = typer.Option(HELD_OUT_SPLIT, "--split"),
    start: StartFrom = typer.Option(
        DEFAULT_START, help="The relaxations' start (as given to relax)."
    ),
    fmax: float = typer.Option(FIRE_FMAX_EV_PER_A, help="The relaxations' fmax (eV/Å)."),
    steps: int = typer.Option(FIRE_MAX_STEPS, help="The relaxations' step limit."),
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
    allow_leakage: bool = typer.Option(
        False,
        "--allow-leakage",
        help="Evaluate even materials in a train split of the model or an ancestor; "
        "the evaluation is stored flagged (leakage, leaked_materials).",
    ),
    exclude_trained: bool = typer.Option(
        False,
        "--exclude-trained",
        help="With --stability: leave out the materials in a train split of the model or "
        "an ancestor instead of refusing (their count is stored).",
    ),
) -> None:
    """Compare a model's relaxations with DFT (energy and area after relaxation), or with
    --stability its stability classification (after `atlas2d hull update`).

    Refused when a material was in a train split of the model or of a model it was
    fine-tuned from (grouped splits count the whole group); --allow-leakage evaluates
    anyway and flags the evaluation. Materials in a val split are counted."""
    from atlas2d.analysis.reports import readable_group_table, thesis_table
    from atlas2d.cli.context import connect
    from atlas2d.services.evaluate import evaluate_relaxations

    if stability:
        _evaluate_stability(model, threshold, format, allow_leakage, exclude_trained)
        return

    request = _request(model, trainset, split, start, fmax, steps)
    evaluation = evaluate_relaxations(
        connect().sessions,
        model,
        trainset,
        split if trainset else None,
        request,
        report,
        allow_leakage,
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
                **_leakage_json(evaluation.leakage),
            }
        )
        return
    print_frame(
        thesis_table([evaluation]), format, title=f"relaxation vs DFT (evaluation {evaluation.id})"
    )
    per_element = evaluation.per_element.head(20)
    if format is OutputFormat.table:
        per_element = readable_group_table(per_element, "element")
    print_frame(per_element, format, title="per element (worst energy MAE first)")
    _print_leakage(evaluation.leakage, len(evaluation.per_material), format)
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


def _leakage_json(leakage: Leakage) -> dict[str, Any]:
    """The stored leakage columns and the material keys behind them."""
    return {
        **leakage.columns(),
        "leaked_keys": list(leakage.leaked),
        "ancestor_val_keys": list(leakage.ancestor_val),
    }


def _print_leakage(leakage: Leakage, n_materials: int, format: OutputFormat) -> None:
    """Leaked and ancestor-val counts under the tables; on stderr with --format csv,
    whose stdout is the table alone."""
    out = error_console if format is OutputFormat.csv else console
    for line in leakage.notes(n_materials):
        out.print(f"[yellow]{escape(line)}[/yellow]", highlight=False, soft_wrap=True)


def _evaluate_stability(
    model: str, threshold: float, format: OutputFormat, allow_leakage: bool, exclude_trained: bool
) -> None:
    import pandas as pd

    from atlas2d.cli.context import connect
    from atlas2d.services.evaluate_stability import evaluate_stability

    evaluation = evaluate_stability(
        connect().sessions, model, threshold, allow_leakage, exclude_trained
    )
    if format is OutputFormat.json:
        print_json(
            {
                "evaluation": evaluation.id,
                "model": evaluation.model,
                "threshold_ev_per_atom": evaluation.threshold_ev_per_atom,
                "metrics": evaluation.metrics,
                "per_element": evaluation.per_element,
                **_leakage_json(evaluation.leakage),
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
    _print_leakage(evaluation.leakage, len(evaluation.per_material), format)
